"""The API's read views of the service: health, topology, links, tunnels, accuracy, settings.

Each function copies what it needs from the service under its lock (``ApiState.reading``)
and returns plain JSON-ready data. Link predictions come from the latest step's
``LinkPrediction``; P(exceed) per link and horizon is read off its upper bound at the
highest level with a normal law, as the alert policy reads it
(``alert.policy.exceedance``; the link bounds are combined as Gaussian half-widths:
``forecast/links.py``); runout from the stored link loads (``forecast.links.runout``),
recomputed once per simulated or real day of data.
"""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np

from shadowcast.alert.policy import exceedance
from shadowcast.api.state import ApiState
from shadowcast.errors import StoreError
from shadowcast.forecast.links import runout
from shadowcast.records import F64
from shadowcast.units import format_duration

SECRET_KEYS = ("sha256", "secret", "password", "token", "url")


def iso(t_s: int | float | None) -> str | None:
    if t_s is None or (isinstance(t_s, float) and not math.isfinite(t_s)):
        return None
    return datetime.fromtimestamp(int(t_s), UTC).isoformat()


def num(x: Any, digits: int = 4) -> float | None:
    v = float(x)
    return round(v, digits) if math.isfinite(v) else None


def health(state: ApiState) -> dict[str, Any]:
    if state.service is None:
        return {"status": "starting", "stages": {}, "note": state.mode_note}
    with state.reading() as svc:
        out = svc.health()
    out["note"] = state.mode_note
    out["uptime_s"] = round(max(0.0, time.time() - state.started), 1)
    return out


def topology(state: ApiState) -> dict[str, Any]:
    with state.reading() as svc:
        topo = svc.s.topology
        names = svc.link_names
    return {
        "name": topo.name,
        "nodes": [
            {"name": n, "lon": topo.coords.get(n, (None, None))[0],
             "lat": topo.coords.get(n, (None, None))[1]}
            for n in topo.nodes
        ],
        "links": [
            {"name": names[i], "src": lk.src, "dst": lk.dst, "capacity_mbps": lk.capacity / 1e6}
            for i, lk in enumerate(topo.links)
        ],
    }  # fmt: skip


