"""The duckdb backend's fresh (Arrow IPC) segments: what a collector's store writes, read at
once, compacted into Parquet in the background and on close, in insertion order."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from shadowcast.store.base import AggQuery
from shadowcast.store.config import StoreConfig, open_store
from shadowcast.store.duckdb import DuckDBStore
from shadowcast.store.synth import random_table, synthetic_flows


def seg_files(path: Path, suffix: str, table: str = "flows") -> list[Path]:
    folder = Path(str(path) + ".segments") / table
    return sorted(folder.glob("*" + suffix)) if folder.is_dir() else []


def test_writes_are_fresh_files_read_in_order_with_parquet_ones(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    parts = [random_table("flows", 50 + 10 * i, seed=i) for i in range(6)]
    with DuckDBStore(path) as s:  # parquet, as a replay or ingest writes
        s.write("flows", parts[0])
    with DuckDBStore(path, fresh="arrow", compact_after_s=3600) as s:
        for p in parts[1:3]:
            s.write("flows", p)
        assert len(seg_files(path, ".arrow")) == 2 and len(seg_files(path, ".parquet")) == 1
        assert s.fresh_rows() == parts[1].num_rows + parts[2].num_rows
        assert s.read("flows").equals(pa.concat_tables(parts[:3]))
    # closing compacted them: one Parquet segment in their place, same rows, same order
    assert seg_files(path, ".arrow") == [] and len(seg_files(path, ".parquet")) == 2
    with DuckDBStore(path, fresh="arrow", compact_after_s=3600) as s:
        assert s.read("flows").equals(pa.concat_tables(parts[:3]))
        for p in parts[3:]:
            s.write("flows", p)
        everything = pa.concat_tables(parts)
        got = s.read("flows")
        assert got.equals(everything)
        assert s.count("flows") == everything.num_rows
        q = AggQuery("flows", 3600, values=["bytes"])
        timed = everything.filter(pc.is_valid(everything.column("time_start")))
        assert (
            sum(s.aggregate(q).column("bytes").to_pylist()) == pc.sum(timed.column("bytes")).as_py()
        )


def test_compaction_waits_for_rows_or_age_and_keeps_order(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    parts = [random_table("flows", 40, seed=10 + i) for i in range(5)]
    with DuckDBStore(path, fresh="arrow", compact_after_s=3600) as s:
        s._stop_compactor.set()  # this test drives compaction itself
        for p in parts:
            s.write("flows", p)
        assert s.compact() == 0  # young and small: not due
        assert len(seg_files(path, ".arrow")) == 5
        s.compact_after_s = 0.0
        assert s.compact() == 200
        assert seg_files(path, ".arrow") == [] and len(seg_files(path, ".parquet")) == 1
        assert s.read("flows").equals(pa.concat_tables(parts))
        assert s.fresh_rows() == 0


def test_the_background_compactor_rewrites_fresh_segments(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    batches = list(synthetic_flows(20_000, 5_000, seed=3))
    with DuckDBStore(path, fresh="arrow", compact_after_s=0.0) as s:
        for b in batches:
            s.write("flows", b)
        until = time.monotonic() + 30
        while s.fresh_rows() and time.monotonic() < until:
            time.sleep(0.2)
        assert s.fresh_rows() == 0, "the compactor did not run within 30 s"
        assert seg_files(path, ".arrow") == []
        assert s.read("flows").equals(pa.concat_tables(batches))


def test_retention_reads_fresh_segments(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    batches = list(synthetic_flows(30_000, 10_000, seed=5))
    with DuckDBStore(path, fresh="arrow", compact_after_s=3600) as s:
        for b in batches:
            s.write("flows", b)
        cut = batches[1].column("time_start")[5_000].as_py()
        t = pa.concat_tables(batches).column("time_start").to_pylist()
        old = sum(1 for v in t if v is not None and v < cut)
        assert s.retain(timedelta(0), now=cut, tables=["flows"]) == {"flows": old}
        assert s.count("flows") == 30_000 - old
        assert s.read("flows").equals(s.read("flows", start=cut))


def test_a_damaged_fresh_segment_is_set_aside_and_repaired(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    good = random_table("flows", 300, seed=1)
    bad = pa.concat_tables([random_table("flows", 50, seed=2 + i) for i in range(4)])
    with DuckDBStore(path, fresh="arrow", compact_after_s=3600) as s:
        s.write("flows", good)
    # that store compacted on close; this one writes a fresh segment and it is damaged
    with DuckDBStore(path, fresh="arrow", compact_after_s=3600) as s:
        s._stop_compactor.set()
        s.write("flows", bad)
        victim = seg_files(path, ".arrow")
        assert len(victim) == 1
        data = victim[0].read_bytes()
        victim[0].write_bytes(data[: len(data) // 2])  # truncated by a crash of the disk
        got = s.read("flows")  # the query sets the file aside and answers with the rest
        assert got.equals(good)
        assert s.count("flows") == 300
        problems = s.check_segments(full=True)
        assert [p.file for p in problems] == [victim[0].name]
        assert "unreadable" in problems[0].reason
        done = s.repair_segments()
        # cut in half: the record batches before the cut are kept
        assert [r.action for r in done] == ["rewritten"] and 0 < done[0].kept < 200
        assert s.read("flows").equals(pa.concat_tables([good, bad.slice(0, done[0].kept)]))


def test_collecting_config_writes_fresh_segments(tmp_path: Path) -> None:
    cfg = StoreConfig(data_dir=tmp_path)
    assert cfg.fresh_segments == "auto" and cfg.collecting().fresh_segments == "arrow"
    assert StoreConfig(fresh_segments="parquet").collecting().fresh_segments == "parquet"
    s = open_store(cfg.collecting())
    try:
        s.write("flows", random_table("flows", 20, seed=9))
        assert len(seg_files(tmp_path / "shadowcast.duckdb", ".arrow")) == 1
    finally:
        s.close()
    s = open_store(cfg)  # parquet: reads what the collector left
    try:
        assert s.count("flows") == 20
        s.write("flows", random_table("flows", 5, seed=8))
        assert len(seg_files(tmp_path / "shadowcast.duckdb", ".arrow")) == 0
    finally:
        s.close()


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_fresh_segments_in_every_compression(tmp_path: Path, compression: str) -> None:
    path = tmp_path / "s.duckdb"
    a = random_table("flows", 100, seed=4)
    with DuckDBStore(path, fresh="arrow", compression=compression, compact_after_s=3600) as s:
        s.write("flows", a)
        assert len(seg_files(path, ".arrow")) == 1
        assert s.read("flows").equals(a)
    with DuckDBStore(path) as s:
        assert s.read("flows").equals(a)
