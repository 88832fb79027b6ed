"""The living service records a change of its routing in force, made between two steps (the
IGP routing around a failed link), as ``route-change`` events of the links it moves."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from shadowcast.clock import SimClock
from shadowcast.feedback.routes import ROUTE_CHANGE
from shadowcast.feedback.scenarios import failed_routing
from shadowcast.records import Link, Topology
from shadowcast.rollup.rollup import RollupBucket
from shadowcast.service.wiring import Environment, build_service
from shadowcast.settings import load_settings
from shadowcast.store.memory import MemoryStore

STEP = 300


def test_a_routing_change_between_steps_is_a_route_change_of_the_links_it_moves(
    tmp_path: Path,
) -> None:
    links = tuple(Link(a, b, 1e9) for a, b in ("AB", "BA", "BC", "CB", "AC", "CA"))
    topo = Topology("tri", ("A", "B", "C"), links)
    s = load_settings(None, environ={})
    s = s.model_copy(update={"rollup": s.rollup.model_copy(update={"step": f"{STEP}s"})})
    store = MemoryStore()
    env = Environment(
        topology=topo, store=store, clock=SimClock(0), state_dir=tmp_path, kinds=("web",),
        class_of={"web": "medium"}, mode="observe", notifiers=[],
    )  # fmt: skip
    svc = build_service(s, env)
    pairs = svc.s.rollup.od_pairs
    routing = svc.s.routing
    mbps = np.full((1, len(pairs)), 10.0)
    reports = []
    for t in range(6):
        if t == 3:  # A->B and B->A fail between two steps; the IGP routes around them
            failed = [i for i, lk in enumerate(topo.links) if {lk.src, lk.dst} == {"A", "B"}]
            routing.base = failed_routing(topo, pairs, failed).tocsr()
            routing.reset()
        reports.append(svc.run_step(RollupBucket(t * STEP, STEP, ("web",), pairs, mbps)))
    moved = {e.group for e in reports[3].drifts if e.kind == ROUTE_CHANGE}
    # A->B's load went to A->C->B and B->A's to B->C->A: all six links moved
    assert {"A->B", "B->A"} <= moved and {"A->C", "C->B", "B->C", "C->A"} <= moved
    assert not any(r.drifts for i, r in enumerate(reports) if i != 3)  # once, and only then
    assert not svc.alerts  # a routing change is not an accuracy alert
    svc.s.writer.flush()
    rows = store.read("drift_events")
    assert set(rows.column("kind").to_pylist()) == {ROUTE_CHANGE}
    assert set(rows.column("subject").to_pylist()) == moved
    assert svc.health()["stages"]["feedback"]["route_changes"] == len(moved)
