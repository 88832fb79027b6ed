"""Plans through the API: list and show; approve, reject, apply and roll back (admins).

The plans are the service's decisions that carry one (``proposed`` in advise mode, then
``applied``, ``rejected``, ``rolled-back``, ...), newest first; a plan's state is the latest
decision about it. Every admin action, and every refused attempt, is written to the store's
``audit`` table with the token's name before the answer goes back.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from shadowcast.api.auth import Principal
from shadowcast.api.state import ApiState, NotFound
from shadowcast.api.views import iso, num
from shadowcast.errors import DataError, PlanError, ShadowcastError, StoreError
from shadowcast.plan.base import Plan
from shadowcast.plan.cycle import Decision
from shadowcast.service import operator
from shadowcast.store.schema import AUDIT_SCHEMA

log = logging.getLogger(__name__)


def audit(
    state: ApiState, who: Principal, action: str, target: str, status: str, **detail: Any
) -> None:
    """One row of the ``audit`` table (written now, not buffered)."""
    row = {
        "time": [datetime.now(UTC)],
        "token": [who.name],
        "action": [action],
        "target": [target],
        "status": [status],
        "detail": [json.dumps(detail, default=str)],
    }
    try:
        state.store.write("audit", pa.table(row, schema=AUDIT_SCHEMA))
    except StoreError as exc:  # the action stands; the failure is loud
        log.error("audit write failed", extra={"action": action, "error": str(exc)})
    log.info("api admin action", extra={"token": who.name, "action": action,
                                        "target": target, "status": status})  # fmt: skip


def _decisions(state: ApiState) -> list[Decision]:
    with state.reading() as svc:
        return list(svc.decisions)


def plan_rows(state: ApiState) -> list[dict[str, Any]]:
    latest: dict[str, Decision] = {}
    first: dict[str, Decision] = {}
    for d in _decisions(state):
        if d.plan is None:
            continue
        latest[d.plan.plan_id] = d
        first.setdefault(d.plan.plan_id, d)
    out = []
    newest = _newest_proposed(latest, first)
    for pid, d in sorted(latest.items(), key=lambda kv: -kv[1].time_s):
        p = d.plan
        assert p is not None
        out.append({
            "plan_id": pid, "decided": iso(d.time_s),
            "state": "superseded" if d.action == "proposed" and pid != newest else d.action,
            "proposed": iso(first[pid].time_s), "reason": d.reason,
            "predicted_peak": num(first[pid].predicted_peak),
            "mlu_current": num(p.mlu_current), "mlu_planned": num(p.mlu_planned),
            "changes": len({(c.cls, c.src, c.dst) for c in p.changes}),
            "shaping": len(p.shaping), "reservations": len(p.reservations),
            "explain": p.explain(),
        })  # fmt: skip
    return out


def _newest_proposed(latest: dict[str, Decision], first: dict[str, Decision]) -> str | None:
    """The newest plan, when it is still proposed: only it can be approved (an older one
    was made on older forecasts, and any plan decided since replaces it)."""
    if not first:
        return None
    newest = max(first, key=lambda pid: (first[pid].time_s, pid))
    return newest if latest[newest].action == "proposed" else None


def find(state: ApiState, plan_id: str) -> tuple[Plan, str]:
    """The plan and its state (the latest decision's action); DataError if unknown."""
    found: tuple[Plan, str] | None = None
    latest: dict[str, Decision] = {}
    first: dict[str, Decision] = {}
    for d in _decisions(state):
        if d.plan is not None:
            latest[d.plan.plan_id] = d
            first.setdefault(d.plan.plan_id, d)
            if d.plan.plan_id == plan_id:
                found = (d.plan, d.action)
    if found is None:
        raise NotFound(f"no plan {plan_id!r} (GET /api/v1/plans lists them)")
    if found[1] == "proposed" and _newest_proposed(latest, first) != plan_id:
        return found[0], "superseded"
    return found


def show(state: ApiState, plan_id: str) -> dict[str, Any]:
    plan, st = find(state, plan_id)
    return {"plan_id": plan_id, "state": st, "explain": plan.explain(), "plan": plan.to_dict()}


def _result(d: Decision) -> dict[str, Any]:
    return {"plan_id": d.plan.plan_id if d.plan else "", "state": d.action, "reason": d.reason,
            "time": iso(d.time_s)}  # fmt: skip


def act(
    state: ApiState, who: Principal, action: str, plan_id: str, reason: str = ""
) -> dict[str, Any]:
    """approve | reject | rollback a known plan (the caller checked the scope)."""
    try:
        plan, st = find(state, plan_id)
        svc = state.service
        assert svc is not None
        if action in ("approve", "reject") and st != "proposed":
            raise PlanError(f"plan {plan_id} is {st}, not proposed: nothing to {action}")
        if action == "approve":
            d = svc.approve(plan)
        elif action == "reject":
            d = operator.reject(svc, plan, f"rejected by {who.name}: {reason or 'no reason'}")
        elif action == "rollback":
            d = operator.rollback(svc, plan_id)
        else:
            raise DataError(f"unknown action {action!r}")
    except ShadowcastError as exc:
        audit(state, who, action, plan_id, "refused", reason=str(exc))
        raise
    ok = d.action in ("applied", "rejected", "rolled-back", "dry-run")
    if action == "approve" and d.action != "applied":
        ok = False
    audit(state, who, action, plan_id, "ok" if ok else d.action, reason=d.reason, note=reason)
    return _result(d)


def apply_body(state: ApiState, who: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """Apply a plan given whole (``shadowcast plan --json`` output) through the checker."""
    pid = str(body.get("plan_id", ""))
    try:
        plan = Plan.from_dict(body)
        svc = state.service
        assert svc is not None
        d = svc.approve(plan)
    except ShadowcastError as exc:
        audit(state, who, "apply", pid, "refused", reason=str(exc))
        raise
    audit(state, who, "apply", pid, "ok" if d.action == "applied" else d.action, reason=d.reason)
    return _result(d)


def audit_rows(state: ApiState, limit: int) -> list[dict[str, Any]]:
    try:
        tab = state.store.read("audit")
    except StoreError:
        return []
    tab = tab.sort_by([("time", "descending")]).slice(0, limit)
    return [{**r, "time": r["time"].isoformat()} for r in tab.to_pylist()]
