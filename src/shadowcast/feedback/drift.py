"""Drift detection on scaled forecast errors, per series group, vectorised over groups.

Each step brings the one-step-ahead error of every series (``actual - forecast``), taken
relative to the forecast (plus 5 % of the series' usual level, so that near-empty series do
not speak loudest) and scaled by the series' own typical relative error (an exponentially
weighted mean, at least 1 %), so that every series speaks in the same unit at any hour.
Series belong to groups (a routing class at a source site, at a destination site, across
the whole backbone; a link): a many-to-many membership given once as (series index, group
index) pairs. Per group and step, the statistic is the mean scaled error of its series,
standardised by its own running mean and mean absolute deviation (learnt while the group is
quiet; the deviation floored at ``min_spread`` typical errors, so that a group whose errors
were unusually calm is not flagged for ordinary noise; for a group of more than
``spread_size`` series the floor shrinks as one over the square root of its size, as the
noise of a mean does, so that a change small on each series but common to all of them,
a holiday, is seen).

The test is Page-Hinkley, two-sided, in its recursive (CUSUM) form::

    g_up   = max(0, g_up   + u - delta)        u: the standardised group statistic
    g_down = max(0, g_down - u - delta)
    drift when g_up > lambda or g_down > lambda

``delta`` is the change tolerated (in standard units), ``lambda`` the evidence needed. A
group that drifted is reset and stays quiet for ``cooldown_steps`` (the models adapt in the
meantime); its baseline is not learnt from the drifted steps. When the errors change for a
known reason (another model version forecasts), :meth:`DriftDetector.rebase` learns every
group's baseline again over ``rebase_steps`` quiet steps: a refit that removes a bias is not
a drift.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from shadowcast.records import F64

I64 = npt.NDArray[np.int64]
_CLIP = 50.0  # one step moves a detector by at most this many standard units
_MIN_REL = 0.01  # a series' typical relative error is taken as at least 1 %


@dataclass(frozen=True, slots=True)
class DriftEvent:
    """Group ``group`` drifted at the step starting ``time_s``: ``direction`` +1 (actuals
    above the forecasts) or -1; ``statistic`` the detector's value, ``series`` how many of
    the group's series, ``scaled_error`` their mean scaled error at that step."""

    time_s: int
    kind: str
    group: str
    direction: int
    statistic: float
    scaled_error: float
    series: int
    members: I64

    def as_dict(self) -> dict[str, Any]:
        return {
            "time_s": self.time_s,
            "kind": self.kind,
            "group": self.group,
            "direction": self.direction,
            "statistic": round(self.statistic, 3),
            "scaled_error": round(self.scaled_error, 3),
            "series": self.series,
        }


