"""The API's views of the feedback loop: what each applied action did to the links.

``actions``: every applied plan judged by its effect (``feedback/actions.py``): the maximum
link utilisation (MLU) the plan expected after it against the one realised, per horizon of
the ledger (``15m``, ``1h``), from the store's ``action_outcomes`` over the last ``hours``
of service time, newest action first.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from shadowcast.api.state import ApiState
from shadowcast.api.views import iso
from shadowcast.errors import StoreError
from shadowcast.feedback.actions import summarise
from shadowcast.units import format_duration


def _now_s(state: ApiState) -> tuple[int, int, int]:
    """The service's time (end of its last step), and its action judge's pending and
    judged counts."""
    with state.reading() as svc:
        now = svc.last.start_s + svc.step_s if svc.last else 0
        judge = svc.s.actions
        return now, judge.pending if judge else 0, judge.judged if judge else 0


def actions(state: ApiState, hours: float) -> dict[str, Any]:
    """Predicted and realised MLU per (applied action, horizon) over the last ``hours``."""
    now, pending, judged = _now_s(state)
    start = datetime.fromtimestamp(now, UTC) - timedelta(hours=hours) if now else None
    try:
        tab = state.store.read("action_outcomes", start=start)
    except StoreError:
        tab = None
    rows = summarise(tab) if tab is not None else []
    out = [
        {
            **{k: v for k, v in r.items() if k not in ("issued_s", "target_s")},
            "issued": iso(r["issued_s"]),
            "target": iso(r["target_s"]),
            "horizon": format_duration(int(r["horizon_s"])),
        }
        for r in rows
    ]
    return {"hours": hours, "now": iso(now) if now else None, "pending": pending,
            "judged": judged, "actions": out}  # fmt: skip
