"""Record checks at the decoders' edge: bad records out, counted per exporter, rest kept."""

from __future__ import annotations

import time

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowcast.collect.decoders import FlowDecoder
from shadowcast.collect.synth import build_stream
from shadowcast.collect.validate import MAX_MS, RecordChecks, check_records
from shadowcast.records import FLOW_SCHEMA
from shadowcast.store.memory import MemoryStore

NOW = 1_800_000_000.0  # 2027-01-15
NOW_MS = int(NOW * 1000)
DAY_MS = 86_400_000
CHECKS = RecordChecks()


def flows(n: int, exporter: str = "192.0.2.1", **cols: list[int]) -> pa.Table:
    """``n`` plausible records ending an hour before NOW; ``cols`` override columns."""
    base: dict[str, list[int]] = {
        "time_start": [NOW_MS - 3_600_000] * n,
        "time_end": [NOW_MS - 3_500_000] * n,
        "bytes": [15_000] * n,
        "packets": [10] * n,
    }
    base.update(cols)
    arrays = []
    for f in FLOW_SCHEMA:
        if f.name in ("bytes", "packets"):
            arrays.append(pa.array(base[f.name], pa.uint64()))
        elif f.name in base:
            arrays.append(pa.array(base[f.name], pa.int64()).cast(f.type))
        elif f.name == "exporter":
            arrays.append(pa.array([exporter] * n))
        elif pa.types.is_fixed_size_binary(f.type):
            arrays.append(pa.array([bytes(16)] * n, f.type))
        elif pa.types.is_string(f.type):
            arrays.append(pa.array([""] * n, f.type))
        else:
            arrays.append(pa.array(np.zeros(n, np.int64)).cast(f.type))
    return pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("time_start", 2**52, "in_future"),
        ("time_end", NOW_MS + 2 * DAY_MS, "in_future"),
        ("time_start", NOW_MS - 400 * DAY_MS, "too_old"),
        ("time_start", -5, "too_old"),
        ("time_end", NOW_MS - 7_200_000, "ends_before_start"),
        ("bytes", 10 * 70_000, "bytes_per_packet"),
        ("bytes", 5, "bytes_per_packet"),
        ("packets", 2**41, "too_many"),
    ],
)
def test_each_check_refuses_one_record_and_keeps_the_rest(
    column: str, value: int, reason: str
) -> None:
    table = flows(1000)
    col = table[column].cast(pa.int64()).to_pylist()
    col[500] = value
    table = flows(1000, **{column: col})
    kept, rejected = check_records(table, NOW, CHECKS)
    assert kept.num_rows == 999
    assert rejected is not None and rejected.by_exporter == {"192.0.2.1": 1}
    assert reason in rejected.by_reason and rejected.total == 1
    assert kept.equals(pa.concat_tables([table.slice(0, 500), table.slice(501)]))


def test_a_good_batch_passes_untouched() -> None:
    table = flows(100)
    kept, rejected = check_records(table, NOW, CHECKS)
    assert rejected is None and kept is table


def test_records_without_a_packet_count_are_kept_when_plausible() -> None:
    table = flows(3, packets=[0, 0, 0], bytes=[0, 10**12, 2**60])
    kept, rejected = check_records(table, NOW, CHECKS)
    assert kept.num_rows == 2 and rejected is not None and rejected.by_reason == {"too_many": 1}


def test_lifted_sides_let_historic_data_through_but_not_past_year_9999() -> None:
    old = flows(2, time_start=[1_000_000_000_000, MAX_MS], time_end=[1_000_000_100_000, MAX_MS + 1])
    lifted = RecordChecks(max_record_age_s=None, max_clock_skew_s=None)
    kept, rejected = check_records(old, NOW, lifted)
    assert kept.num_rows == 1 and rejected is not None and rejected.by_reason == {"in_future": 1}
    assert check_records(old.slice(0, 1), NOW, CHECKS)[0].num_rows == 0  # 2001: too old


def test_rejections_are_counted_per_exporter() -> None:
    a = flows(10, "192.0.2.1", time_start=[2**52] * 3 + [NOW_MS - 3_600_000] * 7)
    b = flows(5, "192.0.2.2", bytes=[1] * 5)
    kept, rejected = check_records(pa.concat_tables([a, b]), NOW, CHECKS)
    assert kept.num_rows == 7
    assert rejected is not None and rejected.by_exporter == {"192.0.2.1": 3, "192.0.2.2": 5}


def test_decoded_synthetic_streams_pass_with_the_age_check_lifted() -> None:
    packets = build_stream("ipfix", 3000, seed=1) + build_stream("v5", 3000, seed=2)
    table = FlowDecoder().decode([(p, "x") for p in packets], time.time())
    kept, rejected = check_records(table, time.time(), RecordChecks(max_record_age_s=None))
    assert rejected is None and kept.num_rows == 6000
    kept, rejected = check_records(table, time.time(), CHECKS)  # November 2023: too old
    assert kept.num_rows == 0 and rejected is not None and rejected.by_reason["too_old"] == 6000


@settings(max_examples=60, derandomize=True, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(-(2**63), 2**63 - 1),
            st.integers(-(2**63), 2**63 - 1),
            st.integers(0, 2**64 - 1),
            st.integers(0, 2**64 - 1),
        ),
        min_size=1,
        max_size=40,
    )
)
def test_whatever_is_kept_stores_and_reads_back(rows: list[tuple[int, int, int, int]]) -> None:
    ts, te, byts, pkts = (list(c) for c in zip(*rows, strict=True))
    table = flows(len(rows), time_start=ts, time_end=te, bytes=byts, packets=pkts)
    kept, rejected = check_records(table, NOW, CHECKS)
    assert kept.num_rows + (rejected.total if rejected else 0) == len(rows)
    s = np.asarray(kept["time_start"].cast(pa.int64()).to_numpy())
    e = np.asarray(kept["time_end"].cast(pa.int64()).to_numpy())
    assert ((s <= e) & (s >= NOW_MS - 365 * DAY_MS) & (e <= NOW_MS + DAY_MS)).all()
    store = MemoryStore()
    assert store.write("flows", kept) == kept.num_rows
    assert len(store.read("flows").column("time_start").to_pylist()) == kept.num_rows
