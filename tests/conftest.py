"""Shared fixtures: where the third-party data lives, temporary stores."""

from __future__ import annotations

from pathlib import Path

import pytest

from shadowcast.datasets.locate import find_data_dir

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared third-party data (``$SHADOWCAST_DATA`` or ``../shared/data``)."""
    d = find_data_dir()
    if d is None:
        pytest.skip("third-party data not found: set SHADOWCAST_DATA or provide ../shared/data")
    return d
