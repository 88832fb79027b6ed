"""The duckdb backend's Parquet segments for flows: files, manifest, crash leftovers, modes."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from shadowcast.errors import StoreError
from shadowcast.store.base import AggQuery
from shadowcast.store.duckdb import DuckDBStore
from shadowcast.store.segments import MERGE_RUN
from shadowcast.store.synth import random_table, synthetic_flows


def seg_files(path: Path, table: str = "flows") -> list[Path]:
    folder = Path(str(path) + ".segments") / table
    return sorted(folder.glob("*")) if folder.is_dir() else []


def test_writes_are_parquet_files_that_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    a, b = random_table("flows", 300, seed=1), random_table("flows", 200, seed=2)
    with DuckDBStore(path) as s:
        s.write("flows", a)
        s.write("flows", b)
        s.write("flow_features", random_table("flow_features", 40))
        assert len(seg_files(path)) == 2 and len(seg_files(path, "flow_features")) == 1
        assert s.read("flows").equals(pa.concat_tables([a, b]))
    with DuckDBStore(path) as s:
        assert s.count("flows") == 500 and s.count("flow_features") == 40
        assert s.read("flows").equals(pa.concat_tables([a, b]))
        assert s.time_range("flows")[0] is not None


def test_rollback_and_failed_writes_leave_no_files(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with DuckDBStore(path) as s:
        with pytest.raises(RuntimeError), s.transaction():
            s.write("flows", random_table("flows", 100))
            assert s.count("flows") == 100  # the transaction reads its own segment
            raise RuntimeError("boom")
        assert s.count("flows") == 0
        assert seg_files(path) == []
        with pytest.raises(StoreError), s.transaction():
            s.write("flows", random_table("flows", 100))
            s.write("flows", pa.table({"time_start": ["not a time"]}))
        assert s.count("flows") == 0 and seg_files(path) == []


def test_uncommitted_files_are_deleted_on_open(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    with DuckDBStore(path) as s:
        s.write("flows", random_table("flows", 10))
    stray = seg_files(path)[0].with_name("left-by-a-crash.parquet")
    stray.write_bytes(b"half a file")
    with DuckDBStore(path) as s:
        assert not stray.exists()
        assert s.count("flows") == 10
        assert s.read("flows").num_rows == 10


def test_modes_read_each_others_rows(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    old, new = random_table("flows", 120, seed=3), random_table("flows", 80, seed=4)
    with DuckDBStore(path, flows_format="table") as s:
        s.write("flows", old)
        assert seg_files(path) == []
    with DuckDBStore(path) as s:  # parquet: the old table rows stay, new rows are segments
        s.write("flows", new)
        assert len(seg_files(path)) == 1
        assert s.count("flows") == 200
        got = s.read("flows")
        assert got.equals(pa.concat_tables([old, new]))
        q = AggQuery("flows", 3600, values=["bytes"])
        assert sum(s.aggregate(q).column("bytes").to_pylist()) == sum(
            got.column("bytes").to_pylist()
        )
    with DuckDBStore(path, flows_format="table") as s:
        assert s.count("flows") == 200
        assert s.retain(timedelta(0), now=_latest(got) + timedelta(seconds=1))["flows"] == 200
        assert s.count("flows") == 0


def _latest(t: pa.Table) -> object:
    return max(v for v in t.column("time_start").to_pylist() if v is not None)


def test_retention_drops_and_rewrites_segments(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    batches = list(synthetic_flows(30_000, 10_000, seed=5))  # time-ordered: 3 segments
    with DuckDBStore(path) as s:
        for b in batches:
            s.write("flows", b)
        before = seg_files(path)
        cut = batches[1].column("time_start")[5_000].as_py()
        all_rows = pa.concat_tables(batches)
        t = all_rows.column("time_start").to_pylist()
        old = sum(1 for v in t if v is not None and v < cut)
        deleted = s.retain(timedelta(0), now=cut, tables=["flows"])
        assert deleted == {"flows": old}
        assert s.count("flows") == 30_000 - old
        assert s.read("flows").equals(s.read("flows", start=cut))
        after = seg_files(path)
        # the first segment dropped, the second rewritten, the third untouched
        assert len(after) == 2 and len(set(after) & set(before)) == 1
    with DuckDBStore(path) as s:
        assert s.count("flows") == 30_000 - old


def test_small_segments_are_merged_in_order(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    parts = [random_table("flows", 7, seed=i) for i in range(3 * MERGE_RUN)]
    with DuckDBStore(path) as s:
        for p in parts:
            s.write("flows", p)
        assert len(seg_files(path)) < MERGE_RUN
        assert s.read("flows").equals(pa.concat_tables(parts))
        assert s.count("flows") == 7 * 3 * MERGE_RUN


def test_memory_store_removes_its_folder() -> None:
    s = DuckDBStore(":memory:")
    s.write("flows", random_table("flows", 5))
    folder = s._segments.root
    assert any(folder.rglob("*.parquet"))
    s.close()
    assert not folder.exists()


def test_bad_format_is_rejected() -> None:
    with pytest.raises(StoreError, match="flows_format"):
        DuckDBStore(":memory:", flows_format="csv")
    with pytest.raises(StoreError, match="compression"):
        DuckDBStore(":memory:", compression="gzip9")


def test_two_stores_on_one_file_keep_each_others_segments(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    a = DuckDBStore(path)
    try:
        with a.transaction():
            a.write("flows", random_table("flows", 10))
            with DuckDBStore(path) as b:  # opened mid-transaction: a's file is no leftover
                b.write("flows", random_table("flows", 5, seed=1))
                assert b.count("flows") == 5
        assert a.count("flows") == 15
        assert len(seg_files(path)) == 2
    finally:
        a.close()
    with DuckDBStore(path) as s:
        assert s.read("flows").num_rows == 15


def test_segments_keep_min_max_only_where_a_query_can_skip_row_groups(tmp_path: Path) -> None:
    """Times, names and addresses carry row-group statistics (DuckDB skips row groups on
    them); unsorted counters and ports do not (their min/max skip nothing, cost ~5 %)."""
    import pyarrow.parquet as pq

    path = tmp_path / "s.duckdb"
    with DuckDBStore(path) as s:
        s.write("flows", random_table("flows", 300, seed=1))
        (seg,) = seg_files(path)
        group = pq.ParquetFile(seg).metadata.row_group(0)
        stats = {
            group.column(i).path_in_schema: group.column(i).statistics
            for i in range(group.num_columns)
        }
        with_minmax = {c for c, st in stats.items() if st is not None and st.has_min_max}
        assert {"time_start", "time_end", "exporter", "app", "src_addr", "dst_addr"} <= with_minmax
        assert not {"bytes", "packets", "src_port", "dst_port"} & with_minmax
        # and the time filter still prunes: a window after every row reads none
        end = s.time_range("flows")[1]
        assert end is not None
        assert s.read("flows", start=end + timedelta(seconds=1)).num_rows == 0
