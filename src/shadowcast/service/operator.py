"""What an operator does to the running service besides approving (``Service.approve``):
reject a proposed plan, roll the last applied plan back, roll the forecast model back to a
saved version. Each runs under the service's lock (between steps); the plan actions land in
the store's ``decisions`` table beside the loop's own, the model rollback in
``model_events``."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from shadowcast.act.base import rollback as actuator_rollback
from shadowcast.errors import ActuationError, ConfigError, PlanError, StoreError
from shadowcast.feedback.champion import model_events_table
from shadowcast.forecast.arena import ArenaCycle
from shadowcast.network.state import shares_of_plan
from shadowcast.plan.base import Plan
from shadowcast.plan.cycle import Decision, decisions_table
from shadowcast.plan.planner import split_matrix
from shadowcast.service.loop import Service

log = logging.getLogger(__name__)


def _now(service: Service) -> int:
    return service.last.start_s + service.step_s if service.last else 0


def _record(service: Service, d: Decision, mode: str) -> Decision:
    service.s.writer.add("decisions", decisions_table([d], mode))
    service.decisions.append(d)
    counts = service.s.plan.counts
    counts[d.action] = counts.get(d.action, 0) + 1
    return d


def reject(service: Service, plan: Plan, reason: str) -> Decision:
    """Keep the operator's refusal of ``plan`` (nothing changes in the network)."""
    with service.lock:
        d = Decision(_now(service), "rejected", reason, 0.0, plan)
        return _record(service, d, "operator")


def last_applied(service: Service) -> Plan | None:
    """The plan in force (the latest applied and not rolled back), from memory."""
    for d in reversed(service.decisions):
        if d.action == "rolled-back":
            return None
        if d.action == "applied" and d.plan is not None:
            return d.plan
    return None


def rollback(service: Service, plan_id: str) -> Decision:
    """Undo ``plan_id`` through the actuator; it must be the plan in force. The routing the
    service models goes back to the plan applied before it (IGP routing if none)."""
    with service.lock:
        s = service.s
        current = last_applied(service)
        if current is None or current.plan_id != plan_id:
            now_id = current.plan_id if current else "none"
            raise PlanError(f"only the plan in force can be rolled back (in force: {now_id})")
        if s.actuator is None:
            raise ActuationError("no actuator configured: nothing to roll back")
        actuator_rollback(s.actuator, plan_id, audit=s.audit)
        before: Plan | None = None
        seen = False
        for d in reversed(service.decisions):
            if d.plan is not None and d.plan.plan_id == plan_id and d.action == "applied":
                seen = True
            elif seen and d.action == "applied" and d.plan is not None:
                before = d.plan
                break
        if before is None:
            s.routing.reset()
            s.plan.current = np.tile(s.plan.paths.shortest_split(), (len(s.classes), 1))
        else:
            s.routing.install(shares_of_plan(before.splits, s.routing.od_index))
            s.plan.current = split_matrix(before, s.plan.paths, s.classes)
        back = before.plan_id if before else "IGP routing"
        why = f"rolled back by an operator to {back}"
        d = Decision(_now(service), "rolled-back", why, 0.0, current)
        return _record(service, d, "operator")


def rollback_model(service: Service, version: int, reason: str) -> dict[str, Any]:
    """Make saved forecast model ``version`` the champion now (as a new version, caught up
    with the steps it missed): the next step forecasts with it. The event is flushed to the
    store, then the models are saved (which clears a rollback requested by the command line:
    this one supersedes it). ForecastError when the version is unknown or gone."""
    with service.lock:
        fc = service.s.forecast
        if not isinstance(fc, ArenaCycle):
            raise ConfigError("the forecast stage keeps no model versions: nothing to roll back")
        folder = service.state_dir / "models"
        old, old_model = fc.version, fc.model_name
        new = fc.rollback(folder, version, _now(service) or (fc.last_s or 0), reason)
        events = fc.take_events()
        if events:
            service.s.writer.add("model_events", model_events_table(events))
        try:  # the store first, then the models (as a checkpoint does)
            service.s.writer.flush()
        except StoreError as exc:  # the rollback stands; the next checkpoint saves it
            log.error("model rollback: store flush failed", extra={"error": str(exc)})
        else:
            fc.save(folder)
        extra = {"to": version, "version": new, "previous": old, "reason": reason}
        log.info("forecast model rolled back", extra=extra)
        return {"rolled_back_to": version, "version": new, "model": fc.model_name,
                "previous": old, "previous_model": old_model}  # fmt: skip
