"""Simulated driver and the train estimator on synthetic timestamps."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from shadowcast.errors import DataError
from shadowcast.records import Link, Topology
from shadowcast.shadow.abw import OnsetDetector, estimate_train, train_gap_s, wire_bytes
from shadowcast.shadow.results import ProbeResult, to_table, write
from shadowcast.shadow.simulate import shadow_rows, simulate_path
from shadowcast.shadow.stamp import PathMetrics, StampRun
from shadowcast.store.schema import SHADOW_SCHEMA


def line() -> Topology:
    links = (Link("a", "b", 100e6), Link("b", "c", 10e6), Link("c", "b", 10e6))
    return Topology("line", ("a", "b", "c"), links, {"a": (0.0, 0.0), "b": (1.0, 0.0)})


def test_simulated_metrics_follow_load() -> None:
    loads = np.array([[0.0, 0.0, 0.0], [10.0, 5.0, 0.0], [10.0, 9.9, 0.0], [0.0, 11.0, 0.0]])
    m = simulate_path(line(), [0, 1], loads)
    assert m["abw_mbps"].tolist() == pytest.approx([10.0, 5.0, 0.1, 0.0])
    assert m["owd_ms"][0] == pytest.approx(111_195 / 2e8 * 1e3 + 0.1, rel=1e-3)
    assert np.all(np.diff(m["owd_ms"][:3]) > 0) and m["owd_ms"][3] >= 50.0
    assert m["loss"][:3].tolist() == [0.0, 0.0, 0.0] and m["loss"][3] == pytest.approx(1 / 11)
    with pytest.raises(DataError, match="link indices"):
        simulate_path(line(), [7], loads)


def test_shadow_rows_schema() -> None:
    times = np.arange("2026-01-01T00:00", "2026-01-01T00:04", dtype="datetime64[m]").astype(
        "datetime64[s]"
    )
    loads = np.zeros((4, 3))
    t = shadow_rows(line(), {"t1": [0, 1], "t2": [2]}, times, loads)
    assert isinstance(t, pa.Table) and t.schema == SHADOW_SCHEMA and t.num_rows == 8
    assert t.column("path")[0].as_py() == "a->b,b->c"


def _train(n: int, cap: float, cross: float, payload: int = 600) -> StampRun:
    """A fluid FIFO: input paced at cap; output spacing stretched by cross traffic."""
    gap = train_gap_s(payload, cap)
    t1 = np.arange(n) * gap
    out_gap = gap * (cap + cross) / cap
    t2 = 0.001 + np.arange(n) * out_gap
    rseq = np.arange(n)
    return StampRun(t1, t2, t2 + 1e-5, t2 + 2e-3, t2 + 2e-3, rseq, payload, 0.0)


@pytest.mark.parametrize("cross", [0.0, 3e6, 6e6, 8e6])
def test_train_estimate_recovers_available_bandwidth(cross: float) -> None:
    e = estimate_train(_train(30, 10e6, cross), 10e6)
    assert e.abw_bps == pytest.approx(10e6 - cross, rel=1e-6) and e.pairs == 25
    assert e.probe_bytes == 30 * wire_bytes(600)


def test_onset_detector() -> None:
    d = OnsetDetector(threshold_ms=5, k=3)
    assert not any(d.update(x) for x in [0.001, 0.0012, 0.0011, 0.02, 0.0011])
    assert [d.update(x) for x in [0.02, 0.03, float("nan")]] == [False, False, True]


def test_probe_results_to_store_rows() -> None:
    m = PathMetrics(10, 9, 0.1, 0.1, 0.0, 1.5, 1.2, 0.8, 0.7, 0.002, 0.05)
    t = to_table([ProbeResult(1.79e9, "shv100000", ("A", "B", "D"), m, 7.5)])
    assert t.schema == SHADOW_SCHEMA
    row = t.to_pylist()[0]
    assert row["path"] == "A>B>D" and row["rtt_ms"] == 1.5 and row["owd_ms"] == 0.8
    assert row["abw_mbps"] == 7.5 and row["time"].timestamp() == pytest.approx(1.79e9)


def test_results_and_simulated_rows_go_to_the_store() -> None:
    memory = pytest.importorskip("shadowcast.store.memory")
    store = memory.MemoryStore()
    m = PathMetrics(10, 10, 0.0, 0.0, 0.0, 1.0, 0.9, 0.5, 0.5, 0.002, 0.01)
    assert write(store, [ProbeResult(1.79e9, "shv1", ("a", "b"), m, 9.0)]) == 1
    times = np.array(["2026-01-01T00:00", "2026-01-01T00:05"], dtype="datetime64[s]")
    assert store.write("shadow", shadow_rows(line(), {"t": [0, 1]}, times, np.zeros((2, 3)))) == 2
    assert store.count("shadow") == 3