class DriftDetector:
    """Page-Hinkley over the groups of one kind of series (see the module docstring)."""

    def __init__(
        self,
        kind: str,
        n_series: int,
        members: tuple[I64, I64],
        group_names: Sequence[str],
        *,
        delta: float = 1.0,
        threshold: float = 12.0,
        min_steps: int = 24,
        cooldown_steps: int = 24,
        scale_rate: float = 0.02,
        baseline_rate: float = 0.02,
        min_spread: float = 0.75,
        spread_size: float = float("inf"),
        rebase_steps: int = 12,
    ) -> None:
        self.kind = kind
        self.n = int(n_series)
        self.series_idx = np.asarray(members[0], dtype=np.int64)
        self.group_idx = np.asarray(members[1], dtype=np.int64)
        self.names = list(group_names)
        g = len(self.names)
        self.delta = float(delta)
        self.threshold = float(threshold)
        self.min_steps = int(min_steps)
        self.cooldown_steps = int(cooldown_steps)
        self.scale_rate = float(scale_rate)
        self.baseline_rate = float(baseline_rate)
        self.min_spread = float(min_spread)
        self.rebase_steps = int(rebase_steps)
        self.size = np.bincount(self.group_idx, minlength=g).astype(np.float64)
        shrink = np.sqrt(np.minimum(1.0, float(spread_size) / np.maximum(self.size, 1.0)))
        self.floor = self.min_spread * shrink  # per group
        self.scale = np.full(self.n, np.nan)  # EW |e| per series
        self.level = np.full(self.n, np.nan)  # EW |y| per series (the floor)
        self.seen = np.zeros(self.n)  # steps each series' scale learnt from
        self.mu = np.zeros(g)
        self.mad = np.full(g, np.nan)
        self.up = np.zeros(g)
        self.down = np.zeros(g)
        self.quiet = np.zeros(g, dtype=np.int64)  # cooldown steps left
        self.relearn = np.zeros(g, dtype=np.int64)  # steps left learning a new baseline
        self.learnt = np.zeros(g)  # steps each group's baseline learnt from
        self.steps = 0
        self.last_u = np.zeros(g)

    def update(self, t_s: int, actual: F64, forecast: F64) -> list[DriftEvent]:
        """One step's actuals and the one-step-ahead forecasts made for them."""
        yhat = np.asarray(forecast, dtype=np.float64)
        e = np.asarray(actual, dtype=np.float64) - yhat
        ok = np.isfinite(e)
        y = np.abs(np.nan_to_num(np.asarray(actual, dtype=np.float64)))
        fresh = ~np.isfinite(self.level) & ok
        self.level[fresh] = y[fresh]
        # relative errors (traffic's noise grows with its level through the day), on a base
        # that keeps near-empty series from speaking loudest
        mean_level = float(np.nanmean(self.level)) if np.isfinite(self.level).any() else 0.0
        base = np.abs(np.nan_to_num(yhat)) + 0.05 * np.nan_to_num(self.level)
        base = base + 1e-3 * mean_level + 1e-9
        rel = np.where(ok, e / base, 0.0)
        a = np.abs(rel)
        first = ~np.isfinite(self.scale) & ok
        self.scale[first] = a[first]
        z = np.where(ok, rel / np.maximum(np.nan_to_num(self.scale), _MIN_REL), np.nan)
        z = np.clip(z, -_CLIP, _CLIP)
        stat, used = self._group_mean(z)
        events = self._detect(t_s, stat, used)
        # the series' scales learn after the step is judged (a shift is seen at full size):
        # a running mean at first, then exponentially weighted
        learn = ok & np.isfinite(self.scale) & ~first
        self.seen[ok] += 1
        r = np.maximum(self.scale_rate, 1.0 / np.maximum(self.seen, 1.0))[learn]
        self.scale[learn] += r * (a[learn] - self.scale[learn])
        self.level[learn] += r * (y[learn] - self.level[learn])
        return events

    def _group_mean(self, z: F64) -> tuple[F64, F64]:
        g = len(self.names)
        zs = z[self.series_idx]
        ok = np.isfinite(zs)
        total = np.bincount(self.group_idx[ok], weights=zs[ok], minlength=g)
        count = np.bincount(self.group_idx[ok], minlength=g).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(count > 0, total / np.maximum(count, 1.0), np.nan), count

    def _detect(self, t_s: int, stat: F64, used: F64) -> list[DriftEvent]:
        self.steps += 1
        seen = np.isfinite(stat)
        fresh = seen & ~np.isfinite(self.mad)
        self.mu[fresh], self.mad[fresh] = stat[fresh], 0.0
        spread = np.maximum(1.25 * np.nan_to_num(self.mad), self.floor)
        u = np.where(seen, np.clip((stat - self.mu) / spread, -_CLIP, _CLIP), 0.0)
        self.last_u = u
        armed = self.steps > self.min_steps
        self.up = np.maximum(0.0, self.up + u - self.delta)
        self.down = np.maximum(0.0, self.down - u - self.delta)
        relearning = self.relearn > 0
        calm = (self.quiet > 0) | relearning | (not armed)  # no evidence meanwhile
        self.up[calm] = 0.0
        self.down[calm] = 0.0
        hit = armed & seen & ((self.up > self.threshold) | (self.down > self.threshold))
        events = []
        for gi in map(int, np.flatnonzero(hit)):
            direction = 1 if self.up[gi] >= self.down[gi] else -1
            members = self.series_idx[self.group_idx == gi]
            events.append(
                DriftEvent(
                    t_s,
                    self.kind,
                    self.names[gi],
                    direction,
                    float(max(self.up[gi], self.down[gi])),
                    float(stat[gi]),
                    int(used[gi]),
                    members,
                )  # fmt: skip
            )
        self.up[hit] = 0.0
        self.down[hit] = 0.0
        self.quiet = np.where(hit, self.cooldown_steps, np.maximum(self.quiet - 1, 0))
        # the baseline learns from every warm-up or relearning step, then only from quiet,
        # unremarkable ones: a running mean at first, then exponentially weighted
        usual = (self.quiet == 0) & ((np.abs(u) < 4.0) | (not armed))
        learn = seen & ~hit & (usual | relearning)
        self.relearn = np.maximum(self.relearn - 1, 0)
        self.learnt[learn] += 1
        dev = np.abs(stat - self.mu)
        k = np.maximum(self.baseline_rate, 1.0 / np.maximum(self.learnt, 1.0))
        self.mu[learn] += k[learn] * (stat[learn] - self.mu[learn])
        self.mad[learn] += k[learn] * (dev[learn] - self.mad[learn])
        return events

    def rebase(self) -> None:
        """Every group's errors change for a known reason (another model version): their
        baselines are learnt again over ``rebase_steps`` steps, without evidence meanwhile."""
        if self.rebase_steps <= 0:
            return
        self.mad[:] = np.nan  # the next step seen starts the baseline again
        self.learnt[:] = 0.0
        self.up[:] = 0.0
        self.down[:] = 0.0
        self.relearn[:] = self.rebase_steps

    def hold(self, groups: I64) -> None:
        """Groups whose series changed for a known reason (the routing moved their load):
        the evidence gathered so far goes and they stay quiet for ``cooldown_steps``, as
        after a drift, while their models settle."""
        self.up[groups] = 0.0
        self.down[groups] = 0.0
        self.quiet[groups] = self.cooldown_steps

    # -- persistence -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "scale": self.scale,
            "level": self.level,
            "mu": self.mu,
            "mad": self.mad,
            "up": self.up,
            "down": self.down,
            "quiet": self.quiet,
            "relearn": self.relearn,
            "learnt": self.learnt,
            "steps": self.steps,
            "seen": self.seen,
        }

    def load_state(self, st: dict[str, Any]) -> bool:
        scale, mu = np.asarray(st.get("scale", ())), np.asarray(st.get("mu", ()))
        if scale.shape != (self.n,) or mu.shape != self.mu.shape:
            return False
        for k in ("scale", "level", "mu", "mad", "up", "down"):
            setattr(self, k, np.asarray(st[k], dtype=np.float64).copy())
        self.quiet = np.asarray(st["quiet"], dtype=np.int64).copy()
        g = self.mu.shape
        self.relearn = np.asarray(st.get("relearn", np.zeros(g)), dtype=np.int64).copy()
        self.learnt = np.asarray(st.get("learnt", np.full(g, 1e9)), dtype=np.float64).copy()
        self.steps = int(st["steps"])
        self.seen = np.asarray(st.get("seen", np.zeros(self.n)), dtype=np.float64).copy()
        return True


