"""Fixtures: one served replay for the whole API test session (it takes a while)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from served import served  # noqa: E402

from shadowcast.api.state import ApiState  # noqa: E402


@pytest.fixture(scope="session")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiState]:
    st = served(tmp_path_factory.mktemp("served"))
    yield st
    st.store.close()
