"""The API's views of the feedback loop: what each applied action did to the links, and
how the alert tuner chose p.

``actions``: every applied plan judged by its effect (``feedback/actions.py``): the maximum
link utilisation (MLU) the plan expected after it against the one realised, per horizon of
the ledger (``15m``, ``1h``), from the store's ``action_outcomes`` over the last ``hours``
of service time, newest action first.

``tuning``: the probability rule's p in force per link class, the precision/recall curve
behind it (the latest tuning's rows of ``alert_tuning``: every p of the grid replayed over
the tuner's history) and the history of the choices (one row per tuning and class).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from shadowcast.alert.policy import ProbabilityRule
from shadowcast.api.state import ApiState
from shadowcast.api.views import iso, num
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


def _rule(state: ApiState) -> tuple[int, dict[str, Any]]:
    """The service's time and its alert policy: the p in force per class."""
    with state.reading() as svc:
        now = svc.last.start_s + svc.step_s if svc.last else 0
        rule, tuner = svc.s.rule, svc.s.tuner
        if not isinstance(rule, ProbabilityRule):
            return now, {"policy": "threshold"}
        return now, {
            "policy": "probability",
            "tune": tuner is not None,
            "tuned": tuner.tuned if tuner else 0,
            "target_precision": tuner.target if tuner else None,
            "p": {c: float(rule.p.get(c, rule.default_p)) for c in rule.class_names},
        }


def _nums(values: Any) -> list[float | None]:
    return [num(v) for v in np.asarray(values, dtype=np.float64)]


def tuning(state: ApiState, hours: float) -> dict[str, Any]:
    """p per class now, the curve behind it, and the choices over the last ``hours``."""
    now, doc = _rule(state)
    if doc["policy"] != "probability":
        return {**doc, "classes": {}, "history": []}
    start = datetime.fromtimestamp(now, UTC) - timedelta(hours=hours) if now else None
    try:
        tab = state.store.read("alert_tuning", start=start)
    except StoreError:
        tab = None
    classes: dict[str, Any] = {c: {"p": p, "tuned_at": None, "curve": None}
                               for c, p in doc.pop("p").items()}  # fmt: skip
    history: list[dict[str, Any]] = []
    if tab is not None and tab.num_rows:
        t = tab.column("time").cast("int64").to_numpy() // 1000
        cls = np.asarray(tab.column("link_class").to_pylist(), dtype=object)
        names = ("p", "chosen", "alerts", "precision", "recall", "lead_steps_median")
        col = {k: tab.column(k).to_numpy() for k in names}
        for c in sorted(set(cls.tolist())):
            mine = cls == c
            last = mine & (t == t[mine].max())
            order = np.argsort(col["p"][last])
            cur = classes.setdefault(c, {"p": None})
            at = last & np.isclose(col["p"], cur["p"] if cur["p"] is not None else -1.0)
            i = int(np.flatnonzero(at)[0]) if at.any() else None
            cur.update({
                "tuned_at": iso(int(t[mine].max())),
                "precision": None if i is None else num(col["precision"][i]),
                "recall": None if i is None else num(col["recall"][i]),
                "alerts": None if i is None else int(col["alerts"][i]),
                "curve": {k: _nums(col[k][last][order])
                          for k in ("p", "precision", "recall", "lead_steps_median")}
                         | {"alerts": col["alerts"][last][order].astype(int).tolist()},
            })  # fmt: skip
        chosen = col["chosen"] == 1
        for j in np.flatnonzero(chosen)[np.argsort(-t[chosen], kind="stable")]:
            history.append({
                "time": iso(int(t[j])), "class": str(cls[j]), "p": num(col["p"][j]),
                "precision": num(col["precision"][j]), "recall": num(col["recall"][j]),
                "alerts": int(col["alerts"][j]),
            })  # fmt: skip
    return {**doc, "now": iso(now) if now else None, "classes": classes, "history": history}
