"""The contract every Store backend must pass (runs once per entry in ``BACKENDS``).

A new backend (ClickHouse, ...) joins ``store.config.BACKENDS`` and must pass this file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowcast.errors import StoreError
from shadowcast.store.base import AggQuery, Store
from shadowcast.store.schema import OD_SERIES_SCHEMA, TABLES, TIME_COLUMN
from shadowcast.store.synth import T0_MS, random_table

MakeRows = Callable[..., pa.Table]
StoreFactory = Callable[[], Store]


def ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def od(times_ms: list[int], src: list[str], mbps: list[float], app: str = "") -> pa.Table:
    n = len(times_ms)
    return pa.table(
        {
            "time": pa.array(times_ms, pa.int64()).cast(pa.timestamp("ms", tz="UTC")),
            "src": src,
            "dst": ["d"] * n,
            "app": [app] * n,
            "mbps": pa.array(mbps, pa.float64()),
        }
    )


# -- round trip ---------------------------------------------------------------------------


@pytest.mark.parametrize("table", sorted(TABLES))
def test_round_trip_every_table(store: Store, table: str) -> None:
    data = random_table(table, 500, seed=1)
    assert store.write(table, data.slice(0, 300)) == 300
    assert store.write(table, data.slice(300).to_batches()[0]) == 200  # a RecordBatch too
    assert store.count(table) == 500
    back = store.read(table)
    assert back.schema == TABLES[table]
    assert back.equals(data)


def test_empty_write_and_empty_aggregate(store: Store) -> None:
    assert store.write("od_series", OD_SERIES_SCHEMA.empty_table()) == 0
    out = store.aggregate(AggQuery("od_series", 300, by=["src"], values=["mbps"]))
    assert out.num_rows == 0
    assert out.column_names == ["bucket", "src", "mbps"]
    assert store.read("alerts").num_rows == 0


# -- aggregation --------------------------------------------------------------------------


def expected_agg(
    data: pa.Table, step_s: int, by: list[str], value: str, agg: str, tcol: str
) -> dict[tuple[object, ...], float]:
    ms = data.column(tcol).cast(pa.int64()).to_numpy()
    bucket = (ms // (step_s * 1000)) * (step_s * 1000)
    keys = [data.column(b).to_pylist() for b in by]
    vals = data.column(value).to_numpy()
    groups: dict[tuple[object, ...], list[float]] = defaultdict(list)
    for i in range(len(ms)):
        groups[(int(bucket[i]), *(k[i] for k in keys))].append(float(vals[i]))
    fns: dict[str, Callable[[np.ndarray], float]] = {
        "sum": lambda a: float(a.sum()),
        "avg": lambda a: float(a.mean()),
        "max": lambda a: float(a.max()),
        "min": lambda a: float(a.min()),
        "count": lambda a: float(len(a)),
    }
    return {k: fns[agg](np.array(v)) for k, v in groups.items()}


def result_dict(out: pa.Table, by: list[str], value: str) -> dict[tuple[object, ...], float]:
    ms = out.column("bucket").cast(pa.int64()).to_pylist()
    keys = [out.column(b).to_pylist() for b in by]
    vals = out.column(value).to_pylist()
    return {(ms[i], *(k[i] for k in keys)): float(vals[i]) for i in range(out.num_rows)}


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    n=st.integers(1, 300),
    seed=st.integers(0, 2**16),
    step_s=st.sampled_from([1, 7, 60, 300, 900, 3600, 86_400]),
    by=st.sampled_from([[], ["src"], ["src", "dst"], ["app"], ["src", "app"]]),
    agg=st.sampled_from(["sum", "avg", "max", "min", "count"]),
)
def test_aggregate_equals_numpy_groupby(
    store_factory: StoreFactory, n: int, seed: int, step_s: int, by: list[str], agg: str
) -> None:
    rng = np.random.default_rng(seed)
    data = pa.table(
        {
            "time": pa.array(T0_MS + rng.integers(0, 3 * 3_600_000, n), pa.int64()).cast(
                pa.timestamp("ms", tz="UTC")
            ),
            "src": [f"s{i}" for i in rng.integers(0, 4, n)],
            "dst": [f"d{i}" for i in rng.integers(0, 3, n)],
            "app": [["video", "web", ""][i] for i in rng.integers(0, 3, n)],
            "mbps": rng.normal(50, 20, n),
        }
    )
    store = store_factory()
    store.write("od_series", data)
    out = store.aggregate(AggQuery("od_series", step_s, by=by, values=["mbps"], agg=agg))
    want = expected_agg(data, step_s, by, "mbps", agg, "time")
    got = result_dict(out, by, "mbps")
    assert got.keys() == want.keys()
    for k, v in want.items():
        assert got[k] == pytest.approx(v, rel=1e-9, abs=1e-9)
    # sorted by bucket then by-columns
    sort_keys = [("bucket", "ascending")] + [(b, "ascending") for b in by]
    assert out.equals(out.sort_by(sort_keys))
    store.close()


@pytest.mark.parametrize("step_s", [1, 60, 300, 3600, 86_400])
@pytest.mark.parametrize("by", [["category"], ["src_site", "dst_site"], ["exporter"]])
def test_aggregate_sums_equal_raw_sums(store: Store, step_s: int, by: list[str]) -> None:
    data = random_table("flows", 2000, seed=step_s)
    store.write("flows", data)
    out = store.aggregate(AggQuery("flows", step_s, by=by, values=["bytes", "packets"]))
    assert out.schema.field("bytes").type == pa.int64()
    raw = int(np.sum(data.column("bytes").to_numpy().astype(object)))
    assert sum(out.column("bytes").to_pylist()) == raw
    assert sum(out.column("packets").to_pylist()) == int(
        np.sum(data.column("packets").to_numpy().astype(object))
    )


def test_bucket_boundaries_are_epoch_aligned(store: Store) -> None:
    step = 300_000
    k = T0_MS // step + 1
    edge = k * step
    store.write(
        "od_series", od([edge - 1, edge, edge + step - 1, edge + step], ["a"] * 4, [1, 2, 4, 8])
    )
    out = store.aggregate(AggQuery("od_series", 300, values=["mbps"]))
    assert out.column("bucket").cast(pa.int64()).to_pylist() == [edge - step, edge, edge + step]
    assert out.column("mbps").to_pylist() == [1, 6, 8]
    # an odd step is aligned to the Unix epoch, not to the first row
    out7 = store.aggregate(AggQuery("od_series", 7, agg="count"))
    assert all(b % 7000 == 0 for b in out7.column("bucket").cast(pa.int64()).to_pylist())
    assert sum(out7.column("count").to_pylist()) == 4


def test_buckets_floor_before_the_epoch(store: Store) -> None:
    store.write("od_series", od([-1, 0, 299_999], ["a"] * 3, [1, 2, 4]))
    out = store.aggregate(AggQuery("od_series", 300, values=["mbps"]))
    assert out.column("bucket").cast(pa.int64()).to_pylist() == [-300_000, 0]
    assert out.column("mbps").to_pylist() == [1, 6]


def test_time_filters(store: Store) -> None:
    times = [T0_MS + i * 60_000 for i in range(10)]
    store.write("od_series", od(times, ["a"] * 10, [float(i) for i in range(10)]))
    start, end = ts(times[2]), ts(times[5])
    rows = store.read("od_series", start=start, end=end)
    assert rows.column("mbps").to_pylist() == [2, 3, 4]  # start inclusive, end exclusive
    naive = start.replace(tzinfo=None)  # naive datetimes are UTC
    assert store.read("od_series", start=naive, end=end).num_rows == 3
    plus2 = timezone(timedelta(hours=2))
    assert store.read("od_series", start=start.astimezone(plus2), end=end).num_rows == 3
    out = store.aggregate(AggQuery("od_series", 60, values=["mbps"], start=start, end=end))
    assert out.column("mbps").to_pylist() == [2, 3, 4]
    assert store.read("od_series", start=ts(times[-1] + 1)).num_rows == 0


def test_where_filters(store: Store) -> None:
    store.write("od_series", od([T0_MS] * 3, ["a", "b", "a"], [1, 2, 4], app="video"))
    store.write("od_series", od([T0_MS], ["a"], [8], app="web"))
    assert store.read("od_series", where={"src": "a"}).column("mbps").to_pylist() == [1, 4, 8]
    q = AggQuery("od_series", 60, by=["src"], values=["mbps"], where={"app": "video"})
    assert store.aggregate(q).column("mbps").to_pylist() == [5, 2]
    assert store.read("od_series", where={"src": "zz"}).num_rows == 0
    flows = random_table("flows", 200, seed=3)
    store.write("flows", flows)
    proto = int(flows.column("proto")[0].as_py())
    want = sum(1 for p in flows.column("proto").to_pylist() if p == proto)
    assert store.read("flows", where={"proto": str(proto)}).num_rows == want
    with pytest.raises(StoreError, match="proto"):
        store.read("flows", where={"proto": "not-a-number"})
    with pytest.raises(StoreError, match="nope"):
        store.read("flows", where={"nope": "1"})


def test_max_avg_min_count(store: Store) -> None:
    store.write("link_series", random_table("link_series", 1, seed=0).slice(0, 0))
    data = pa.table(
        {
            "time": pa.array([T0_MS, T0_MS + 1000, T0_MS + 2000], pa.int64()).cast(
                pa.timestamp("ms", tz="UTC")
            ),
            "link": ["l1", "l1", "l2"],
            "load_mbps": [10.0, 30.0, 5.0],
            "capacity_mbps": [100.0, 100.0, 10.0],
            "utilisation": [0.1, 0.3, 0.5],
        }
    )
    store.write("link_series", data)

    def agg(a: str) -> list[float]:
        q = AggQuery("link_series", 3600, by=["link"], values=["load_mbps", "utilisation"], agg=a)
        out = store.aggregate(q)
        assert out.column_names == ["bucket", "link", "load_mbps", "utilisation"]
        return [*out.column("load_mbps").to_pylist(), *out.column("utilisation").to_pylist()]

    assert agg("max") == pytest.approx([30, 5, 0.3, 0.5])
    assert agg("min") == pytest.approx([10, 5, 0.1, 0.5])
    assert agg("avg") == pytest.approx([20, 5, 0.2, 0.5])
    assert agg("count") == [2, 1, 2, 1]
    out = store.aggregate(AggQuery("link_series", 3600, by=["link"], agg="count"))
    assert out.column("count").to_pylist() == [2, 1]


# -- retention ----------------------------------------------------------------------------


def test_retention_deletes_exactly_old_rows(store: Store) -> None:
    now = ts(T0_MS + 10 * 86_400_000)
    cutoff = T0_MS + 3 * 86_400_000
    times = [cutoff - 86_400_000, cutoff - 1, cutoff, cutoff + 1, cutoff + 86_400_000]
    store.write("od_series", od(times, ["a"] * 5, [1, 2, 3, 4, 5]))
    flows = random_table("flows", 100, seed=5, t0_ms=cutoff - 50_000, span_ms=100_000)
    store.write("flows", flows)
    old_flows = int(np.sum(flows.column("time_start").cast(pa.int64()).to_numpy() < cutoff))
    deleted = store.retain(timedelta(days=7), now=now)
    assert deleted["od_series"] == 2
    assert deleted["flows"] == old_flows
    assert set(deleted) == set(TABLES)
    assert store.read("od_series").column("mbps").to_pylist() == [3, 4, 5]
    assert store.count("flows") == 100 - old_flows
    assert store.retain(timedelta(days=7), now=now) == dict.fromkeys(TABLES, 0)


def test_retention_per_table_keeps_rows_without_time(store: Store) -> None:
    old = od([T0_MS], ["a"], [1.0])
    store.write("od_series", old)
    store.write("link_series", random_table("link_series", 10, seed=1))
    untimed = od([T0_MS], ["b"], [2.0]).set_column(
        0, "time", pa.nulls(1, pa.timestamp("ms", tz="UTC"))
    )
    store.write("od_series", untimed)
    later = ts(T0_MS + 400 * 86_400_000)
    assert store.retain(timedelta(days=1), now=later, tables=["od_series"]) == {"od_series": 1}
    assert store.count("link_series") == 10
    assert store.read("od_series").column("src").to_pylist() == ["b"]
    with pytest.raises(StoreError, match="nope"):
        store.retain(timedelta(days=1), tables=["nope"])


# -- transactions -------------------------------------------------------------------------


def test_transaction_commits_together(store: Store) -> None:
    with store.transaction():
        store.write("od_series", od([T0_MS], ["a"], [1.0]))
        store.write("alerts", random_table("alerts", 3))
        assert store.count("od_series") == 1  # a transaction reads its own writes
    assert store.count("od_series") == 1
    assert store.count("alerts") == 3


def test_transaction_rolls_back_on_exception(store: Store) -> None:
    store.write("od_series", od([T0_MS], ["keep"], [1.0]))
    with pytest.raises(RuntimeError, match="boom"), store.transaction():
        store.write("od_series", od([T0_MS], ["a"], [1.0]))
        store.write("forecasts", random_table("forecasts", 5))
        raise RuntimeError("boom")
    assert store.read("od_series").column("src").to_pylist() == ["keep"]
    assert store.count("forecasts") == 0


def test_bad_batch_mid_transaction_leaves_nothing(store: Store) -> None:
    bad = random_table("link_series", 5).set_column(
        2, "load_mbps", pa.array(["1.0", "2", "x", "4", "5"])
    )
    with pytest.raises(StoreError, match="load_mbps"), store.transaction():
        store.write("od_series", od([T0_MS], ["a"], [1.0]))
        store.write("link_series", random_table("link_series", 5))
        store.write("link_series", bad)
        store.write("alerts", random_table("alerts", 2))
    for table in TABLES:
        assert store.count(table) == 0, table


def test_caught_write_error_still_rolls_back(store: Store) -> None:
    with pytest.raises(StoreError, match="rolled back"), store.transaction():
        store.write("od_series", od([T0_MS], ["a"], [1.0]))
        with pytest.raises(StoreError):
            store.write("od_series", pa.table({"time": [1]}))
    assert store.count("od_series") == 0
    store.write("od_series", od([T0_MS], ["a"], [1.0]))  # the store is usable afterwards
    assert store.count("od_series") == 1


def test_nested_transactions_join_the_outer(store: Store) -> None:
    with pytest.raises(ValueError), store.transaction():
        store.write("od_series", od([T0_MS], ["a"], [1.0]))
        with store.transaction():
            store.write("od_series", od([T0_MS], ["b"], [1.0]))
        raise ValueError
    assert store.count("od_series") == 0
    with store.transaction():
        with store.transaction():
            store.write("od_series", od([T0_MS], ["b"], [1.0]))
    assert store.count("od_series") == 1


# -- schema casting and errors ------------------------------------------------------------


def test_batches_are_cast_to_the_schema(store: Store) -> None:
    batch = pa.table(
        {
            "mbps": pa.array([1, 2], pa.int64()),  # order does not matter
            "time": pa.array([T0_MS // 1000, T0_MS // 1000 + 1], pa.timestamp("s")),  # naive
            "src": pa.array(["a", "b"], pa.large_string()),
            "dst": pa.array(["x", "x"]).dictionary_encode(),
            "app": ["", ""],
        }
    )
    store.write("od_series", batch)
    back = store.read("od_series")
    assert back.schema == OD_SERIES_SCHEMA
    assert back.column("time").cast(pa.int64()).to_pylist() == [
        T0_MS // 1000 * 1000,
        T0_MS // 1000 * 1000 + 1000,
    ]
    assert back.column("mbps").to_pylist() == [1.0, 2.0]


@pytest.mark.parametrize(
    ("column", "values", "match"),
    [
        ("bytes", pa.array([1.5] * 3), "bytes"),  # fractional into uint64
        ("src_port", pa.array([70_000] * 3), "src_port"),  # overflow into uint16
        ("proto", pa.array(["tcp"] * 3), "proto"),  # unparsable string
        ("src_addr", pa.array([b"short"] * 3), "src_addr"),  # wrong width
    ],
)
def test_wrong_types_are_rejected_naming_the_column(
    store: Store, column: str, values: pa.Array, match: str
) -> None:
    data = random_table("flows", 3)
    bad = data.set_column(data.schema.get_field_index(column), column, values)
    with pytest.raises(StoreError, match=match):
        store.write("flows", bad)
    assert store.count("flows") == 0


def test_unknown_table_and_columns(store: Store, make_rows: MakeRows) -> None:
    rows = make_rows("od_series", 2)
    with pytest.raises(StoreError, match="unknown table 'nope'"):
        store.write("nope", rows)
    with pytest.raises(StoreError, match="extra"):
        store.write("od_series", rows.append_column("extra", pa.array([1, 2])))
    with pytest.raises(StoreError, match="mbps"):
        store.write("od_series", rows.drop_columns(["mbps"]))
    with pytest.raises(StoreError, match="expected a pyarrow Table"):
        store.write("od_series", {"time": []})  # type: ignore[arg-type]
    for call in (lambda: store.count("nope"), lambda: store.read("nope")):
        with pytest.raises(StoreError, match="unknown table"):
            call()


@pytest.mark.parametrize(
    ("query", "match"),
    [
        (AggQuery("nope", 60, values=["x"]), "unknown table"),
        (AggQuery("od_series", 60, values=["mbps"], agg="median"), "unknown agg"),
        (AggQuery("od_series", 0, values=["mbps"]), "step_s"),
        (AggQuery("od_series", 60, values=["src"]), "cannot sum"),
        (AggQuery("od_series", 60, values=[]), "no value"),
        (AggQuery("od_series", 60, by=["src"], values=["src"]), "repeated"),
        (
            AggQuery("od_series", 60, by=['src" ; DROP TABLE od_series; --'], values=["mbps"]),
            "no column",
        ),
        (AggQuery("od_series", 60, values=["mbps) FROM alerts; --"]), "no column"),
        (AggQuery("od_series", 60, values=["mbps"], where={"src; --": "a"}), "no column"),
        (
            AggQuery(
                "od_series",
                60,
                values=["mbps"],
                start=datetime(2024, 2, 1),
                end=datetime(2024, 1, 1),
            ),
            "before",
        ),
    ],
)
def test_bad_queries_are_rejected(store: Store, query: AggQuery, match: str) -> None:
    store.write("od_series", od([T0_MS], ["a"], [1.0]))
    with pytest.raises(StoreError, match=match):
        store.aggregate(query)
    assert store.count("od_series") == 1


def test_closed_store_refuses(store: Store) -> None:
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.write("od_series", od([T0_MS], ["a"], [1.0]))
    with pytest.raises(StoreError, match="closed"):
        store.count("od_series")
    store.close()  # idempotent


def test_time_columns_exist_in_every_schema() -> None:
    for table, col in TIME_COLUMN.items():
        assert pa.types.is_timestamp(TABLES[table].field(col).type)
