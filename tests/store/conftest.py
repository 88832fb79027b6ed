"""Fixtures for the store tests: every backend, and random rows of any table."""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from shadowcast.store.base import Store
from shadowcast.store.clickhouse_local import local_servers, server_command
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
# parquet segments; "duckdb:table" keeps flows in DuckDB tables; "duckdb:fresh" writes
# fresh Arrow segments, compacted in the background, as a collector's store does).
# ClickHouse runs on a local server ("clickhouse") and on a two-shard cluster
# ("clickhouse:cluster"), both started by the fixtures below (integration: they need
# clickhouse-server installed).
CLICKHOUSE_PARAMS = ["clickhouse", "clickhouse:cluster"]
BACKEND_PARAMS = [
    *sorted(
        b for b in [*BACKENDS, "duckdb:table", "duckdb:fresh"] if not b.startswith("clickhouse")
    ),
    *(pytest.param(p, marks=pytest.mark.integration) for p in CLICKHOUSE_PARAMS),
]
CLUSTER = "shadowcast_test"
CLICKHOUSE_USERS = {"shadowcast": "s3cret"}  # a user with a password, for the credential tests
_databases = itertools.count()


def _servers(tmp_path_factory: pytest.TempPathFactory, count: int) -> Iterator[list[str]]:
    if server_command() is None:
        pytest.skip("clickhouse-server not installed (apt-get install clickhouse-server)")
    if importlib.util.find_spec("clickhouse_driver") is None:
        pytest.skip("clickhouse-driver not installed (pip install 'shadowcast-netops[clickhouse]')")
    folder = tmp_path_factory.mktemp(f"clickhouse{count}")
    cluster = CLUSTER if count > 1 else None
    with local_servers(folder, count, cluster=cluster, users=CLICKHOUSE_USERS) as servers:
        yield [s.address for s in servers]


@pytest.fixture(scope="session")
def clickhouse_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """One local clickhouse-server for the session: its ``host:port``."""
    yield from _servers(tmp_path_factory, 1)


@pytest.fixture(scope="session")
def clickhouse_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    """Two local servers, the two shards of cluster ``CLUSTER``: their ``host:port``."""
    yield from _servers(tmp_path_factory, 2)


ConfigFor = Callable[..., StoreConfig]


@pytest.fixture
def config_for(request: pytest.FixtureRequest) -> ConfigFor:
    """A StoreConfig for a ``backend`` value (``name`` or ``name:variant``); each
    ClickHouse config gets a database of its own on the session's servers."""

    def make(backend: str, **fields: object) -> StoreConfig:
        name, _, variant = backend.partition(":")
        if name == "clickhouse":
            cluster = variant == "cluster"
            hosts = request.getfixturevalue(
                "clickhouse_cluster" if cluster else "clickhouse_server"
            )
            ch = {"hosts": hosts, "database": f"t{next(_databases)}"}
            if cluster:
                ch["cluster"] = CLUSTER
            extra = fields.pop("clickhouse", {})
            assert isinstance(extra, dict)
            return StoreConfig.model_validate(
                {"backend": name, **fields, "clickhouse": {**ch, **extra}}
            )
        extra_fmt: dict[str, object] = {}
        if variant == "fresh":
            extra_fmt = {"fresh_segments": "arrow"}
        elif variant:
            extra_fmt = {"flows_format": variant}
        return StoreConfig.model_validate({"backend": name, **extra_fmt, **fields})

    return make


@pytest.fixture(params=BACKEND_PARAMS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def store(backend: str, tmp_path: Path, config_for: ConfigFor) -> Iterator[Store]:
    """Each backend, opened on a fresh file (or database) under ``tmp_path``."""
    s = open_store(config_for(backend, data_dir=tmp_path))
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def store_factory(backend: str, config_for: ConfigFor) -> Iterator[StoreFactory]:
    """Fresh in-memory instances (fresh databases) of a backend (for property tests)."""
    opened: list[Store] = []

    def make() -> Store:
        s = open_store(config_for(backend, path=":memory:"))
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()
