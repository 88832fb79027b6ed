"""What a replay shows a capacity planner: the closed loop against doing nothing, the busiest
links now and predicted, the alerts with their lead time, forecast accuracy, a plot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shadowcast.records import F64, Alert
from shadowcast.replay.driver import ReplayRun
from shadowcast.units import format_duration

OVERLOAD_NOTE = (
    "traffic above a link's capacity is not carried: it counts as overload "
    "(link-minutes above 100 %) and as excess (Mbit the link could not carry in that step, "
    "which a real network drops or queues); shaping holds a class's traffic back and "
    "releases it later (delayed, not lost) unless it waits longer than the shaper's limit "
    "(lost)"
)


@dataclass(frozen=True)
class AlertScore:
    alerts: int
    confirmed: int  # utilisation reached the threshold within the alert's window
    episodes: int  # times a link's utilisation crossed the threshold from below
    detected: int  # crossings announced by an alert issued before them, within the window
    lead_s_median: float


def score_alerts(
    util: F64, times_s: np.ndarray, alerts: list[Alert], link_names: list[str],
    threshold: float, within_s: int, step: int, first_forecast: int,
) -> AlertScore:  # fmt: skip
    """Alerts against the utilisation ``util[T, L]`` they predicted."""
    t0 = int(times_s[0])
    idx = {name: i for i, name in enumerate(link_names)}
    w = max(1, within_s // step)
    confirmed = 0
    by_link: dict[int, list[int]] = {}
    for a in alerts:
        i = idx[a.subject]
        t = (int(a.issued.astype("datetime64[s]").astype(np.int64)) - t0) // step - 1
        by_link.setdefault(i, []).append(t)
        if (util[t + 1 : t + 1 + w, i] >= threshold).any():
            confirmed += 1
    over = np.nan_to_num(util) >= threshold
    starts = np.argwhere(over[1:] & ~over[:-1])
    episodes = detected = 0
    leads: list[int] = []
    for s1, i in starts:
        s = int(s1) + 1
        if s - w < first_forecast:
            continue  # no forecast could have seen it coming
        episodes += 1
        issued = [t for t in by_link.get(int(i), []) if s - w <= t < s]
        if issued:
            detected += 1
            leads.append((s - min(issued)) * step)
    return AlertScore(
        len(alerts), confirmed, episodes, detected, float(np.median(leads)) if leads else 0.0
    )


def closed_loop(run: ReplayRun) -> dict[str, Any]:
    """The headline: the same traffic with and without the service acting."""
    st = run.state
    base = st.baseline.totals.as_dict(st.baseline.queued_mbit)
    act = st.acting.totals.as_dict(st.acting.queued_mbit)
    a = run.actuator
    act.update(
        {
            "path_switches": a.path_switches,
            "reservations": a.reservations,
            "shaping_changes": a.shaping_changes,
            "plans_applied": a.applied,
            "rollbacks": a.rolled_back,
        }
    )
    b100 = base["overload_link_minutes_100"]
    ratio = act["overload_link_minutes_100"] / b100 if b100 else None
    first = _first_forecast(run)
    warm = {
        "after_warmup_baseline": _overload_minutes(st.util_baseline[first:], run.source.step_s),
        "after_warmup_acting": _overload_minutes(st.util_acting[first:], run.source.step_s),
    }
    return {
        "baseline": base,
        "acting": act,
        "overload_ratio": ratio,
        "warmup_steps": first,
        "overload_link_minutes_100": warm,
        "what_happens_above_capacity": OVERLOAD_NOTE,
    }


def _overload_minutes(util: F64, step: int) -> float:
    return float((np.nan_to_num(util) > 1.0).sum() * step / 60.0)


def _first_forecast(run: ReplayRun) -> int:
    preds = list(run.state.pred_util.values())
    if not preds:
        return run.source.steps
    finite = np.isfinite(preds[0]).any(axis=1)
    h = min(run.state.pred_util)
    return max(0, int(np.argmax(finite)) - h) if finite.any() else run.source.steps


def accuracy_rows(run: ReplayRun) -> list[dict[str, Any]]:
    rows = []
    for r in run.service.s.ledger.summary():
        if r["kind"] != "od":
            continue
        row = {k: v for k, v in r.items() if k != "kind"}
        link = next(
            (x for x in run.service.s.ledger.summary(["link"]) if x["horizon"] == r["horizon"]),
            None,
        )
        if link is not None:
            for k, v in link.items():
                if k.startswith("upper_coverage_"):
                    row[f"link_{k}"] = v
        rows.append(row)
    return rows


def busiest(run: ReplayRun, k: int = 10) -> list[dict[str, Any]]:
    svc = run.service
    names = svc.link_names
    util = run.state.util_acting
    last = int(np.flatnonzero(np.isfinite(util).any(axis=1)).max(initial=0))
    now = np.nan_to_num(util[last])
    link = svc.last.link if svc.last is not None else None
    h = max(svc.s.horizons.values()) if svc.s.horizons else 1
    label = next((lb for lb, v in svc.s.horizons.items() if v == h), "")
    pred = link.util[:, :h].max(axis=1) if link is not None else None
    top = max(link.upper) if link is not None and link.upper else None
    upper = np.nanmax(link.util_upper(top)[:, :h], axis=1) if link is not None and top else None
    order = np.argsort(-(pred if pred is not None else now))[:k]
    cap = run.source.topology.capacities / 1e6
    return [
        {
            "link": names[i],
            "capacity_mbps": float(cap[i]),
            "util_now": float(now[i]),
            "util_peak_replay": float(np.nanmax(util[:, i])),
            "util_peak_baseline": float(np.nanmax(run.state.util_baseline[:, i])),
            "util_pred_peak": float(pred[i]) if pred is not None else None,
            "util_pred_upper": float(upper[i]) if upper is not None else None,
            "horizon": label,
        }
        for i in order
    ]


def plot_busiest(run: ReplayRun, path: Path, k: int = 3) -> Path | None:
    try:
        import matplotlib
    except ImportError:
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    st = run.state
    h = max(st.pred_util) if st.pred_util else None
    names = run.service.link_names
    top = np.argsort(-np.nan_to_num(st.util_baseline).max(axis=0))[:k]
    times = run.source.demands.times.astype("datetime64[s]")
    fig, axes = plt.subplots(len(top), 1, figsize=(11, 2.9 * len(top)), sharex=True)
    axes = np.atleast_1d(axes)
    label = format_duration(h * run.source.step_s) if h else ""
    for ax, i in zip(axes, top, strict=True):
        ax.plot(times, 100 * st.util_baseline[:, i], color="0.6", lw=0.7, label="no action")
        ax.plot(times, 100 * st.util_acting[:, i], color="black", lw=0.8, label="with shadowcast")
        if h is not None:
            pred = st.pred_util[h][:, i]
            ax.plot(times, 100 * pred, color="tab:blue", lw=0.8, label=f"predicted {label} ahead")
            if h in st.pred_upper:
                ax.fill_between(
                    times, 100 * pred, 100 * st.pred_upper[h][:, i],
                    color="tab:blue", alpha=0.2, lw=0, label="upper bound",
                )  # fmt: skip
        ax.axhline(100, color="tab:red", ls="-", lw=0.6)
        ax.axhline(90, color="tab:red", ls="--", lw=0.8, label="90 % threshold")
        ax.set_ylabel("utilisation %")
        cap = run.source.topology.capacities[i] / 1e6
        ax.set_title(f"{names[i]} ({cap:,.0f} Mbit/s)", fontsize=9)
    axes[0].legend(loc="upper left", fontsize=7, ncols=5)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def lead_text(seconds: float) -> str:
    return format_duration(int(seconds)) if seconds else "-"


def build_report(run: ReplayRun, threshold: float, within_s: int, store: str) -> dict[str, Any]:
    st = run.state
    src = run.source
    times_s = src.demands.times.astype("datetime64[s]").astype(np.int64)
    names = run.service.link_names
    first = _first_forecast(run)
    acting = score_alerts(
        st.util_acting, times_s, st.alerts, names, threshold, within_s, src.step_s, first
    )
    base = score_alerts(
        st.util_baseline, times_s, st.alerts, names, threshold, within_s, src.step_s, first
    )
    health = run.service.health()
    return {
        "topology": src.topology.name,
        "source": src.name,
        "steps": st.next_t,
        "steps_total": src.steps,
        "interrupted": run.interrupted,
        "step_s": src.step_s,
        "od_pairs": len(src.demands.od_pairs),
        "links": len(src.topology.links),
        "kinds": list(src.kinds),
        "total_mbit": float(src.demands.values[: st.next_t].sum(dtype=np.float64)),
        "seconds": round(run.seconds, 3),
        "service_seconds": round(st.service_seconds, 3),
        "stage_seconds": health["stage_seconds"],
        "store": store,
        "closed_loop": closed_loop(run),
        "alerts": acting.alerts,
        "alerts_confirmed": acting.confirmed,
        "alerts_confirmed_without_action": base.confirmed,
        "overload_episodes": acting.episodes,
        "overload_episodes_alerted": acting.detected,
        "overload_episodes_without_action": base.episodes,
        "overload_episodes_without_action_alerted": base.detected,
        "alert_lead_s_median": base.lead_s_median,
        "decisions": st.decisions,
        "actions": st.actions[-50:],
        "accuracy": accuracy_rows(run),
        "busiest_links": busiest(run),
        "rollup": health["stages"]["rollup"],
        "shadow": health["stages"]["shadow"],
        "feedback": health["stages"]["feedback"],
        "model": run.service.s.forecast.model_name,
        "model_version": run.service.s.forecast.version,
        "collector": run.collector,
        "feed": {
            "records_sent": st.feed.records_sent,
            "records_processed": run.service.s.intake.stats.records,
            "waits_timed_out": st.feed.waits_timed_out,
            "seconds": round(st.feed.seconds, 3),
        },
    }
