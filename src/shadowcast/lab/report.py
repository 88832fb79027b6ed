"""The lab demo's report: what was measured, predicted, decided and applied, with times.

Times are seconds since the traffic started. "kernel" figures are the routers' own
device counters (``ip -s link``), "service" figures what the service measured from the
IPFIX its collector received, "predicted" the mean forecast mapped onto the link (peak
over the plan horizon, as a share of capacity).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict
from typing import Any

import numpy as np
import pyarrow as pa

from shadowcast.lab.demo import THIN, WATCH, DemoRun
from shadowcast.lab.scenario import THIN_MBPS, edge_prefix
from shadowcast.store.base import Store


def _ms(col: pa.ChunkedArray) -> np.ndarray[Any, Any]:
    return np.asarray(col.cast(pa.int64()).to_numpy()) // 1000


def _od_ab(store: Store) -> dict[int, float]:
    tab = store.read("od_series", where={"src": "A", "dst": "B", "app": ""})
    return dict(zip(_ms(tab.column("time")).tolist(), tab.column("mbps").to_pylist(), strict=True))


def route_entry(dump: str, prefix: str) -> str:
    """The main-table route to ``prefix`` in an ``ip -d route show`` dump, with its
    multipath hops, on one line."""
    out: list[str] = []
    for line in dump.splitlines():
        if out and line[:1].isspace():
            out.append(line.strip())
        elif out:
            break
        else:
            toks = line.split()
            table = toks[toks.index("table") + 1] if "table" in toks[:-1] else "main"
            if prefix in toks[:2] and table == "main":
                out.append(line.strip())
    return " ".join(out)


def _mean(rows: Iterable[dict[str, float]], key: str) -> float | None:
    vals = [r[key] for r in rows if key in r]
    return round(float(np.mean(vals)), 3) if vals else None


def _moved(run: DemoRun) -> dict[str, Any]:
    """Kernel Mbit/s on the watched links in the steps before the plan and after it."""
    if run.applied_at is None:
        return {}
    step = run.options.step_s
    before = [v for t, v in sorted(run.kernel.items()) if t + step <= run.applied_at][-3:]
    end = run.traffic_t0 + run.options.seconds
    after = [v for t, v in run.kernel.items() if t >= run.applied_at + step and t + step <= end]
    return {
        "window_steps": {"before": len(before), "after": len(after)},
        "before_mbps": {k: _mean(before, k) for k in WATCH},
        "after_mbps": {k: _mean(after, k) for k in WATCH},
    }


def _flows(run: DemoRun) -> dict[str, Any]:
    """Rollup counts, and the service's demand against the bytes the kernel saw enter the
    backbone at the edge ports (about 1: each flow once; 2 would be counted twice)."""
    rollup = dict(run.health.get("stages", {}).get("rollup", {}))
    svc = kern = 0.0
    for t, row in run.steps.rows.items():
        k = run.kernel.get(t)
        if k is None or row["demand_mbps"] <= 0:
            continue
        svc += row["demand_mbps"]
        kern += sum(v for name, v in k.items() if name.startswith("edge:"))
    keep = ("records", "mapped_records", "unmapped_records", "mapped_share", "late_records")
    out = {k: rollup.get(k) for k in keep}
    out["service_over_kernel"] = round(svc / kern, 3) if kern > 0 else None
    return out


def _shadow(run: DemoRun, tab: pa.Table) -> dict[str, Any]:
    counters = run.health.get("stages", {}).get("shadow") or {}
    rows = tab.to_pylist()
    tunnels = sorted({r["tunnel"] for r in rows})
    return {
        "tunnels_opened": int(counters.get("created", 0)),
        "probe_rows": len(rows),
        "tunnels_probed": tunnels,
        "paths": sorted({r["path"] for r in rows}),
        "rtt_ms_median": round(float(np.nanmedian([r["rtt_ms"] for r in rows])), 3)
        if rows
        else None,
        "counters": {k: int(v) for k, v in counters.items()},
    }


def _prediction(timeline: list[dict[str, Any]], trigger: float) -> dict[str, Any]:
    """When the thin link was first predicted over the plan trigger, and what was measured
    then; how far the demand A->B went, and how full the thin link ever got."""
    first = next((r for r in timeline if (r["predicted_peak_thin"] or 0) >= trigger), None)
    over = [r["t"] for r in timeline if r["service_ab_mbps"] >= THIN_MBPS]
    thin = [r["kernel_mbps"][THIN] for r in timeline if THIN in r["kernel_mbps"]]
    return {
        "trigger": trigger,
        "first_over_trigger": None
        if first is None
        else {
            "t": first["t"],
            "predicted": first["predicted_peak_thin"],
            "measured_service": round(first["service_ab_mbps"] / THIN_MBPS, 3),
            "measured_kernel": round(first["kernel_mbps"].get(THIN, 0.0) / THIN_MBPS, 3),
        },
        "first_demand_over_capacity_t": over[0] if over else None,
        "peak_demand_ab": round(max(r["service_ab_mbps"] for r in timeline) / THIN_MBPS, 3)
        if timeline
        else None,
        "peak_thin_kernel": round(max(thin) / THIN_MBPS, 3) if thin else None,
    }


def build_report(run: DemoRun, store: Store) -> dict[str, Any]:
    t0 = run.traffic_t0
    od_ab = _od_ab(store)
    timeline = []
    for t, row in sorted(run.steps.rows.items()):
        k = run.kernel.get(t, {})
        timeline.append(
            {
                "t": int(t - t0),
                "kernel_mbps": {n: round(k[n], 3) for n in WATCH if n in k},
                "service_ab_mbps": round(od_ab.get(t, 0.0), 3),
                "predicted_peak_thin": row.get(f"predicted_peak:{THIN}"),
                "action": row.get("action", ""),
            }
        )
    dec = store.read("decisions")
    decisions = [
        {"t": int(t - t0), "mode": m, "action": a, "plan_id": p, "reason": r}
        for t, m, a, p, r in zip(
            _ms(dec.column("time")).tolist(),
            dec.column("mode").to_pylist(),
            dec.column("action").to_pylist(),
            dec.column("plan_id").to_pylist(),
            dec.column("reason").to_pylist(),
            strict=True,
        )  # fmt: skip
        if a != "none"
    ]
    applied = None
    if run.applied is not None:
        t = int(run.applied["time_s"])
        prefix = edge_prefix(run.plan, "B")
        routes = run.routes_after.get(run.plan.routers["A"], "")
        measured = run.kernel.get(t - run.options.step_s, {}).get(THIN)
        applied = {
            "t": int(t - t0),  # the end of the step it was decided on
            "applied_t": round((run.applied_at or t) - t0, 1),  # when the routes changed
            "plan_id": run.applied["plan_id"],
            "predicted_peak": round(float(run.applied["predicted_peak"]), 3),
            "thin_utilisation_measured": None
            if measured is None
            else round(measured / THIN_MBPS, 3),
            "reason": run.applied["reason"],
            "route_at_A": route_entry(routes, prefix),
        }
    trigger = float(run.settings.service.plan_trigger)
    return {
        "lab": {
            "prefix": run.plan.prefix,
            "topology": run.plan.topology,
            "work_dir": str(run.options.work),
            "settings": str(run.settings_file),
            "seconds": round(run.ended_at - t0, 1),
            "thin_link": THIN,
            "thin_mbps": THIN_MBPS,
        },  # fmt: skip
        "prediction": _prediction(timeline, trigger),
        "applied": applied,
        "moved": _moved(run),
        "faults": [asdict(f) | {"t": int(f.time_s - t0)} for f in run.faults],
        "decisions": decisions,
        "alerts": run.steps.alerts,
        "shadow": _shadow(run, store.read("shadow")),
        "flows": _flows(run),
        "actions": store.count("actions"),
        "traffic_failed": run.traffic_failed,
        "errors": run.errors,
        "timeline": timeline,
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.0%}"


def render(rep: dict[str, Any]) -> list[str]:
    """The report as a few lines of text."""
    lab = rep["lab"]
    lines = [
        f"lab {lab['prefix']}* ({lab['topology']}), thin link {lab['thin_link']} "
        f"{lab['thin_mbps']:g} Mbit/s; {lab['seconds']} s; work dir {lab['work_dir']}",
        "measured (kernel Mbit/s, A->B | A->C | C->B) / service A->B / predicted peak of "
        "A->B (mean, plan horizon):",
    ]
    for r in rep["timeline"]:
        k = r["kernel_mbps"]
        cells = " | ".join(f"{k[n]:5.2f}" if n in k else "    -" for n in WATCH)
        pred = r["predicted_peak_thin"]
        lines.append(
            f"  t={r['t']:4d}s  {cells}  /  {r['service_ab_mbps']:5.2f}  /  "
            + (f"{pred:4.0%}" if pred is not None else "   -")
            + (f"  {r['action']}" if r["action"] not in ("", "none") else "")
        )
    p = rep["prediction"]
    f0 = p["first_over_trigger"]
    if f0 is not None:
        lines.append(
            f"predicted: A->B first over the {_pct(p['trigger'])} trigger at t={f0['t']}s "
            f"({_pct(f0['predicted'])}), measured then {_pct(f0['measured_service'])} "
            f"(service), {_pct(f0['measured_kernel'])} (kernel)"
        )
    lines.append(
        f"demand A->B reached {_pct(p['peak_demand_ab'])} of A->B's capacity (first over "
        f"100 % at t={p['first_demand_over_capacity_t']}s); A->B itself peaked at "
        f"{_pct(p['peak_thin_kernel'])} (kernel)"
    )
    a = rep["applied"]
    if a is None:
        lines.append("applied: no plan was applied")
    else:
        lines += [
            f"decided on the step ending t={a['t']}s, applied at t={a['applied_t']}s "
            f"(plan {a['plan_id']}): predicted peak "
            f"{_pct(a['predicted_peak'])}, measured {_pct(a['thin_utilisation_measured'])} "
            "(kernel, the step before)",
            *(f"  {ln}" for ln in a["reason"].splitlines()),
            f"  route at A: {a['route_at_A']}",
        ]
    m = rep["moved"]
    if m:
        lines.append(f"kernel Mbit/s before -> after: {m['before_mbps']} -> {m['after_mbps']}")
    for f in rep["faults"]:
        verdict = "routes unchanged" if f["routes_unchanged"] else f"CHANGED in {f['differs']}"
        lines.append(f"fault {f['kind']} at t={f['t']}s: {f['action']}, {verdict}")
    sh = rep["shadow"]
    lines.append(
        f"shadow: {sh['tunnels_opened']} tunnel(s) opened, {sh['probe_rows']} probe row(s) "
        f"over {len(sh['tunnels_probed'])} tunnel(s), median RTT {sh['rtt_ms_median']} ms"
    )
    fl = rep["flows"]
    lines.append(
        f"flows: {fl['records']} records, {fl['mapped_records']} mapped, unmapped "
        f"{fl['unmapped_records']}; service / kernel edge bytes = {fl['service_over_kernel']}"
    )
    for e in rep.get("errors", []):
        lines.append(f"demo error: {e}")
    if rep["traffic_failed"]:
        lines.append(f"traffic clients that failed: {rep['traffic_failed']}")
    return lines
