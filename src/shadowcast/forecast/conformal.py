"""Scale-aware split conformal intervals with adaptive conformal inference (ACI).

Nonconformity score of a forecast issued at origin ``o`` for step ``h`` of series ``i``::

    score = (y[o + h, i] - yhat[o, h, i]) / scale[o, h, i]

``scale`` is a per-series, per-horizon volatility known at the origin: an exponentially
weighted mean of ``|y[t] - y[t - h]|`` (the persistence error at that horizon) plus a small
floor relative to the series' mean level. Dividing by it makes scores comparable across
series of very different volume, so one pooled score set per horizon serves every series.

Intervals are ``yhat + scale * [q(alpha_t / 2), q(1 - alpha_t / 2)]`` (asymmetric quantiles
of the signed scores). ``alpha_t`` starts at the nominal ``1 - level / 100`` and follows
ACI (Gibbs & Candes 2021): ``alpha <- alpha + (gamma / h) * (alpha_nominal - err_t)`` where
``err_t`` is the fraction of series whose realised value fell outside the interval issued
``h`` steps earlier (the step shrinks with the feedback delay ``h``), kept within
``[0.2, 2] x alpha_nominal``. ``gamma`` is the forecaster's ``aci_gamma`` (0.8; it was 0.2,
under which the 1 h intervals on GEANT stayed 2-4 points too wide through the 17-hour test:
the members refitted after calibration, and ``auto``'s per-series weights, are better than
the pooled blend the scores came from). 0.8 brings GEANT's worst 1 h decile from 2 points
too wide (at 0.5) to 1.1. The link upper bounds built from these intervals are calibrated on
the links themselves (:mod:`~shadowcast.forecast.linkmap`), so how fast the OD widths move
no longer decides the links' coverage (at 0.5 the Abilene replay's 1 h, 80 % link bounds
held 0.930 against a nominal 0.90 without that calibration, at 0.8 0.935). New scores also
enter a bounded ring buffer, so the score distribution itself tracks drift.

Group-conditional (Mondrian) conformal: the scores, their quantiles and the ACI state are
kept per volume group of series (deciles of the mean |y| over the fitted history, groups of
ten series at least), so that coverage holds in every decile, not only pooled (a pooled
quantile over-covers the smooth big series and under-covers the bursty small ones). A
group with fewer than ``min_group`` scores at a horizon uses the pooled scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from shadowcast.records import F64

I64 = npt.NDArray[np.int64]

MAX_GRID = 24


def horizon_grid(max_h: int) -> I64:
    """Horizon steps at which intervals are calibrated (all up to 24, then log-spaced)."""
    if max_h <= MAX_GRID:
        return np.arange(1, max_h + 1, dtype=np.int64)
    g = np.unique(np.round(np.geomspace(1, max_h, MAX_GRID)).astype(np.int64))
    return g


def interp_grid(grid: I64, values: F64, hs: I64) -> F64:
    """Interpolate ``values[..., G]`` given at ``grid`` to steps ``hs`` (sqrt growth beyond)."""
    h = hs.astype(np.float64)
    g = grid.astype(np.float64)
    if len(grid) == 1:
        base = values[..., :1]
        return np.asarray(base * np.sqrt(h / g[0]), dtype=np.float64)
    idx = np.clip(np.searchsorted(g, h) - 1, 0, len(g) - 2)
    w = np.clip((h - g[idx]) / (g[idx + 1] - g[idx]), 0.0, 1.0)
    out = values[..., idx] * (1.0 - w) + values[..., idx + 1] * w
    beyond = h > g[-1]
    if beyond.any():
        out[..., beyond] = values[..., -1:] * np.sqrt(h[beyond] / g[-1])
    return np.asarray(out, dtype=np.float64)


def scale_floor(y: F64) -> F64:
    """Per-series floor: 1e-3 of the mean absolute level, and an absolute epsilon."""
    level = np.mean(np.abs(y), axis=0) if y.shape[0] else np.zeros(y.shape[1])
    glob = float(np.mean(level)) if level.size else 0.0
    return np.asarray(1e-3 * level + 1e-6 * glob + 1e-9, dtype=np.float64)


def ew_scales(y: F64, h: int, rate: float, start: int) -> F64:
    """EW mean of ``|y[t] - y[t-h]|`` for origins ``t = start .. T-1`` -> ``[T-start, n]``.

    The state is initialised from the mean over a warm-up window before ``start``.
    """
    T, n = y.shape
    start = max(start, 0)
    warm = max(start - int(5 / rate), h)
    if T <= h:
        return np.zeros((T - start, n))
    d = np.abs(y[warm:] - y[warm - h : T - h]) if warm < T else np.zeros((0, n))
    init = d[: max(1, start - warm)].mean(axis=0) if d.shape[0] else np.zeros(n)
    zi = ((1.0 - rate) * init)[None, :]
    s = lfilter([rate], [1.0, -(1.0 - rate)], d, axis=0, zi=zi)[0]
    full = np.empty((T - warm, n))
    full[:] = s
    # origins before warm+... (only when start < warm, i.e. very short history)
    if start >= warm:
        return np.asarray(full[start - warm :], dtype=np.float64)
    pad = np.repeat(init[None, :], warm - start, axis=0)
    return np.asarray(np.concatenate([pad, full]), dtype=np.float64)


def volume_groups(level: F64, n_groups: int) -> I64:
    """Group of each series by rank of ``level`` (mean |y|): ``n_groups`` near-equal groups,
    0 = smallest (the volume deciles ``evaluate`` reports, for ``n_groups = 10``)."""
    n = level.size
    k = max(1, min(int(n_groups), n))
    rank = np.argsort(np.argsort(level, kind="stable"), kind="stable")
    return np.asarray(np.minimum((rank * k) // max(1, n), k - 1), dtype=np.int64)


class Calibrator:
    """Normalised scores per calibrated horizon and per series group (Mondrian conformal:
    one score set per volume group, the pooled set where a group has fewer than
    ``min_group`` scores), with ACI-adjusted miscoverage per horizon and group.

    ``groups[i]`` is the group of warm series ``i`` (:func:`volume_groups`); without it
    every series is in group 0 (one pooled set). Quantiles are ``[G, K]`` (grid horizon,
    group); :meth:`per_series` maps them to ``[n, G]``."""

    def __init__(
        self,
        grid: I64,
        gamma: float = 0.02,
        capacity: int = 100_000,
        seed: int = 0,
        *,
        groups: I64 | None = None,
        min_group: int = 200,
    ) -> None:
        self.grid = grid
        self.gamma = gamma
        self.capacity = capacity
        self.min_group = int(min_group)
        self.groups = np.zeros(0, dtype=np.int64) if groups is None else groups
        self.K = int(self.groups.max()) + 1 if self.groups.size else 1
        self._rng = np.random.default_rng(seed)
        G, K = len(grid), self.K
        self._scores: list[list[F64]] = [[np.zeros(0) for _ in range(K)] for _ in grid]
        self._pos = np.zeros((G, K), dtype=np.int64)
        self._cap = np.full((G, K), capacity, dtype=np.int64)
        self._alpha: dict[float, F64] = {}
        self._cache: dict[float, tuple[F64, F64]] = {}
        self._sorted: list[list[F64]] = [[np.zeros(0) for _ in range(K)] for _ in grid]
        self._pooled: list[F64] = [np.zeros(0) for _ in grid]
        self._stale = [0 for _ in grid]
        self.refresh_every = 6  # re-sort a horizon's scores after this many online batches
        self.calibrated = False

    def _group_of(self, cols: I64 | None, m: int) -> I64:
        if not self.groups.size:
            return np.zeros(m, dtype=np.int64)
        return self.groups if cols is None else self.groups[cols]

    def fit(self, scores: Sequence[F64], cols: I64 | None = None) -> None:
        """``scores[g]``: ``[k, m]`` scores at grid horizon ``g`` of the series ``cols``
        (all warm series when None), NaN where unobserved; a 1-D array is one group."""
        per = max(200, self.capacity // self.K)
        for g, sc in enumerate(scores):
            s2 = sc if sc.ndim == 2 else sc[:, None]
            grp = self._group_of(cols, s2.shape[1]) if sc.ndim == 2 else np.zeros(1, np.int64)
            for k in range(self.K):
                s = s2[:, grp == k].ravel()
                s = s[np.isfinite(s)]
                if s.size > per:
                    s = self._rng.choice(s, per, replace=False)
                self._scores[g][k] = s.astype(np.float64)
                self._pos[g, k] = 0
                self._cap[g, k] = max(s.size, 200)  # the online window spans calibration
            self._resort(g)
        self.calibrated = all(p.size >= 20 for p in self._pooled)
        self._cache.clear()

    def _resort(self, g: int) -> None:
        self._sorted[g] = [np.sort(s) for s in self._scores[g]]
        self._pooled[g] = np.sort(np.concatenate(self._scores[g]))
        self._stale[g] = 0

    def max_calibrated_step(self) -> int:
        """The longest grid horizon with enough scores (0: none); longer ones use the wide
        fallback quantiles."""
        ok = [int(h) for h, s in zip(self.grid, self._pooled, strict=True) if s.size >= 20]
        return max(ok, default=0)

    def alpha(self, level: float) -> F64:
        """Miscoverage per grid horizon and group ``[G, K]`` (ACI state)."""
        if level not in self._alpha:
            self._alpha[level] = np.full((len(self.grid), self.K), 1.0 - level / 100.0)
        return self._alpha[level]

    def quantiles(self, level: float) -> tuple[F64, F64]:
        """Lower/upper score quantiles ``[G, K]`` for ``level`` (ACI-adjusted)."""
        if level in self._cache:
            return self._cache[level]
        nominal = 1.0 - level / 100.0
        a = np.clip(self.alpha(level), 0.2 * nominal, min(0.999, 2.0 * nominal))
        lo = np.empty((len(self.grid), self.K))
        hi = np.empty_like(lo)
        for g in range(len(self.grid)):
            for k in range(self.K):
                s = self._sorted[g][k]
                if s.size < self.min_group:
                    s = self._pooled[g]
                if s.size < 20:  # not calibrated: a wide symmetric fallback (reported)
                    z = 4.0 * (level / 100.0) / (1.0 - level / 100.0) ** 0.25
                    lo[g, k], hi[g, k] = -z, z
                    continue
                n = s.size
                i_lo = int(np.clip(np.floor(a[g, k] / 2.0 * (n + 1)) - 1, 0, n - 1))
                i_hi = int(np.clip(np.ceil((1.0 - a[g, k] / 2.0) * (n + 1)) - 1, 0, n - 1))
                lo[g, k], hi[g, k] = min(float(s[i_lo]), 0.0), max(float(s[i_hi]), 0.0)
        self._cache[level] = (lo, hi)
        return lo, hi

    def per_series(self, q: F64, n: int) -> F64:
        """Quantiles ``[G, K]`` as ``[n, G]`` for the ``n`` warm series."""
        return np.asarray(q[:, self._group_of(None, n)].T, dtype=np.float64)

    def observe(
        self, g: int, scores: F64, used: dict[float, tuple[F64, F64]], max_new: int
    ) -> None:
        """Realised scores ``[n]`` (NaN: unobserved) of every warm series for grid horizon
        ``g``; ``used`` = the quantiles ``[K]`` issued per level at that horizon."""
        fin = np.isfinite(scores)
        if not fin.any():
            return
        grp = self._group_of(None, scores.size)
        cnt = np.bincount(grp[fin], minlength=self.K).astype(np.float64)
        seen = cnt > 0
        for level, (qlo, qhi) in used.items():
            out = fin & ((scores < qlo[grp]) | (scores > qhi[grp]))
            err = np.bincount(grp[out], minlength=self.K) / np.maximum(cnt, 1.0)
            a = self.alpha(level)
            nominal = 1.0 - level / 100.0
            # feedback arrives h steps late: smaller steps for longer horizons (no
            # oscillation), and alpha stays within [0.2, 2] x nominal (no infinite intervals)
            step = self.gamma / float(self.grid[g]) * (nominal - err)
            a[g] = np.clip(a[g] + np.where(seen, step, 0.0), 0.2 * nominal, 2.0 * nominal)
        idx = np.flatnonzero(fin)
        if idx.size > max_new:
            idx = np.sort(self._rng.choice(idx, max_new, replace=False))
        for k in np.flatnonzero(np.bincount(grp[idx], minlength=self.K)):
            s = scores[idx[grp[idx] == k]]
            buf, cap = self._scores[g][k], int(self._cap[g, k])
            if buf.size < cap:
                self._scores[g][k] = np.concatenate([buf, s])[-cap:]
            else:
                at = (self._pos[g, k] + np.arange(s.size)) % cap
                buf[at] = s
                self._pos[g, k] = (self._pos[g, k] + s.size) % cap
        self._stale[g] += 1
        if self._stale[g] >= self.refresh_every:
            self._resort(g)
        self._cache.clear()


class GroupACI:
    """Interval widths kept honest per group (a volume decile, a drifted group), per step
    ahead and per level: adaptive conformal inference on the interval's width.

    Each (level, step ahead ``h``, group) has a width factor ``w = exp(log_w)`` applied to
    the interval's half-widths around the mean. When the realised values of a target step
    arrive, the miss rate of every group's series at that step ahead moves ``log_w`` by
    ``gamma * (miss - alpha)`` (``alpha = 1 - level / 100``): widths grow while the group
    misses more often than it should and shrink while it misses less, so that coverage
    holds per group, not only overall (Gibbs & Candes 2021, on a log-width scale). The
    factors stay within ``[1 / max_factor, max_factor]``.
    """

    def __init__(
        self,
        levels: Sequence[float],
        horizon: int,
        n_groups: int,
        *,
        gamma: float = 0.05,
        max_factor: float = 5.0,
    ) -> None:
        self.levels = tuple(float(x) for x in levels)
        self.horizon = int(horizon)
        self.n_groups = int(n_groups)
        self.gamma = float(gamma)
        self.bound = float(np.log(max_factor))
        self.log_w = {lv: np.zeros((self.horizon, self.n_groups)) for lv in self.levels}

    def factors(self, level: float, groups: I64) -> F64:
        """Width factors ``[n_series, horizon]`` for series in ``groups`` (-1: none, 1)."""
        lw = self.log_w.get(float(level))
        if lw is None:
            return np.ones((groups.size, self.horizon))
        ok = groups >= 0
        out = np.zeros((groups.size, self.horizon))
        out[ok] = lw[:, groups[ok]].T
        return np.asarray(np.exp(out), dtype=np.float64)

    def observe(self, level: float, h: int, groups: I64, inside: npt.NDArray[np.bool_]) -> None:
        """Whether each series' actual fell inside its ``level`` interval issued ``h`` steps
        before (1-based); series of group -1, or with a NaN outcome, are skipped."""
        lw = self.log_w.get(float(level))
        if lw is None or not 1 <= h <= self.horizon:
            return
        ok = groups >= 0
        if not ok.any():
            return
        g = groups[ok]
        count = np.bincount(g, minlength=self.n_groups).astype(np.float64)
        miss = np.bincount(g, weights=(~inside[ok]).astype(np.float64), minlength=self.n_groups)
        seen = count > 0
        alpha = 1.0 - float(level) / 100.0
        rate = np.where(seen, miss / np.maximum(count, 1.0), alpha)
        row = lw[h - 1]
        row += self.gamma * (rate - alpha)
        np.clip(row, -self.bound, self.bound, out=row)

    def reset(self, groups: Sequence[int] | None = None) -> None:
        for lw in self.log_w.values():
            if groups is None:
                lw[:] = 0.0
            else:
                lw[:, list(groups)] = 0.0
