"""Flows become demand between routers: spreading, closing, late records, unmapped ones."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from shadowcast.records import Link, Topology
from shadowcast.rollup.rollup import Rollup, od_universe

TOPO = Topology(
    "t", ("A", "B", "C"),
    (Link("A", "B", 1e9), Link("B", "C", 1e9), Link("B", "A", 1e9), Link("C", "B", 1e9)),
)  # fmt: skip
T0 = 1_700_000_100_000 - 1_700_000_100_000 % 300_000  # ms, a step boundary
TS = pa.timestamp("ms", tz="UTC")


def flows(rows: list[tuple[int, int, int, str, str, str]]) -> pa.Table:
    """(start ms, end ms, bytes, category, ingress, egress)."""
    cols = list(zip(*rows, strict=True))
    return pa.table(
        {
            "time_start": pa.array(cols[0], TS),
            "time_end": pa.array(cols[1], TS),
            "bytes": pa.array(cols[2], pa.uint64()),
            "category": pa.array(cols[3]).dictionary_encode(),
            "ingress": pa.array(cols[4]).dictionary_encode(),
            "egress": pa.array(cols[5]).dictionary_encode(),
        }
    )


def test_universe_is_every_ordered_pair() -> None:
    assert od_universe(TOPO) == (
        ("A", "B"), ("A", "C"), ("B", "A"), ("B", "C"), ("C", "A"), ("C", "B"),
    )  # fmt: skip


def test_bytes_spread_over_steps_and_conserved() -> None:
    r = Rollup(TOPO, ("video", "bulk", "unknown"), 300, lateness_s=60)
    # 300 MB over [150 s, 450 s): half in each of two steps
    r.accept(flows([(T0 + 150_000, T0 + 450_000, 300_000_000, "bulk", "A", "C")]))
    assert r.close(T0 // 1000 + 300 + 59) == []  # not final before the lateness
    out = r.close(T0 // 1000 + 600 + 60)
    assert [b.start_s for b in out] == [T0 // 1000, T0 // 1000 + 300]
    k = out[0].od_pairs.index(("A", "C"))
    for b in out:
        assert b.mbps[1, k] == pytest.approx(150e6 * 8 / 300 / 1e6)
        assert b.mbps.sum() == pytest.approx(b.mbps[1, k])
    assert r.stats.mapped_bytes == 300_000_000


def test_empty_steps_come_out_in_order() -> None:
    r = Rollup(TOPO, ("video",), 300)
    r.accept(flows([(T0, T0 + 10, 1000, "video", "A", "B")]))
    out = r.close(T0 // 1000 + 4 * 300)
    assert [b.start_s - T0 // 1000 for b in out] == [0, 300, 600, 900]
    assert [float(b.total().sum()) > 0 for b in out] == [True, False, False, False]


def test_late_records_are_counted_not_added() -> None:
    r = Rollup(TOPO, ("video",), 300)
    r.accept(flows([(T0, T0 + 10, 1000, "video", "A", "B")]))
    r.close(T0 // 1000 + 300)
    r.accept(flows([(T0 + 20, T0 + 30, 5000, "video", "A", "B")]))
    assert r.stats.late_records == 1 and r.stats.late_bytes == 5000
    assert all(float(b.total().sum()) == 0 for b in r.close(T0 // 1000 + 900))


def test_unmapped_flows_are_counted_by_reason() -> None:
    r = Rollup(TOPO, ("video",), 300, edge_to_node={"b-edge": "B"})
    r.accept(
        flows(
            [
                (T0, T0 + 10, 1, "video", "X", "B"),  # unknown ingress edge
                (T0, T0 + 10, 2, "video", "A", "unknown"),  # no egress
                (T0, T0 + 10, 4, "video", "A", "A"),  # enters and leaves at A
                (T0, T0 + 10, 8, "video", "b-edge", "C"),  # mapped through edge_to_node
                (T0, T0 + 10, 16, "weird", "A", "C"),  # a category not in the kinds
            ]
        )
    )
    st = r.stats
    assert st.unmapped_records == {"ingress_unmapped": 1, "egress_unmapped": 1, "local": 1}
    assert st.unmapped_bytes == {"ingress_unmapped": 1, "egress_unmapped": 2, "local": 4}
    assert st.unmapped_edges == {"ingress:X": 1, "egress:unknown": 1}
    assert st.mapped_bytes == 24
    (b,) = r.close(T0 // 1000 + 300)
    assert b.mbps[0, b.od_pairs.index(("B", "C"))] > 0
    assert b.mbps[0, b.od_pairs.index(("A", "C"))] > 0  # the unknown kind: first kind


def test_resume_skips_final_steps() -> None:
    r = Rollup(TOPO, ("video",), 300)
    r.resume_at(T0 // 1000 + 600)
    r.accept(flows([(T0, T0 + 10, 1000, "video", "A", "B")]))
    assert r.stats.late_records == 1
    out = r.close(T0 // 1000 + 900)
    assert [b.start_s for b in out] == [T0 // 1000 + 600]


def test_by_class_sums_kinds() -> None:
    r = Rollup(TOPO, ("video", "bulk", "voip"), 300)
    r.accept(
        flows(
            [
                (T0, T0 + 10, 375_000, "video", "A", "B"),
                (T0, T0 + 10, 375_000, "voip", "A", "B"),
                (T0, T0 + 10, 375_000, "bulk", "A", "B"),
            ]
        )
    )
    (b,) = r.close(T0 // 1000 + 300)
    cls = b.by_class({"video": "medium", "voip": "high", "bulk": "low"})
    k = b.od_pairs.index(("A", "B"))
    assert {c: float(v[k]) for c, v in cls.items()} == {"medium": 0.01, "high": 0.01, "low": 0.01}
    assert np.isclose(b.total()[k], 0.03)