def _runout(state: ApiState, names: list[str], capacity: F64, now_s: int) -> dict[str, Any]:
    """Runout per link from the stored link loads (cached per day of data)."""

    def make() -> dict[str, Any]:
        try:
            tab = state.store.read("link_series")
        except StoreError:
            return {}
        if tab.num_rows == 0:
            return {}
        t = tab.column("time").cast("int64").to_numpy() // 1000
        link = np.asarray(tab.column("link").to_pylist(), dtype=object)
        steps = np.unique(t)
        row = np.searchsorted(steps, t)
        col_of = {n: i for i, n in enumerate(names)}
        col = np.array([col_of.get(str(x), -1) for x in link])
        loads = np.full((len(steps), len(names)), np.nan)
        ok = col >= 0
        loads[row[ok], col[ok]] = tab.column("load_mbps").to_numpy()[ok]
        fc = state.settings.forecast
        r = runout(
            steps.astype("datetime64[s]"),
            loads,
            capacity,
            target=fc.runout_target,
            horizon_days=fc.runout_horizon_s / 86400,
        )
        return {
            n: {"days": num(r.days[i], 1), "target": fc.runout_target,
                "date": None if np.isnat(r.date[i]) else str(r.date[i]) + "Z"}
            for i, n in enumerate(names)
        }  # fmt: skip

    return dict(state.cached("runout", now_s // 86400, make))


def links(state: ApiState) -> dict[str, Any]:
    thr = float(state.settings.alert.utilisation_threshold)
    with state.reading() as svc:
        names = list(svc.link_names)
        cap = np.asarray(svc.capacity, dtype=np.float64)
        last = svc.last
        horizons = dict(svc.s.horizons)
        firing = {a.subject for a in svc.s.rule.firing.values()}
        topo = svc.s.topology
    pred = last.link if last is not None else None
    now_s = last.start_s + svc.step_s if last is not None else 0
    ro = _runout(state, names, cap, now_s) if last is not None else {}
    out = []
    for i, name in enumerate(names):
        lk = topo.links[i]
        row: dict[str, Any] = {
            "name": name,
            "src": lk.src,
            "dst": lk.dst,
            "capacity_mbps": float(cap[i]),
            "util_now": None if last is None or last.link_util is None
            else num(last.link_util[i]),
            "firing": name in firing,
            "predicted": {},
            "runout": ro.get(name),
        }  # fmt: skip
        if pred is not None:
            levels = sorted(pred.upper)
            top = levels[-1] if levels else 0.0
            for label, h in sorted(horizons.items(), key=lambda kv: kv[1]):
                if h > pred.mean.shape[1]:
                    continue
                m = float(pred.mean[i, h - 1])
                ups = {f"{lv:g}": num(pred.upper[lv][i, h - 1] / cap[i]) for lv in levels}
                upper = {top: pred.upper[top][i : i + 1, h - 1 : h]} if levels else {}
                pe = exceedance(np.array([[m]]), upper, cap[i : i + 1], thr)[0, 0]
                row["predicted"][label] = {
                    "steps": h,
                    "target": iso(pred.issued_s + h * pred.step_s),
                    "util": num(m / cap[i]),
                    "upper": ups,
                    "p_exceed": num(pe, 3),
                }
        out.append(row)
    return {
        "issued": None if pred is None else iso(pred.issued_s),
        "threshold": thr,
        "horizons": [k for k, _ in sorted(horizons.items(), key=lambda kv: kv[1])],
        "links": out,
    }


def tunnels(state: ApiState) -> dict[str, Any]:
    with state.reading() as svc:
        sh = svc.s.shadow
        if sh is None:
            return {"enabled": False, "tunnels": [], "counters": {}}
        live = [
            {"name": t.spec.name, "path": list(t.spec.key.path), "class": t.spec.key.traffic_class,
             "vni": t.spec.vni, "created": iso(t.created), "last_used": iso(t.last_used),
             "probe_rate_bps": t.probe_rate_bps, "applications": sorted(t.applications)}
            for t in sh.manager.tunnels.values()
        ]  # fmt: skip
        counters = sh.counters()
        now_s = svc.last.start_s + svc.step_s if svc.last else 0
    latest = _latest_measurements(state, now_s)
    for t in live:
        t["measurement"] = latest.get(str(t["name"]))  # type: ignore[assignment]

    def least_room(t: dict[str, Any]) -> float:  # the most constrained paths first
        m = t["measurement"] or {}
        v = m.get("abw_mbps")
        return math.inf if v is None else float(v)

    live.sort(key=least_room)
    return {"enabled": True, "tunnels": live, "counters": counters}


def _latest_measurements(state: ApiState, now_s: int) -> dict[str, dict[str, Any]]:
    start = datetime.fromtimestamp(now_s, UTC) - timedelta(days=1) if now_s else None
    try:
        tab = state.store.read("shadow", start=start)
    except StoreError:
        return {}
    if tab.num_rows == 0:
        return {}
    tab = tab.sort_by("time")
    out: dict[str, dict[str, Any]] = {}
    for r in tab.to_pylist():  # a day of one row per tunnel and round: small
        out[r["tunnel"]] = {
            "time": r["time"].isoformat(),
            **{k: num(r[k], 3) for k in ("rtt_ms", "owd_ms", "jitter_ms", "loss", "abw_mbps")},
        }
    return out


def accuracy(state: ApiState, hours: float = 24 * 7) -> dict[str, Any]:
    """The ledger's running scores, and its stored rows per hour for the trend."""
    with state.reading() as svc:
        summary = svc.s.ledger.summary()
        now_s = svc.last.start_s if svc.last else 0
    start = datetime.fromtimestamp(now_s, UTC) - timedelta(hours=hours) if now_s else None
    trend: list[dict[str, Any]] = []
    try:
        tab = state.store.read("accuracy", start=start)
    except StoreError:
        tab = None
    if tab is not None and tab.num_rows:
        t = tab.column("time").cast("int64").to_numpy() // 1000 // 3600 * 3600
        kind = np.asarray(tab.column("kind").to_pylist(), dtype=object)
        hs = tab.column("horizon_s").to_numpy()
        err, act = tab.column("abs_err").to_numpy(), tab.column("abs_actual").to_numpy()
        per = tab.column("abs_err_persist").to_numpy()
        first = tab.column("level").to_numpy() == tab.column("level").to_numpy().min()
        for k in sorted(set(kind.tolist())):
            for h in sorted(set(hs.tolist())):
                sel = first & (kind == k) & (hs == h)
                if not sel.any():
                    continue
                hours_ = np.unique(t[sel])
                idx = np.searchsorted(hours_, t[sel])
                e = np.bincount(idx, err[sel], len(hours_))
                a = np.bincount(idx, act[sel], len(hours_))
                p = np.bincount(idx, per[sel], len(hours_))
                trend.append({
                    "kind": k, "horizon": format_duration(int(h)),
                    "time": [iso(x) for x in hours_],
                    "nmae": [num(x) for x in _ratio(e, a)],
                    "nmae_persistence": [num(x) for x in _ratio(p, a)],
                })  # fmt: skip
    clean = [{k: (num(v) if isinstance(v, float) else v) for k, v in r.items()} for r in summary]
    return {"summary": clean, "trend": trend}


def _ratio(a: Any, b: Any) -> F64:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    out: F64 = np.divide(a, b, out=np.full_like(a, np.nan), where=b > 0)
    return out


def redact(value: Any, key: str = "") -> Any:
    """Settings with secrets replaced: token hashes, URLs (may carry credentials), ..."""
    if isinstance(value, dict):
        return {k: redact(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, key) for v in value]
    if value not in (None, "") and any(s in key.lower() for s in SECRET_KEYS):
        if key.endswith("_env"):
            return value  # the variable's name, not its value
        return "<redacted>"
    return value


def settings(state: ApiState) -> dict[str, Any]:
    return dict(redact(state.settings.model_dump(mode="json")))
