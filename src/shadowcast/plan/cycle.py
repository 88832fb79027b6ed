"""The plan-and-act stage of the living service, per routing class.

Every step, with the class forecasts and the routing in force:

1. the predicted peak utilisation over the plan horizon, each class at its planning
   quantile (``plan.quantiles`` by latency sensitivity), under the routing in force;
2. below ``trigger`` nothing is planned (no churn while links are fine);
3. else the planner proposes a plan against the split in force
   (:func:`~shadowcast.plan.planner.make_plan`: path switches, reservations, shaping);
4. by ``mode``: ``observe`` plans nothing (forecasts and alerts only); ``advise`` keeps
   the plan as proposed for an operator; ``auto`` applies it through the checker and
   the actuator (rolled back on failure) and, when it is applied, it becomes the routing in
   force.

Every decision, including "nothing to do", is returned with its reason for the store.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from shadowcast.errors import ActuationError, PlanError
from shadowcast.logs import fields
from shadowcast.network.state import RoutingState, shares_of_plan
from shadowcast.plan.base import Plan
from shadowcast.plan.config import PlanConfig
from shadowcast.plan.paths import PathSet
from shadowcast.plan.planner import ClassForecast, make_plan, quantile_demand, sensitivity
from shadowcast.plan.planner import split_matrix as plan_split_matrix
from shadowcast.records import F64, Forecast, Topology
from shadowcast.store.schema import TS

log = logging.getLogger(__name__)

MODES = ("observe", "advise", "auto")

# Checks and applies a plan (``allow_overload``: a plan that lowers an overload it cannot
# remove may pass the checker); True when it changed the network, False for a dry run.
# Raises PlanError (refused by the checker) or ActuationError (failed, rolled back).
# The wiring binds it to ``act.base.apply_plan`` and the configured actuator.
ApplyFn = Callable[[Plan, bool], bool]


@dataclass(frozen=True, slots=True)
class Decision:
    """What the plan stage did at ``time_s`` and why."""

    time_s: int
    action: str  # none | proposed | applied | dry-run | rejected | failed
    reason: str
    predicted_peak: float
    plan: Plan | None = None

    def detail(self) -> dict[str, Any]:
        p = self.plan
        return {
            "predicted_peak": round(self.predicted_peak, 4),
            "mlu_current": None if p is None else round(p.mlu_current, 4),
            "mlu_planned": None if p is None else round(p.mlu_planned, 4),
            "changes": 0 if p is None else len({(c.cls, c.src, c.dst) for c in p.changes}),
            "shaping": 0 if p is None else len(p.shaping),
            "reservations": 0 if p is None else len(p.reservations),
        }


class PlanCycle:
    """Decides, every step, whether to plan and what to do with the plan."""

    def __init__(
        self,
        topology: Topology,
        paths: PathSet,
        classes: Sequence[str],
        config: PlanConfig,
        routing: RoutingState,
        *,
        mode: str = "observe",
        trigger: float = 0.8,
        min_interval_s: int = 900,
        apply: ApplyFn | None = None,
        on_applied: Callable[[Plan], None] | None = None,
    ) -> None:
        if mode not in MODES:
            raise PlanError(f"service mode must be one of {MODES}, got {mode!r}")
        if mode == "auto" and apply is None:
            raise PlanError("auto mode needs an actuator")
        self.topology = topology
        self.paths = paths
        self.classes = tuple(classes)
        self.config = config
        self.routing = routing
        self.mode = mode
        self.trigger = trigger
        self.min_interval_s = min_interval_s
        self.apply_fn = apply
        self.on_applied = on_applied
        self.capacity = topology.capacities / 1e6
        self.current = np.tile(paths.shortest_split(), (len(self.classes), 1))
        self.last_applied_s: int | None = None
        self.counts: dict[str, int] = {}

    def predicted_peak(self, by_class: dict[str, Forecast]) -> tuple[float, F64]:
        """Peak utilisation over the horizon per link, classes at their planning quantile,
        under the routing in force: (max over links, per-link peaks)."""
        load: F64 | None = None
        for c in self.classes:
            spec = self.config.quantiles.get(sensitivity(c), "mean")
            q = quantile_demand(by_class[c], spec)  # [n_od, H]
            part = np.asarray(self.routing.matrix(c) @ q, dtype=np.float64)
            load = part if load is None else load + part
        assert load is not None
        util = load.max(axis=1) / np.maximum(self.capacity, 1e-12)
        return float(util.max(initial=0.0)), util

    def decide(self, now_s: int, by_class: dict[str, Forecast], step_s: int) -> Decision:
        peak, _ = self.predicted_peak(by_class)
        if self.mode == "observe":
            return self._count(Decision(now_s, "none", "observe mode: no planning", peak))
        if peak < self.trigger:
            why = f"predicted peak {peak:.0%} < trigger {self.trigger:.0%}"
            return self._count(Decision(now_s, "none", why, peak))
        since = None if self.last_applied_s is None else now_s - self.last_applied_s
        if since is not None and since < self.min_interval_s and peak < 1.0:
            why = f"predicted peak {peak:.0%}: last plan applied {since}s ago"
            return self._count(Decision(now_s, "none", why, peak))
        issued = np.datetime64(int(now_s), "s")
        try:
            plan = make_plan(
                [ClassForecast(c, by_class[c]) for c in self.classes],
                self.paths,
                self.topology,
                self.config,
                current=self.current,
                issued=issued,
                step_s=step_s,
            )
        except PlanError as exc:
            return self._count(Decision(now_s, "rejected", f"planner: {exc}", peak))
        if not plan.changes and not plan.shaping:
            why = "the state in force is best: " + ("; ".join(plan.notes) or "no change")
            return self._count(Decision(now_s, "none", why, peak, plan))
        if self.mode == "advise":
            return self._count(Decision(now_s, "proposed", plan.explain(), peak, plan))
        return self._count(self.apply(now_s, plan, peak))

    def apply(self, now_s: int, plan: Plan, peak: float) -> Decision:
        """Check and apply ``plan`` (auto mode, or an approved proposal)."""
        if self.apply_fn is None:
            return Decision(now_s, "rejected", "no actuator configured", peak, plan)
        allow = plan.mlu_planned < plan.mlu_current
        try:
            changed = self.apply_fn(plan, allow)
        except PlanError as exc:
            return Decision(now_s, "rejected", f"checker: {exc}", peak, plan)
        except ActuationError as exc:
            return Decision(now_s, "failed", f"rolled back: {exc}", peak, plan)
        if not changed:
            return Decision(now_s, "dry-run", plan.explain(), peak, plan)
        self.current = plan_split_matrix(plan, self.paths, self.classes)
        self.routing.install(shares_of_plan(plan.splits, self.routing.od_index))
        self.last_applied_s = now_s
        if self.on_applied is not None:
            self.on_applied(plan)
        return Decision(now_s, "applied", plan.explain(), peak, plan)

    def _count(self, d: Decision) -> Decision:
        self.counts[d.action] = self.counts.get(d.action, 0) + 1
        if d.action not in ("none",):
            log.info(
                "plan decision",
                extra=fields(
                    {"action": d.action, "peak": round(d.predicted_peak, 3), **d.detail()}
                ),
            )
        return d


def decisions_table(decisions: Sequence[Decision], mode: str) -> pa.Table:
    """Rows of the store's ``decisions`` table."""
    det = [d.detail() for d in decisions]

    def num(key: str) -> pa.Array:
        return pa.array([x[key] for x in det], pa.float64())

    return pa.table(
        {
            "time": pa.array([d.time_s * 1000 for d in decisions], pa.int64()).cast(TS),
            "mode": pa.array([mode] * len(decisions)),
            "action": pa.array([d.action for d in decisions]),
            "plan_id": pa.array([d.plan.plan_id if d.plan else "" for d in decisions]),
            "reason": pa.array([d.reason for d in decisions]),
            "predicted_peak": num("predicted_peak"),
            "mlu_current": num("mlu_current"),
            "mlu_planned": num("mlu_planned"),
            "changes": pa.array([x["changes"] for x in det], pa.int64()),
            "shaping": pa.array([x["shaping"] for x in det], pa.int64()),
            "reservations": pa.array([x["reservations"] for x in det], pa.int64()),
            "plan": pa.array(
                [
                    d.plan.to_json(indent=None) if d.plan and d.action != "none" else ""
                    for d in decisions
                ]
            ),
        }
    )
