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
``[0.2, 2] x alpha_nominal``. New scores also enter a bounded ring buffer, so the score distribution
itself tracks drift.
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


class Calibrator:
    """Pooled normalised scores per calibrated horizon, with ACI-adjusted miscoverage."""

    def __init__(
        self, grid: I64, gamma: float = 0.02, capacity: int = 100_000, seed: int = 0
    ) -> None:
        self.grid = grid
        self.gamma = gamma
        self.capacity = capacity
        self._rng = np.random.default_rng(seed)
        self._scores: list[F64] = [np.zeros(0) for _ in grid]
        self._pos = [0 for _ in grid]
        self._cap = [capacity for _ in grid]
        self._alpha: dict[float, F64] = {}
        self._cache: dict[float, tuple[F64, F64]] = {}
        self._sorted: list[F64] = [np.zeros(0) for _ in grid]
        self._stale = [0 for _ in grid]
        self.refresh_every = 6  # re-sort a horizon's scores after this many online batches
        self.calibrated = False

    def fit(self, scores: Sequence[F64]) -> None:
        for g, s in enumerate(scores):
            s = s[np.isfinite(s)]
            if s.size > self.capacity:
                s = self._rng.choice(s, self.capacity, replace=False)
            self._scores[g] = s.astype(np.float64)
            self._pos[g] = 0
            self._cap[g] = max(s.size, 200)  # the online window spans the calibration window
        self.calibrated = all(s.size >= 20 for s in self._scores)
        self._sorted = [np.sort(s) for s in self._scores]
        self._cache.clear()

    def max_calibrated_step(self) -> int:
        """The longest grid horizon with enough scores (0: none); longer ones use the wide
        fallback quantiles."""
        ok = [int(h) for h, s in zip(self.grid, self._sorted, strict=True) if s.size >= 20]
        return max(ok, default=0)

    def alpha(self, level: float) -> F64:
        if level not in self._alpha:
            self._alpha[level] = np.full(len(self.grid), 1.0 - level / 100.0)
        return self._alpha[level]

    def quantiles(self, level: float) -> tuple[F64, F64]:
        """Lower/upper score quantiles per grid horizon for ``level`` (ACI-adjusted)."""
        if level in self._cache:
            return self._cache[level]
        nominal = 1.0 - level / 100.0
        a = np.clip(self.alpha(level), 0.2 * nominal, min(0.999, 2.0 * nominal))
        lo = np.empty(len(self.grid))
        hi = np.empty(len(self.grid))
        for g, s in enumerate(self._sorted):
            if s.size < 20:  # not calibrated: a wide symmetric fallback (reported)
                z = 4.0 * (level / 100.0) / (1.0 - level / 100.0) ** 0.25
                lo[g], hi[g] = -z, z
                continue
            k = s.size
            i_lo = int(np.clip(np.floor(a[g] / 2.0 * (k + 1)) - 1, 0, k - 1))
            i_hi = int(np.clip(np.ceil((1.0 - a[g] / 2.0) * (k + 1)) - 1, 0, k - 1))
            lo[g], hi[g] = min(float(s[i_lo]), 0.0), max(float(s[i_hi]), 0.0)
        self._cache[level] = (lo, hi)
        return lo, hi

    def observe(
        self, g: int, scores: F64, used: dict[float, tuple[float, float]], max_new: int
    ) -> None:
        """Realised scores for grid horizon ``g``; ``used`` = quantiles issued per level."""
        s = scores[np.isfinite(scores)]
        if s.size == 0:
            return
        for level, (qlo, qhi) in used.items():
            err = float(np.mean((s < qlo) | (s > qhi)))
            a = self.alpha(level)
            nominal = 1.0 - level / 100.0
            # feedback arrives h steps late: smaller steps for longer horizons (no
            # oscillation), and alpha stays within [0.2, 2] x nominal (no infinite intervals)
            a[g] += self.gamma / float(self.grid[g]) * (nominal - err)
            a[g] = min(max(a[g], 0.2 * nominal), 2.0 * nominal)
        if s.size > max_new:
            s = self._rng.choice(s, max_new, replace=False)
        buf, cap = self._scores[g], self._cap[g]
        if buf.size < cap:
            self._scores[g] = np.concatenate([buf, s])[-cap:]
        else:
            idx = (self._pos[g] + np.arange(s.size)) % cap
            buf[idx] = s
            self._pos[g] = int((self._pos[g] + s.size) % cap)
        self._stale[g] += 1
        if self._stale[g] >= self.refresh_every:
            self._sorted[g] = np.sort(self._scores[g])
            self._stale[g] = 0
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
