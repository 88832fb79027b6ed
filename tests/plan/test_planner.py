"""make_plan, the checker, what-if, and the hypothesis properties of accepted plans."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from plan_helpers import bidir

from shadowcast.errors import PlanError, TopologyError
from shadowcast.plan.base import Plan, check_plan, planned_link_load
from shadowcast.plan.config import PlanConfig
from shadowcast.plan.paths import candidate_paths
from shadowcast.plan.planner import ClassForecast, make_plan, quantile_demand
from shadowcast.plan.whatif import what_if
from shadowcast.records import Forecast, Topology


def fc(mean: list[float], width: float = 0.0, h: int = 3) -> Forecast:
    m = np.repeat(np.array(mean, dtype=float)[:, None], h, axis=1)
    return Forecast(mean=m, lower={90.0: m * (1 - width)}, upper={90.0: m * (1 + width)})


def test_quantile_demand_exact_level_and_normal_approx() -> None:
    f = fc([10.0], width=0.5)
    assert quantile_demand(f, "mean")[0, 0] == 10.0
    assert quantile_demand(f, "p95")[0, 0] == pytest.approx(15.0)  # upper of the 90 % PI
    # p80 from the normal approximation: sigma = 5 / 1.645, z(0.8) = 0.8416
    assert quantile_demand(f, "p80")[0, 0] == pytest.approx(10 + 0.8416 * 5 / 1.6449, rel=1e-3)


def test_plan_moves_traffic_off_a_hot_link_with_a_reason(square: Topology) -> None:
    ods = [("A", "B")]
    ps = candidate_paths(square, ods, k=3)
    plan = make_plan(
        [ClassForecast("video", fc([18.0], 0.1))],
        ps,
        square,
        issued=np.datetime64("2024-03-01T20:00:00"),
        step_s=300,
    )
    check_plan(plan, square, max_changes=20)
    assert plan.mlu_current > 1.0 > plan.mlu_planned
    assert plan.changes
    reason = plan.changes[0].reason
    assert reason.startswith("move ") and "video A->B" in reason and "p(>=100 %)" in reason
    assert "A-B predicted" in reason
    # JSON round trip, YAML, explanation
    again = Plan.from_dict(json.loads(plan.to_json()))
    assert again == plan
    assert "video" in plan.to_yaml() and "change:" in plan.explain()


def test_latency_bound_and_reservation_for_sensitive_class(square: Topology) -> None:
    ps = candidate_paths(square, [("A", "B")], k=3)
    # D is far away (lat -3): the A-D-B path is > 1.5x the direct latency + 5 ms? make
    # the slack 0 so the bound bites.
    cfg = PlanConfig(latency_slack_ms=0.0)
    plan = make_plan([ClassForecast("voip", fc([18.0], 0.05))], ps, square, cfg)
    via = {s.nodes for s in plan.splits}
    assert ("A", "D", "B") not in via
    assert plan.reservations and all(r.cls == "voip" for r in plan.reservations)
    assert sum(r.mbps for r in plan.reservations) == pytest.approx(18.0 * 1.05)


def test_shaping_low_priority_when_rerouting_is_not_enough(square: Topology) -> None:
    ps = candidate_paths(square, [("A", "B")], k=3)
    plan = make_plan(
        [ClassForecast("bulk", fc([20.0])), ClassForecast("voip", fc([12.0]))], ps, square
    )
    assert plan.shaping and plan.shaping[0].cls == "bulk"
    check_plan(plan, square)  # shaped demand fits


def test_hysteresis_keeps_the_state_in_force(square: Topology) -> None:
    ps = candidate_paths(square, [("A", "B")], k=3)
    cur = np.array([[0.5, 0.5, 0.0]])
    f = [ClassForecast("web", fc([6.0]))]
    # Re-balancing would lower the max from 30 % to 20 %: below a 0.2 hysteresis, kept.
    cfg = PlanConfig(hysteresis=0.2, act_above=0.0, move_above=0.0)
    plan = make_plan(f, ps, square, cfg, current=cur)
    assert not plan.changes and any("hysteresis" in n for n in plan.notes)
    cfg = PlanConfig(hysteresis=0.05, act_above=0.0, move_above=0.0)
    moved = make_plan(f, ps, square, cfg, current=cur)
    assert moved.changes and moved.mlu_planned == pytest.approx(0.2)


def test_max_changes_caps_the_diff() -> None:
    topo = bidir(
        "k4",
        [
            (a, b, 10e6)
            for a, b in [("A", "B"), ("B", "C"), ("C", "D"), ("D", "A"), ("A", "C"), ("B", "D")]
        ],
    )
    ods = [(a, b) for a in topo.nodes for b in topo.nodes if a != b]
    ps = candidate_paths(topo, ods, k=3)
    f = [ClassForecast("web", fc(list(np.linspace(4, 14, len(ods)))))]
    free = make_plan(f, ps, topo, PlanConfig(max_changes=100, hysteresis=0, act_above=0))
    capped = make_plan(f, ps, topo, PlanConfig(max_changes=1, hysteresis=0, act_above=0))
    assert len({(c.cls, c.src, c.dst) for c in free.changes}) >= 2
    assert len({(c.cls, c.src, c.dst) for c in capped.changes}) == 1
    assert any("max_changes" in n for n in capped.notes)
    with pytest.raises(PlanError, match="changes"):
        check_plan(free, topo, max_changes=1, allow_overload=True)


def test_checker_rejects_bad_plans(square: Topology) -> None:
    ps = candidate_paths(square, [("A", "B")], k=3)
    plan = make_plan([ClassForecast("web", fc([12.0]))], ps, square)
    check_plan(plan, square)
    s0 = plan.splits[0]
    half = dataclasses.replace(
        plan, splits=(dataclasses.replace(s0, fraction=0.5), *plan.splits[1:])
    )
    with pytest.raises(PlanError, match="sum to"):
        check_plan(half, square)
    heavy = dataclasses.replace(
        plan, splits=tuple(dataclasses.replace(s, demand_mbps=100.0) for s in plan.splits)
    )
    with pytest.raises(PlanError, match="over-subscribes"):
        check_plan(heavy, square)
    broken = dataclasses.replace(
        plan, splits=(dataclasses.replace(s0, links=(2,)), *plan.splits[1:])
    )
    with pytest.raises(PlanError, match="split web A->B"):
        check_plan(broken, square)


def test_what_if_link_and_node_failure(square: Topology) -> None:
    ods = [("A", "B"), ("C", "B")]
    f = [ClassForecast("web", fc([12.0, 3.0]))]
    w = what_if(square, f, ods, fail_links=["A-B"])
    assert w.failed_links == ("A->B", "B->A")
    assert w.mlu_after > w.mlu_before
    assert w.lost_mbps == 0
    n = what_if(square, f, ods, fail_nodes=["C"])
    assert n.disconnected == ("C->B",) and n.lost_mbps == pytest.approx(3.0)
    assert json.dumps(n.to_dict())
    with pytest.raises(TopologyError, match="no such link"):
        what_if(square, f, ods, fail_links=["A-Z"])


# ---- hypothesis: every plan the checker accepts keeps its invariants ------------------

EDGES = [("A", "B"), ("B", "C"), ("C", "D"), ("D", "E"), ("E", "A"), ("A", "C"), ("B", "E")]


def _independent_invariants(plan: Plan, topo: Topology) -> None:
    """Re-derive both invariants from node sequences, not the plan's link indices."""
    sums: dict[tuple[str, str, str], float] = {}
    load: dict[tuple[str, str], float] = {}
    for s in plan.splits:
        sums[(s.cls, s.src, s.dst)] = sums.get((s.cls, s.src, s.dst), 0.0) + s.fraction
        for a, b in zip(s.nodes, s.nodes[1:], strict=False):
            load[(a, b)] = load.get((a, b), 0.0) + s.fraction * s.demand_mbps
    assert all(abs(v - 1) <= 1e-6 for v in sums.values())
    cap = {(lk.src, lk.dst): lk.capacity / 1e6 for lk in topo.links}
    assert all(v <= cap[k] * (1 + 1e-6) + 1e-9 for k, v in load.items())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    caps=st.lists(st.floats(2.0, 20.0), min_size=len(EDGES), max_size=len(EDGES)),
    demand=st.lists(st.floats(0.0, 15.0), min_size=6, max_size=6),
    width=st.floats(0.0, 0.6),
    classes=st.sampled_from([("web",), ("voip", "bulk"), ("video", "interactive")]),
    noise=st.lists(st.floats(-0.5, 0.5), min_size=3, max_size=3),
)
def test_accepted_plans_keep_splits_and_capacity(
    caps: list[float],
    demand: list[float],
    width: float,
    classes: tuple[str, ...],
    noise: list[float],
) -> None:
    topo = bidir("h", [(a, b, c * 1e6) for (a, b), c in zip(EDGES, caps, strict=True)])
    ods = [("A", "D"), ("B", "D"), ("C", "E"), ("E", "B"), ("D", "A"), ("C", "A")]
    ps = candidate_paths(topo, ods, k=3)
    fcs = [ClassForecast(c, fc([d / len(classes) for d in demand], width)) for c in classes]
    plan = make_plan(fcs, ps, topo, PlanConfig(hysteresis=0.0, act_above=0.0))
    # Perturb: a plan may also arrive corrupted (edited by hand, stale, buggy).
    mutated = dataclasses.replace(
        plan,
        splits=tuple(
            dataclasses.replace(s, fraction=min(1.0, max(0.0, s.fraction + noise[i % 3] * (i % 2))))
            for i, s in enumerate(plan.splits)
        ),
    )
    for candidate in (plan, mutated):
        try:
            check_plan(candidate, topo, max_changes=PlanConfig().max_changes)
        except PlanError:
            continue
        _independent_invariants(candidate, topo)
        assert planned_link_load(candidate, len(topo.links)).max() <= max(
            lk.capacity / 1e6 for lk in topo.links
        ) * (1 + 1e-6)
    if plan.mlu_planned <= 1.0 and not plan.shaping:
        check_plan(plan, topo)  # a feasible plan from the planner is always accepted


