"""Fixtures for the store tests: every backend, and random rows of any table."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from shadowcast.store.base import Store
from shadowcast.store.config import BACKENDS, StoreConfig, open_store
from shadowcast.store.synth import random_table

T0_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
DAY_MS = 86_400_000

MakeRows = Callable[..., pa.Table]
StoreFactory = Callable[[], Store]


@pytest.fixture
def make_rows() -> MakeRows:
    return random_table


# Every backend, and the duckdb backend in each flows_format ("duckdb" is its default,
# parquet segments; "duckdb:table" keeps flows in DuckDB tables).
BACKEND_PARAMS = sorted([*BACKENDS, "duckdb:table"])


def config_for(backend: str, **fields: object) -> StoreConfig:
    """A StoreConfig for a ``backend`` fixture value (``name`` or ``name:flows_format``)."""
    name, _, fmt = backend.partition(":")
    extra = {"flows_format": fmt} if fmt else {}
    return StoreConfig.model_validate({"backend": name, **extra, **fields})


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store(backend: str, tmp_path: Path) -> Iterator[Store]:
    """Each backend, opened on a fresh file under ``tmp_path`` where it has one."""
    s = open_store(config_for(backend, data_dir=tmp_path))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def store_factory(backend: str) -> Iterator[StoreFactory]:
    """Fresh in-memory instances of a backend (for property tests: one per example)."""
    opened: list[Store] = []

    def make() -> Store:
        s = open_store(config_for(backend, path=":memory:"))
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()