def site_groups(
    classes: Sequence[str], od_pairs: Sequence[tuple[str, str]], *, backbone: bool = False
) -> tuple[tuple[I64, I64], list[str]]:
    """Membership of the stacked (class-major) class x OD series in the groups "class at
    source site" (``high@A>``), "class at destination site" (``high@>B``) and, with
    ``backbone``, "class across the backbone" (``high@*``)."""
    n_od = len(od_pairs)
    nodes = sorted({a for a, _ in od_pairs} | {b for _, b in od_pairs})
    ni = {n: i for i, n in enumerate(nodes)}
    src = np.array([ni[a] for a, _ in od_pairs], dtype=np.int64)
    dst = np.array([ni[b] for _, b in od_pairs], dtype=np.int64)
    series: list[I64] = []
    groups: list[I64] = []
    names: list[str] = []
    for c_i, c in enumerate(classes):
        idx = c_i * n_od + np.arange(n_od, dtype=np.int64)
        base = len(names)
        names += [f"{c}@{n}>" for n in nodes] + [f"{c}@>{n}" for n in nodes]
        series += [idx, idx]
        groups += [base + src, base + len(nodes) + dst]
        if backbone:
            names.append(f"{c}@*")
            series.append(idx)
            groups.append(np.full(n_od, base + 2 * len(nodes), dtype=np.int64))
    return (np.concatenate(series), np.concatenate(groups)), names


def single_groups(names: Sequence[str]) -> tuple[tuple[I64, I64], list[str]]:
    """Every series its own group (links)."""
    idx = np.arange(len(names), dtype=np.int64)
    return (idx, idx.copy()), list(names)