def test_quiet_network_is_left_alone(square: Topology) -> None:
    ps = candidate_paths(square, [("A", "B")], k=3)
    plan = make_plan([ClassForecast("web", fc([3.0]))], ps, square)  # 30 % < act_above
    assert not plan.changes and any("quiet" in n for n in plan.notes)


def test_no_move_off_lightly_loaded_links(square: Topology) -> None:
    """Only splits on a link predicted over ``move_above`` move, and only to relieve it.
    On the synthetic GEANT the LP's convex penalty alone moves traffic off links loaded
    10-20 % (the issue's complaint); with the gate nothing moves below 80 %, and above it
    only the pairs crossing the hot link move."""
    import re

    from shadowcast.datasets.synthetic import synthetic_dataset

    syn = synthetic_dataset(weeks=0.3, seed=0)
    ps = candidate_paths(syn.topology, syn.demands.od_pairs, 4)
    last = syn.demands.values[-1].astype(float)

    def plan_at(scale: float, move_above: float) -> Plan:
        f = [ClassForecast("web", fc(list(last * scale), 0.1))]
        return make_plan(f, ps, syn.topology, PlanConfig(move_above=move_above))

    def loads(p: Plan) -> list[int]:
        return [int(m) for c in p.changes for m in re.findall(r"predicted (\d+)%", c.reason)]

    free = plan_at(1.0, 0.0)
    assert free.changes and min(loads(free)) < 20  # moves off lightly loaded links
    calm = plan_at(1.0, 0.8)
    assert calm.mlu_current < 0.8 and not calm.changes
    assert any("no link predicted over 80%" in n for n in calm.notes)
    hot = plan_at(1.6, 0.8)
    check_plan(hot, syn.topology)
    assert hot.mlu_current > 0.8 > hot.mlu_planned and hot.changes
    assert min(loads(hot)) > 80  # every move relieves a link predicted over 80 %
    # the small square: the same, and nothing moves while everything is under 80 %
    ods = [("A", "B"), ("C", "B"), ("D", "B")]
    sq = candidate_paths(square, ods, k=3)
    few = make_plan([ClassForecast("web", fc([9.5, 1.5, 1.9]))], sq, square)
    assert {(c.src, c.dst) for c in few.changes} == {("A", "B")}
    quiet = make_plan([ClassForecast("web", fc([7.5, 1.5, 1.9]))], sq, square)
    assert not quiet.changes


def test_classes_reserve_and_shape_as_configured(square: Topology) -> None:
    ps = candidate_paths(square, [("A", "B")], k=3)
    cfg = PlanConfig(reserve=["video"], shape=["web"], latency_slack_ms=100.0)
    f = [
        ClassForecast("video", fc([10.0], 0.2)),  # medium: p80, reserved by name
        ClassForecast("web", fc([22.0])),  # shaped by name
        ClassForecast("telemetry", fc([1.0], 0.5), sensitivity="high"),  # p95
    ]
    plan = make_plan(f, ps, square, cfg)
    assert {r.cls for r in plan.reservations} == {"video"}
    assert {r.quantile for r in plan.reservations} == {"p80"}
    assert plan.shaping and {s.cls for s in plan.shaping} == {"web"}
    tele = [s for s in plan.splits if s.cls == "telemetry"]
    assert sum(s.demand_mbps * s.fraction for s in tele) == pytest.approx(1.5)  # p95 = upper
