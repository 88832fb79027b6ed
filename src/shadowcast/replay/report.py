"""What a replay shows a capacity planner: busiest links, alerts with lead time, accuracy, plot."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from shadowcast.records import Alert
from shadowcast.replay.run import ReplayResult
from shadowcast.units import format_duration


@dataclass(frozen=True)
class AlertScore:
    alerts: int
    confirmed: int  # actual utilisation reached the threshold within the alert's window
    episodes: int  # times a link's actual utilisation crossed the threshold from below
    detected: int  # crossings announced by an alert issued before them, within the window
    lead_s_median: float


def score_alerts(
    result: ReplayResult, alerts: list[Alert], threshold: float, within_s: int
) -> AlertScore:
    step = result.demands.step
    times = result.demands.times.astype("datetime64[s]").astype(np.int64)
    t0 = int(times[0])
    idx = {name: i for i, name in enumerate(result.link_names)}
    util = result.util
    w = max(1, within_s // step)
    confirmed = 0
    by_link: dict[int, list[int]] = {}
    for a in alerts:
        i = idx[a.subject]
        t = (int(a.issued.astype("datetime64[s]").astype(np.int64)) - t0) // step
        by_link.setdefault(i, []).append(t)
        if (util[t + 1 : t + 1 + w, i] >= threshold).any():
            confirmed += 1
    over = util >= threshold
    starts = np.argwhere(over[1:] & ~over[:-1])
    episodes = detected = 0
    leads: list[int] = []
    warm = _first_forecast_step(result)
    for s1, i in starts:
        s = int(s1) + 1
        if s - w < warm:
            continue  # no forecast could have seen it coming
        episodes += 1
        issued = [t for t in by_link.get(int(i), []) if s - w <= t < s]
        if issued:
            detected += 1
            leads.append((s - min(issued)) * step)
    return AlertScore(
        alerts=len(alerts),
        confirmed=confirmed,
        episodes=episodes,
        detected=detected,
        lead_s_median=float(np.median(leads)) if leads else 0.0,
    )


def _first_forecast_step(result: ReplayResult) -> int:
    track = next(iter(result.tracks.values()))
    finite = np.asarray(np.isfinite(track.link_mean).any(axis=1))
    return int(np.argmax(finite)) if finite.any() else int(finite.shape[0])


def accuracy_rows(result: ReplayResult) -> list[dict[str, Any]]:
    rows = []
    for (model, hname), tr in result.tracks.items():
        row: dict[str, Any] = {
            "model": model,
            "horizon": hname,
            "nmae": tr.od_abs_err / tr.od_abs_actual if tr.od_abs_actual else float("nan"),
            "nmae_persistence": (
                tr.od_abs_err_persist / tr.od_abs_actual if tr.od_abs_actual else float("nan")
            ),
        }
        n = tr.count * result.demands.values.shape[1]
        for lv, c in tr.covered.items():
            row[f"coverage_{lv:g}"] = c / n if n else float("nan")
        # links: share of (step, link) at or below the predicted upper bound; the upper
        # bound of a two-sided L % interval is the (100 + L) / 2 % quantile
        for lv, up in tr.link_upper.items():
            ok = np.isfinite(up)
            row[f"link_upper_coverage_{lv:g}"] = (
                float((result.util[ok] <= up[ok] + 1e-12).mean()) if ok.any() else float("nan")
            )
        rows.append(row)
    return rows


def busiest(result: ReplayResult, k: int = 10) -> list[dict[str, Any]]:
    now = result.util[-1]
    h = "1h" if "1h" in result.last_prediction else next(iter(result.last_prediction), None)
    pred = result.last_prediction.get(h) if h else None
    upper = result.last_upper.get(h) if h else None
    order = np.argsort(-(pred if pred is not None else now))[:k]
    return [
        {
            "link": result.link_names[i],
            "capacity_mbps": float(result.capacity_mbps[i]),
            "util_now": float(now[i]),
            "util_peak_replay": float(result.util[:, i].max()),
            "util_pred_peak": float(pred[i]) if pred is not None else None,
            "util_pred_upper": float(upper[i]) if upper is not None else None,
            "horizon": h,
        }
        for i in order
    ]


def plot_busiest(result: ReplayResult, path: Path, horizon: str = "1h", k: int = 3) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    track = result.tracks.get((result.primary_model, horizon)) or next(iter(result.tracks.values()))
    top = np.argsort(-result.util.max(axis=0))[:k]
    times = result.demands.times.astype("datetime64[s]")
    fig, axes = plt.subplots(len(top), 1, figsize=(11, 2.8 * len(top)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, i in zip(axes, top, strict=True):
        ax.plot(times, 100 * result.util[:, i], color="black", lw=0.8, label="actual")
        ax.plot(
            times,
            100 * track.link_mean[:, i],
            color="tab:blue",
            lw=0.8,
            label=f"predicted {horizon} ahead ({result.primary_model})",
        )
        if track.link_upper:
            lv = max(track.link_upper)
            ax.fill_between(
                times,
                100 * track.link_mean[:, i],
                100 * track.link_upper[lv][:, i],
                color="tab:blue",
                alpha=0.2,
                lw=0,
                label=f"upper {lv:g} % bound",
            )
        ax.axhline(90, color="tab:red", ls="--", lw=0.8, label="90 % threshold")
        ax.set_ylabel("utilisation %")
        ax.set_title(f"{result.link_names[i]} ({result.capacity_mbps[i]:,.0f} Mbit/s)", fontsize=9)
    axes[0].legend(loc="upper left", fontsize=7, ncols=4)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def lead_text(seconds: float) -> str:
    return format_duration(int(seconds)) if seconds else "-"
