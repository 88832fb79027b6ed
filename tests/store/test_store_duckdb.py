"""What only the DuckDB backend promises: a file that survives, threads, config."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from pydantic import ValidationError

from shadowcast.errors import StoreError
from shadowcast.store.base import AggQuery, Store
from shadowcast.store.config import StoreConfig, apply_retention, open_store
from shadowcast.store.duckdb import DuckDBStore
from shadowcast.store.memory import MemoryStore
from shadowcast.store.schema import TABLES
from shadowcast.store.synth import DAY_MS, T0_MS, random_table, synthetic_flows


def test_reopen_sees_the_data(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "store.duckdb"
    with DuckDBStore(path) as s:
        s.write("od_series", random_table("od_series", 100))
        s.write("flows", random_table("flows", 50))
    assert path.is_file()
    with DuckDBStore(path) as s:  # tables are created only when missing
        assert s.count("od_series") == 100
        assert s.read("flows").equals(random_table("flows", 50))
        s.write("od_series", random_table("od_series", 10, seed=2))
    with DuckDBStore(path) as s:
        assert s.count("od_series") == 110


def test_rollback_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with DuckDBStore(path) as s:
        with pytest.raises(StoreError), s.transaction():
            s.write("alerts", random_table("alerts", 5))
            s.write("alerts", pa.table({"issued": [1]}))
    with DuckDBStore(path) as s:
        assert s.count("alerts") == 0


def test_incompatible_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE od_series (time TIMESTAMPTZ, value DOUBLE)")
    con.close()
    with pytest.raises(StoreError, match="od_series"):
        DuckDBStore(path)
    junk = tmp_path / "junk.duckdb"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="junk.duckdb"):
        DuckDBStore(junk)


def test_reader_sees_only_committed_writes() -> None:
    s = DuckDBStore(":memory:")
    inside, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with s.transaction():
                s.write("od_series", random_table("od_series", 100))
                inside.set()
                assert release.wait(10)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=writer)
    t.start()
    assert inside.wait(10)
    assert s.count("od_series") == 0  # not committed yet
    release.set()
    t.join(10)
    assert not errors
    assert s.count("od_series") == 100
    s.close()


def test_concurrent_writers_and_reader(
    backend: str, tmp_path: Path, config_for: Callable[..., StoreConfig]
) -> None:
    s: Store = open_store(config_for(backend, data_dir=tmp_path))
    errors: list[BaseException] = []

    def write(seed: int) -> None:
        try:
            for batch in synthetic_flows(20_000, 2_000, seed=seed):
                s.write("flows", batch)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    seen = 0
    while any(t.is_alive() for t in threads):
        n = s.count("flows")
        assert n >= seen
        if not backend.startswith("clickhouse"):  # ClickHouse: whole batches per day
            assert n % 2_000 == 0  # whole batches only  (partition, see clickhouse.py)
        seen = n
        s.aggregate(AggQuery("flows", 300, by=["app"], values=["bytes"]))
    for t in threads:
        t.join(30)
    assert not errors
    assert s.count("flows") == 60_000
    s.close()


def test_config_defaults_and_paths(tmp_path: Path) -> None:
    cfg = StoreConfig(data_dir=tmp_path)
    assert cfg.backend == "duckdb"
    assert cfg.resolved_path() == str(tmp_path / "shadowcast.duckdb")
    assert StoreConfig(path=":memory:").resolved_path() == ":memory:"
    assert StoreConfig(path=str(tmp_path / "x.db")).resolved_path() == str(tmp_path / "x.db")
    assert set(cfg.retention_days) <= set(TABLES)
    s = open_store(cfg)
    assert isinstance(s, DuckDBStore)
    s.close()
    assert isinstance(open_store(StoreConfig(backend="memory")), MemoryStore)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"backend": "postgres"}, "backend"),
        ({"backend": "clickhouse", "clickhouse": {"hosts": ["db:port"]}}, "port"),
        ({"backend": "clickhouse", "clickhouse": {"hosts": []}}, "hosts"),
        ({"backend": "clickhouse", "clickhouse": {"database": "a-b"}}, "database"),
        ({"backend": "clickhouse", "clickhouse": {"password": "x"}}, "password"),
        ({"retention_days": {"nope": 1}}, "nope"),
        ({"retention_days": {"flows": 0}}, "flows"),
        ({"threads": 100_000}, "threads"),
        ({"memory_limit": "lots"}, "memory_limit"),
        ({"batch_size": 1000}, "batch_size"),  # removed: collect.flush_rows sizes the writes
        ({"colour": "red"}, "colour"),
    ],
)
def test_config_rejects_bad_fields(fields: dict[str, object], match: str) -> None:
    with pytest.raises(ValidationError, match=match):
        StoreConfig.model_validate(fields)


def test_apply_retention_per_table() -> None:
    store = MemoryStore()
    store.write("flows", random_table("flows", 10, span_ms=1000))
    store.write("od_series", random_table("od_series", 10, span_ms=1000))
    cfg = StoreConfig(backend="memory", retention_days={"flows": 2, "od_series": 30})
    now = random_table("flows", 1).column("time_start")[0].as_py() + timedelta(days=10)
    assert apply_retention(store, cfg, now) == {"flows": 10, "od_series": 0}
    assert store.count("od_series") == 10


def test_synthetic_flows_shape() -> None:
    batches = list(synthetic_flows(25_000, 10_000, seed=1))
    assert [b.num_rows for b in batches] == [10_000, 10_000, 5_000]
    t = pa.concat_tables(batches)
    times = t.column("time_start").cast(pa.int64()).to_numpy()
    assert times.min() >= T0_MS and times.max() < T0_MS + DAY_MS
    assert (times[1:] >= times[:-1]).all()
    assert len(set(t.column("app").to_pylist())) == 50
    assert t.column("src_addr").to_pylist()[0][10:12] == b"\xff\xff"


def test_grown_schema_adds_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute('CREATE TABLE alerts (issued TIMESTAMPTZ, "at" TIMESTAMPTZ, name VARCHAR)')
    con.execute("INSERT INTO alerts VALUES ('2024-01-01 00:00:00+00', NULL, 'old')")
    con.close()
    with DuckDBStore(path) as s:
        old = s.read("alerts")
        assert old.schema == TABLES["alerts"]
        assert old.column("name").to_pylist() == ["old"]
        assert old.column("message").to_pylist() == [None]


def test_failed_open_releases_the_file(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE od_series (time TIMESTAMPTZ, value DOUBLE)")
    con.close()
    with pytest.raises(StoreError, match="expected"):
        DuckDBStore(path)
    con = duckdb.connect(str(path))  # no lock or open instance left behind
    con.execute("DROP TABLE od_series")
    con.close()
    with DuckDBStore(path) as s:
        assert s.count("od_series") == 0
