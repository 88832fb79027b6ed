"""One row no datetime can hold never fails a write (every backend, both flows formats)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from shadowcast.store.base import Store
from shadowcast.store.duckdb import DuckDBStore
from shadowcast.store.segments import Segments
from shadowcast.store.synth import random_table

T0_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
LATER_MS = 2_051_222_400_000  # 2035-01-01


def with_times(data: pa.Table, column: str, values: list[int | None], unit: str = "ms") -> pa.Table:
    idx = data.schema.get_field_index(column)
    arr = pa.array(values, pa.int64()).cast(pa.timestamp(unit, tz="UTC"))
    return data.set_column(idx, column, arr)


@pytest.mark.parametrize("bad_ms", [2**52, 2**62, -(2**62), 253_402_300_800_000])
def test_rows_past_year_9999_are_dropped_and_the_rest_written(
    store: Store, bad_ms: int, caplog: pytest.LogCaptureFixture
) -> None:
    good = random_table("flows", 1000, seed=3)
    starts = good.column("time_start").cast(pa.int64()).to_pylist()
    starts[417] = bad_ms
    batch = with_times(good, "time_start", starts)
    with caplog.at_level(logging.WARNING, logger="shadowcast.store.conform"):
        assert store.write("flows", batch) == 999
    assert "write to 'flows': 1 row(s) with a timestamp outside years 1-9999 dropped" in (
        caplog.text
    )
    assert store.count("flows") == 999
    back = store.read("flows")
    kept = pa.concat_tables([good.slice(0, 417), good.slice(418)])
    assert back.equals(kept)
    assert back.column("time_start").to_pylist()[0] is not None  # every row turns into Python


def test_the_edge_of_year_9999_is_kept_and_any_unit_is_checked_before_the_cast(
    store: Store,
) -> None:
    last_ms = 253_402_300_799_999  # 9999-12-31T23:59:59.999
    od = pa.table(
        {
            "time": pa.array([last_ms // 1000, 2**62, 0], pa.int64()).cast(pa.timestamp("s")),
            "src": ["a", "b", "c"],
            "dst": ["x", "x", "x"],
            "app": ["", "", ""],
            "mbps": [1.0, 2.0, 3.0],
        }
    )
    # 2**62 seconds overflows a millisecond cast: dropped first, so the cast succeeds
    assert store.write("od_series", od) == 2
    assert store.read("od_series").column("src").to_pylist() == ["a", "c"]
    edge = with_times(random_table("flows", 2, seed=1), "time_start", [last_ms, None])
    assert store.write("flows", edge) == 2


def test_bounds_never_overflow_and_contain_every_row() -> None:
    data = with_times(random_table("flows", 3), "time_start", [2**62, -(2**62), 1_700_000_000_000])
    lo, hi = Segments._bounds("flows", data)
    assert lo == datetime.min.replace(tzinfo=UTC) and hi == datetime.max.replace(tzinfo=UTC)
    plain = with_times(random_table("flows", 2), "time_start", [T0_MS + 5, T0_MS])
    lo, hi = Segments._bounds("flows", plain)
    assert lo == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert hi == lo + timedelta(milliseconds=5)
    nulls = with_times(random_table("flows", 2), "time_start", [None, None])
    assert Segments._bounds("flows", nulls) == (None, None)


def test_retention_rewrites_a_segment_holding_a_stray_time(tmp_path: Path) -> None:
    """A segment holding a time beyond year 9999 (written before writes dropped them) is
    still rewritten by retention: the new manifest bounds are clamped, not overflowed."""
    path = tmp_path / "s.duckdb"
    data = with_times(random_table("flows", 3, seed=2), "time_start", [T0_MS, T0_MS, LATER_MS])
    with DuckDBStore(path) as store:
        store.write("flows", data)
    seg = next((Path(str(path) + ".segments") / "flows").iterdir())
    stray = with_times(random_table("flows", 1, seed=4), "time_start", [2**52])
    pq.write_table(pa.concat_tables([pq.read_table(seg), stray.cast(pq.read_schema(seg))]), seg)
    with DuckDBStore(path) as store:
        store.retain(timedelta(days=1), now=datetime(2030, 1, 1, tzinfo=UTC))
        kept = store.read("flows")
    assert kept.column("time_start").cast(pa.int64()).to_pylist() == [LATER_MS, 2**52]
    assert pc.sum(kept.column("bytes")).as_py() == (
        data["bytes"][2].as_py() + stray["bytes"][0].as_py()
    )
