"""Time series views: forecasts with intervals and actuals, alerts with their outcome, and
application behaviour.

* a **link**: its measured utilisation (``link_series``), what was predicted ``horizon``
  ahead for each of those steps with its upper bounds (the stored link forecasts: they can
  be laid over the actuals), and the latest forecast over every step of the horizon;
* an **application class** (the routing classes the forecaster models: each groups the
  applications of one latency sensitivity): its measured demand summed over OD pairs (the
  forecaster's own history) and its latest forecast with the interval bounds summed over
  OD pairs (conservative: quantiles do not add);
* **alerts**: the ones firing, and the history with the lead time and the outcome: whether
  the link did reach the threshold between the alert and the predicted crossing plus the
  alert window (``confirmed``), not yet known (``pending``) or not (``not reached``: a false
  alarm, or averted by a plan).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute

from shadowcast.api.state import ApiState, NotFound
from shadowcast.api.views import iso, num
from shadowcast.errors import DataError, StoreError
from shadowcast.records import Alert
from shadowcast.units import format_duration, parse_duration

pc: Any = pyarrow.compute


def _t_s(tab: pa.Table, col: str) -> np.ndarray[Any, Any]:
    return np.asarray(tab.column(col).cast(pa.int64()).to_numpy() // 1000)


def _read(state: ApiState, table: str, start_s: int, where: dict[str, str]) -> pa.Table | None:
    try:
        return state.store.read(table, start=datetime.fromtimestamp(start_s, UTC), where=where)
    except StoreError:
        return None


def link_series(state: ApiState, link: str, hours: float, horizon: str | None) -> dict[str, Any]:
    with state.reading() as svc:
        if link not in svc.link_names:
            raise NotFound(f"no link {link!r} (GET /api/v1/topology lists them)")
        i = svc.link_names.index(link)
        cap = float(svc.capacity[i])
        pred = svc.last.link if svc.last else None
        now_s = svc.last.start_s + svc.step_s if svc.last else 0
        labels = dict(svc.s.horizons)
        step = svc.step_s
    h_label = horizon or (min(labels, key=lambda k: labels[k]) if labels else "")
    if h_label not in labels:
        raise DataError(f"horizon {h_label!r} is not forecast (choose: {', '.join(labels)})")
    start = now_s - int(hours * 3600)
    out: dict[str, Any] = {
        "link": link,
        "capacity_mbps": cap,
        "horizon": h_label,
        "actual": {"time": [], "util": []},
        "past": {},
        "forecast": {},
    }
    tab = _read(state, "link_series", start, {"link": link})
    if tab is not None and tab.num_rows:
        tab = tab.sort_by("time")
        out["actual"] = {
            "time": [iso(t) for t in _t_s(tab, "time")],
            "util": [num(u) for u in tab.column("utilisation").to_numpy()],
        }
    h_s = labels[h_label] * step
    tab = _read(state, "forecasts", start - h_s, {"kind": "link", "subject": link})
    if tab is not None and tab.num_rows:
        tab = tab.filter(pc.equal(tab.column("horizon_s"), h_s)).sort_by("issued")
        lv = tab.column("level").to_numpy()
        # stored targets are the end of the h-th step; the actual is stamped at its start
        tgt = _t_s(tab, "target") - step
        past: dict[str, Any] = {}
        for level in sorted(set(lv.tolist())):
            sel = lv == level
            if "time" not in past:
                past["time"] = [iso(t) for t in tgt[sel]]
                past["util"] = [num(m / cap) for m in tab.column("mean").to_numpy()[sel]]
            if level > 0:
                past[f"upper_{level:g}"] = [
                    num(u / cap) for u in tab.column("upper").to_numpy()[sel]
                ]
        out["past"] = past
    if pred is not None:
        steps = pred.mean.shape[1]
        times = [iso(pred.issued_s + j * step) for j in range(steps)]
        fc: dict[str, Any] = {"issued": iso(pred.issued_s), "time": times,
                              "util": [num(x / cap) for x in pred.mean[i]]}  # fmt: skip
        for lv, up in sorted(pred.upper.items()):
            fc[f"upper_{lv:g}"] = [num(x / cap) for x in up[i]]
        out["forecast"] = fc
    return out


def class_series(state: ApiState, cls: str, hours: float) -> dict[str, Any]:
    with state.reading() as svc:
        s = svc.s
        if cls not in s.classes:
            raise NotFound(f"no application class {cls!r} (classes: {', '.join(s.classes)})")
        hist = s.forecast.history
        rows = hist.rows
        keep = min(rows, max(1, int(hours * 3600) // svc.step_s))
        actual = hist.data[cls][rows - keep : rows].sum(axis=1) if rows else np.zeros(0)
        start = (hist.start_s or 0) + (rows - keep) * svc.step_s
        fc = svc.last.forecast if svc.last else None
        kinds = sorted(k for k, c in s.class_of.items() if c == cls)
        step = svc.step_s
        f = fc.by_class[cls] if fc is not None else None
        issued = fc.issued_s if fc is not None else 0
    out: dict[str, Any] = {
        "class": cls,
        "applications": kinds,
        "actual": {"time": [iso(start + j * step) for j in range(len(actual))],
                   "mbps": [num(x, 2) for x in actual]},
        "forecast": {},
    }  # fmt: skip
    if f is not None:
        steps = f.mean.shape[1]
        fo: dict[str, Any] = {"issued": iso(issued),
                              "time": [iso(issued + j * step) for j in range(steps)],
                              "mbps": [num(x, 2) for x in f.mean.sum(axis=0)]}  # fmt: skip
        for lv in sorted(f.upper):
            fo[f"lower_{lv:g}"] = [num(x, 2) for x in f.lower[lv].sum(axis=0)]
            fo[f"upper_{lv:g}"] = [num(x, 2) for x in f.upper[lv].sum(axis=0)]
        out["forecast"] = fo
    return out


def _alert_row(a: Alert, resolved: dict[tuple[str, int], int]) -> dict[str, Any]:
    issued = int(a.issued.astype("datetime64[s]").astype(np.int64))
    return {
        "subject": a.subject,
        "severity": a.severity,
        "value": num(a.value),
        "threshold": a.threshold,
        "issued": iso(issued),
        "at": iso(int(a.at.astype("datetime64[s]").astype(np.int64))),
        "lead_s": a.lead_s,
        "lead": format_duration(a.lead_s),
        "message": a.message,
        "labels": dict(a.labels),
        "resolved": iso(resolved.get((a.subject, issued))),
    }


def alerts(state: ApiState, limit: int = 200) -> dict[str, Any]:
    with state.reading() as svc:
        firing = list(svc.s.rule.firing.values())
        history = list(svc.alerts)[-limit:]
        resolved = {
            (a.subject, int(a.issued.astype("datetime64[s]").astype(np.int64))): t
            for a, t in svc.resolved
        }
        now_s = svc.last.start_s + svc.step_s if svc.last else 0
        within = int(state.settings.alert.within_s)
        step = svc.step_s
    rows = [_alert_row(a, resolved) for a in reversed(history)]
    _outcomes(state, rows, now_s, within, step)
    return {
        "firing": [_alert_row(a, resolved) for a in firing],
        "history": rows,
        "counts": {k: sum(r["outcome"] == k for r in rows)
                   for k in ("confirmed", "not reached", "pending")},
    }  # fmt: skip


def _outcomes(
    state: ApiState, rows: list[dict[str, Any]], now_s: int, within: int, step: int
) -> None:
    """Each alert's outcome from the measured utilisation of its link (see the docstring)."""
    if not rows:
        return
    first = min(int(datetime.fromisoformat(r["issued"]).timestamp()) for r in rows)
    tab = _read(state, "link_series", first, {})
    by_link: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
    if tab is not None and tab.num_rows:
        t = _t_s(tab, "time")
        names = np.asarray(tab.column("link").to_pylist(), dtype=object)
        util = tab.column("utilisation").to_numpy()
        for name in {r["subject"] for r in rows}:
            sel = names == name
            by_link[name] = (t[sel], util[sel])
    for r in rows:
        start = int(datetime.fromisoformat(r["issued"]).timestamp())
        end = int(datetime.fromisoformat(r["at"]).timestamp()) + within
        t, u = by_link.get(r["subject"], (np.zeros(0), np.zeros(0)))
        seen = (t >= start) & (t < end)
        peak = float(u[seen].max()) if seen.any() else None
        r["observed_peak"] = None if peak is None else num(peak)
        if peak is not None and peak >= r["threshold"]:
            r["outcome"] = "confirmed"
        elif now_s >= end:
            r["outcome"] = "not reached"
        else:
            r["outcome"] = "pending"


