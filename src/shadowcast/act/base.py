"""The Actuator protocol, its result, the audit trail and the guarded apply.

Every plan passes the checker first; then the actuator applies it all-or-nothing (an
actuator that fails part-way restores the previous state and raises ActuationError);
every apply, rejection and rollback is handed to the ``audit`` callback (see
:func:`store_audit` for the store's ``actions`` table).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

import pyarrow as pa

from shadowcast.errors import ActuationError, PlanError, RollbackError
from shadowcast.plan.base import Plan, check_plan
from shadowcast.records import Topology

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """What an actuator did: ``status`` is ok | dry-run | rolled-back | rejected."""

    plan_id: str
    actuator: str
    dry_run: bool
    status: str
    actions: tuple[str, ...] = ()
    detail: str = ""
    rendered: str = ""


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One line of the audit trail (the store's ``actions`` table)."""

    plan_id: str
    actuator: str
    action: str  # apply | dry-run | rollback | reject
    status: str  # ok | failed | rolled-back | rejected
    detail: dict[str, Any] = field(default_factory=dict)
    time: datetime = field(default_factory=lambda: datetime.now(UTC))


Audit = Callable[[AuditRecord], None]


class Actuator(Protocol):
    """Applies plans to a network (or a controller); ``rollback`` undoes the last apply."""

    name: str

    def apply(self, plan: Plan, *, dry_run: bool = True) -> ApplyResult: ...

    def rollback(self) -> ApplyResult: ...


def audit_table(records: list[AuditRecord]) -> pa.Table:
    """Audit records as an Arrow table with the store's ACTION_SCHEMA."""
    from shadowcast.store.schema import ACTION_SCHEMA

    return pa.table(
        {
            "time": [r.time for r in records],
            "plan_id": [r.plan_id for r in records],
            "actuator": [r.actuator for r in records],
            "action": [r.action for r in records],
            "status": [r.status for r in records],
            "detail": [json.dumps(r.detail, default=str) for r in records],
        },
        schema=ACTION_SCHEMA,
    )


def store_audit(store: Any) -> Audit:
    """An audit callback that writes each record to ``store``'s ``actions`` table."""

    def write(rec: AuditRecord) -> None:
        store.write("actions", audit_table([rec]))

    return write


def apply_plan(
    actuator: Actuator,
    plan: Plan,
    topology: Topology,
    *,
    dry_run: bool = True,
    max_changes: int | None = 20,
    audit: Audit | None = None,
    allow_overload: bool = False,
) -> ApplyResult:
    """Check, then apply; record the outcome. Raises PlanError (rejected) or
    ActuationError (failed and rolled back). ``allow_overload`` lets a plan through that
    still loads a link over capacity at its planned quantile (one that lowers the overload
    it cannot remove)."""

    def record(action: str, status: str, **detail: Any) -> None:
        if audit is not None:
            audit(AuditRecord(plan.plan_id, actuator.name, action, status, detail))

    try:
        check_plan(plan, topology, max_changes=max_changes, allow_overload=allow_overload)
    except PlanError as exc:
        record("reject", "rejected", reason=str(exc))
        raise
    try:
        res = actuator.apply(plan, dry_run=dry_run)
    except ActuationError as exc:
        record("apply", "failed", reason=str(exc))
        record("rollback", "failed" if isinstance(exc, RollbackError) else "rolled-back",
               reason=str(exc))  # fmt: skip
        raise
    record(
        "dry-run" if dry_run else "apply",
        "ok",
        actions=list(res.actions),
        changes=len(plan.changes),
    )
    return res


def rollback(actuator: Actuator, plan_id: str, *, audit: Audit | None = None) -> ApplyResult:
    """Undo the actuator's last apply and record it."""
    try:
        res = actuator.rollback()
    except ActuationError as exc:
        if audit is not None:
            audit(AuditRecord(plan_id, actuator.name, "rollback", "failed", {"reason": str(exc)}))
        raise
    if audit is not None:
        audit(AuditRecord(plan_id, actuator.name, "rollback", "ok", {"actions": list(res.actions)}))
    return res
