"""Shared fixtures: where the third-party data lives, temporary stores."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def find_data_dir() -> Path | None:
    env = os.environ.get("SHADOWCAST_DATA")
    candidates = [Path(env)] if env else []
    candidates.append(REPO.parent / "shared" / "data")
    for c in candidates:
        if c.is_dir():
            return c
    return None


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared third-party data (``$SHADOWCAST_DATA`` or ``../shared/data``)."""
    d = find_data_dir()
    if d is None:
        pytest.skip("third-party data not found: set SHADOWCAST_DATA or provide ../shared/data")
    return d