def applications(state: ApiState, last: str, limit: int) -> dict[str, Any]:
    """Behaviour per application and site pair over ``last`` (the profiler's 5-minute or
    coarsest tier): bytes, average and peak rate, active flows."""
    span = parse_duration(last)
    with state.reading() as svc:
        now_s = svc.last.start_s + svc.step_s if svc.last else 0
        class_of = dict(svc.s.class_of)
    tab = _read(state, "behaviour", now_s - span, {"kind": "app"})
    rows: list[dict[str, Any]] = []
    if tab is not None and tab.num_rows:
        grains = sorted(set(tab.column("grain_s").to_pylist()))
        tab = tab.filter(pc.equal(tab.column("grain_s"), grains[-1] if 300 not in grains else 300))
        keys = ["app", "category", "src", "dst"]
        agg = tab.group_by(keys).aggregate(
            [("bytes", "sum"), ("bps_avg", "mean"), ("bps_peak", "max"), ("flows_active", "mean")]
        )
        agg = agg.sort_by([("bytes_sum", "descending")]).slice(0, limit)
        for r in agg.to_pylist():
            rows.append({
                "app": r["app"], "category": r["category"],
                "class": class_of.get(r["category"], class_of.get(r["app"], "")),
                "src": r["src"], "dst": r["dst"], "bytes": int(r["bytes_sum"] or 0),
                "mbps_avg": num((r["bps_avg_mean"] or 0) / 1e6, 3),
                "mbps_peak": num((r["bps_peak_max"] or 0) / 1e6, 3),
                "flows_active": num(r["flows_active_mean"] or 0, 1),
            })  # fmt: skip
    return {"since": iso(now_s - span), "rows": rows}
