"""Simulated actuator: applies plans to a :class:`~shadowcast.network.sim.SimNetwork`.

Path splits replace the routing of the classes a plan names; shaping limits and
reservations hold for their duration from the network clock's time. All or nothing: the
network's state is kept before the apply and restored on any failure or ``rollback()``.
Counters (``path_switches``, ``reservations``, ``shaping_changes``) feed the replay's report.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from shadowcast.act.base import ApplyResult
from shadowcast.errors import ActuationError, PlanError
from shadowcast.network.sim import Reserve, ShapeRule, SimNetwork
from shadowcast.network.state import shares_of_plan
from shadowcast.plan.base import Plan


class SimActuator:
    """Changes the simulated network; ``now_s`` gives the simulated time in seconds."""

    name = "sim"

    def __init__(
        self,
        network: SimNetwork,
        now_s: Callable[[], float],
        *,
        fail: Callable[[Plan], str | None] | None = None,
    ) -> None:
        self.network = network
        self.now_s = now_s
        self.fail = fail  # tests: a reason to fail part-way through this plan, or None
        self.link_index = {n: i for i, n in enumerate(network.topology.link_names())}
        self.od_index = {od: k for k, od in enumerate(network.od_pairs)}
        self._undo: dict[str, Any] | None = None
        self._last_id = ""
        self.path_switches = 0
        self.reservations = 0
        self.shaping_changes = 0
        self.applied = 0
        self.rolled_back = 0

    def apply(self, plan: Plan, *, dry_run: bool = True) -> ApplyResult:
        if dry_run:
            return ApplyResult(plan.plan_id, self.name, True, "dry-run", (), plan.explain())
        net = self.network
        before = net.snapshot()
        now = int(self.now_s())
        try:
            shares = shares_of_plan(plan.splits, self.od_index)
            old = {c: net.routing.matrix(c) for c in {s.cls for s in shares}}
            net.routing.install(shares)
            switched = self._switched(old)
            shaping = [
                ShapeRule(s.cls, self._link(s.link), float(s.limit_mbps), now + s.duration_s)
                for s in plan.shaping
            ]
            reserve = [
                Reserve(r.cls, tuple(int(e) for e in r.links), float(r.mbps), now + plan.horizon_s)
                for r in plan.reservations
            ]
            if self.fail is not None and (why := self.fail(plan)):
                raise ActuationError(f"sim: {why}")
        except (ActuationError, PlanError) as exc:
            net.restore(before)
            self.rolled_back += 1
            raise ActuationError(f"sim apply of {plan.plan_id} failed, rolled back: {exc}") from exc
        new_shapes = {(r.cls, r.link) for r in shaping} - {(r.cls, r.link) for r in net.shaping}
        keep = [r for r in net.shaping if (r.cls, r.link) not in {(s.cls, s.link) for s in shaping}]
        net.shaping = keep + shaping
        net.reservations = reserve or net.reservations
        self._undo, self._last_id = before, plan.plan_id
        self.applied += 1
        self.path_switches += switched
        self.reservations += len(reserve)
        self.shaping_changes += len(new_shapes)
        actions = (
            f"{switched} OD path switch(es)",
            f"{len(shaping)} shaping limit(s)",
            f"{len(reserve)} reservation(s)",
        )
        return ApplyResult(plan.plan_id, self.name, False, "ok", actions, plan.explain())

    def rollback(self) -> ApplyResult:
        if self._undo is None:
            return ApplyResult(self._last_id, self.name, False, "ok", (), "nothing to roll back")
        self.network.restore(self._undo)
        self._undo = None
        self.rolled_back += 1
        return ApplyResult(self._last_id, self.name, False, "rolled-back", ("state restored",))

    def _link(self, name: str) -> int:
        try:
            return self.link_index[name]
        except KeyError:
            raise PlanError(f"shaping on {name!r}: no such link") from None

    def _switched(self, old: dict[str, Any]) -> int:
        """OD pairs (per class) whose routing changed."""
        n = 0
        for cls, before in old.items():
            after = self.network.routing.matrix(cls)
            diff = abs(after - before).sum(axis=0)
            n += int((np.asarray(diff).ravel() > 1e-6).sum())
        return n
