"""A fast statistical model: daily seasonal profile + damped, exponentially weighted level.

For series ``i``, with ``S[p]`` the recency-weighted mean of past days at time-of-day phase
``p`` (circularly smoothed) and ``e[t] = y[t] - S[phase(t)]``::

    L[t] = a * e[t] + (1 - a) * L[t-1]             (EW deviation from the profile)
    M[t] = mean of e over the last day              (recent offset from the profile)
    seasonal = S[phase(t + h)] + phi ** h * L[t] + (1 - phi ** h) * M[t]
    yhat[t + h] = b * seasonal + (1 - b) * (S[phase(t)] + L[t])   (smoothed persistence)

With ``a = 1, phi = 1, b = 1`` this is persistence plus the profile's change between now and
the target time; ``b = 0`` is exponential smoothing of the level. ``(a, phi, b)`` is chosen
per horizon from a small grid by the scale-normalised
absolute error over the last part of the training history (pooled over series, so a
noisy small series cannot dominate). With less than one day of history ``S`` is flat
(the series mean), so the model degrades gracefully to a smoothed persistence.
Everything is vectorised over series; the time recursions run through ``scipy.signal.lfilter``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from shadowcast.forecast.conformal import ew_scales
from shadowcast.forecast.core import BaseForecaster
from shadowcast.records import F64

I64 = npt.NDArray[np.int64]

ALPHAS = (1.0, 0.6, 0.3)
PHIS = (1.0, 0.9, 0.7)
BETAS = (0.0, 0.5, 1.0)


def daily_profile(y: F64, phase0: int, season: int, decay: float = 0.7) -> F64:
    """Recency-weighted mean per phase -> ``[season, n]`` (flat mean if < one season)."""
    T, n = y.shape
    if T < season or season < 2:
        return np.repeat(y.mean(axis=0, keepdims=True), max(season, 1), axis=0)
    pad_front = phase0 % season
    total = pad_front + T
    days = -(-total // season)
    full = np.full((days * season, n), np.nan)
    full[pad_front : pad_front + T] = y
    cube = full.reshape(days, season, n)
    age = (days - 1 - np.arange(days)).astype(np.float64)
    w = (decay**age)[:, None, None] * np.isfinite(cube)
    prof = np.nansum(np.nan_to_num(cube) * w, axis=0) / np.maximum(w.sum(axis=0), 1e-12)
    return circular_smooth(prof, 1 if season < 96 else 2)


def circular_smooth(s: F64, k: int) -> F64:
    """Mean over +-``k`` phases of a per-phase ``s[season, n]``, wrapping around the day."""
    if k < 1:
        return np.asarray(s, dtype=np.float64)
    ext = np.concatenate([s[-k:], s, s[:k]])
    c = np.cumsum(np.concatenate([np.zeros((1, s.shape[1])), ext]), axis=0)
    return np.asarray((c[2 * k + 1 :] - c[: -2 * k - 1]) / (2 * k + 1), dtype=np.float64)


class ProfileEW(BaseForecaster):
    """Seasonal profile + damped EW level; ``(a, phi)`` selected per horizon."""

    name = "profile"

    def __init__(
        self,
        horizons: Sequence[str | int] = ("15m", "1h"),
        *,
        alphas: Sequence[float] = ALPHAS,
        phis: Sequence[float] = PHIS,
        betas: Sequence[float] = BETAS,
        **kw: Any,
    ) -> None:
        super().__init__(horizons, **kw)
        self.alphas = tuple(alphas)
        self.phis = tuple(phis)
        self.betas = tuple(betas)

    def _phase(self, idx: I64) -> I64:
        return np.asarray((self.time_of(idx) // self.step) % self._season, dtype=np.int64)

    def _fit_model(self, y: F64) -> None:
        self._season = max(1, 86400 // self.step)
        T, n = y.shape
        sel = min(max(1, self._season), T // 3)
        # per grid horizon: (alpha idx, phi idx, beta idx)
        self._choice = np.zeros((len(self.grid), 3), dtype=np.int64)
        self._choice[:, 2] = 0
        if sel >= 4:
            self._prof = daily_profile(
                y[: T - sel], int(self._phase(np.zeros(1, np.int64))[0]), self._season
            )
            self._select(y, T - sel - 1)
        self._prof = daily_profile(y, int(self._phase(np.zeros(1, np.int64))[0]), self._season)

    def _min_history(self) -> int:
        return self._season + int(8 / min(self.alphas)) + 2

    def _levels(self, y: F64, a: float, lo: int, hi: int, cols: I64 | None) -> tuple[F64, F64]:
        """EW level ``L`` and last-day mean ``M`` of the deviation at rows ``lo..hi``."""
        sub = y if cols is None else y[:, cols]
        prof = self._prof if cols is None else self._prof[:, cols]
        warm = max(0, lo - max(int(8 / a), self._season))
        idx = np.arange(warm, hi + 1, dtype=np.int64)
        e = sub[warm : hi + 1] - prof[self._phase(idx)]
        if lo == hi:  # one origin (every online step): the same sums as one weighted dot
            return self._level_at_end(e, a)
        if a >= 1.0:
            lev = e
        else:
            zi = ((1.0 - a) * e[0])[None, :]
            lev = lfilter([a], [1.0, -(1.0 - a)], e, axis=0, zi=zi)[0]
        c = np.cumsum(np.concatenate([np.zeros((1, e.shape[1])), e]), axis=0)
        r = np.arange(lo - warm, hi - warm + 1)
        start = np.maximum(r + 1 - self._season, 0)
        mean = (c[r + 1] - c[start]) / (r + 1 - start)[:, None]
        return np.asarray(lev[lo - warm :], dtype=np.float64), np.asarray(mean)

    def _level_at_end(self, e: F64, a: float) -> tuple[F64, F64]:
        """``_levels`` at the last row of ``e`` only: the EW recursion unrolled into weights
        (``a (1-a)^j`` on ``e[-1-j]``, ``(1-a)^k`` on the first row, as ``lfilter`` started
        with ``zi = (1-a) e[0]`` gives) and the mean of the last ``season`` rows."""
        k = e.shape[0]
        if a >= 1.0:
            lev = e[-1]
        else:
            w = a * (1.0 - a) ** np.arange(k - 1, -1, -1, dtype=np.float64)
            w[0] += (1.0 - a) ** k  # the start value (1 - a) e[0], decayed k - 1 more times
            lev = w @ e
        mean = e[max(0, k - self._season) :].mean(axis=0)
        return np.asarray(lev[None, :], dtype=np.float64), np.asarray(mean[None, :])

    def _select(self, y: F64, first: int) -> None:
        T, n = y.shape
        rng = np.random.default_rng(self.seed)
        cols = np.sort(rng.choice(n, 2000, replace=False)) if n > 2000 else None
        origins = np.arange(first, T - 1, dtype=np.int64)
        sub = y if cols is None else y[:, cols]
        floor = 1e-3 * np.abs(sub).mean(axis=0) + 1e-9
        levs = [self._levels(y, a, int(origins[0]), int(origins[-1]), cols) for a in self.alphas]
        for g, h in enumerate(self.grid):
            o = origins[origins + h <= T - 1]
            if o.size == 0:
                continue
            scale = ew_scales(sub, int(h), 0.05, int(o[0]))[: o.size] + floor
            prof = self._prof if cols is None else self._prof[:, cols]
            seas = prof[self._phase(o + h)]
            now = prof[self._phase(o)]
            actual = sub[o + h]
            best, arg = np.inf, (0, 0, 0)
            for ai, (lev, mean) in enumerate(levs):
                lv, mv = lev[: o.size], mean[: o.size]
                for pi, phi in enumerate(self.phis):
                    w = phi ** float(h)
                    fs = seas + w * lv + (1.0 - w) * mv
                    for bi, b in enumerate(self.betas):
                        fc = b * fs + (1.0 - b) * (now + lv)
                        err = float(np.mean(np.abs(actual - fc) / scale))
                        if err < best:
                            best, arg = err, (ai, pi, bi)
            self._choice[g] = arg

    def _point_at(self, y: F64, origins: I64, hs: I64, cols: I64 | None) -> F64:
        lo, hi = int(origins.min()), int(origins.max())
        # parameters per requested step: nearest calibrated grid horizon at or below
        gi = np.clip(np.searchsorted(self.grid, hs, side="right") - 1, 0, len(self.grid) - 1)
        prof = self._prof if cols is None else self._prof[:, cols]
        m = prof.shape[1]
        out = np.empty((len(origins), m, len(hs)))
        cache: dict[int, tuple[F64, F64]] = {}
        now = prof[self._phase(origins)]
        for j, h in enumerate(hs):
            ai, pi, bi = (int(v) for v in self._choice[gi[j]])
            if ai not in cache:
                lev, mean = self._levels(y, self.alphas[ai], lo, hi, cols)
                cache[ai] = (lev[origins - lo], mean[origins - lo])
            lv, mv = cache[ai]
            w = self.phis[pi] ** float(h)
            b = self.betas[bi]
            fs = prof[self._phase(origins + h)] + w * lv + (1.0 - w) * mv
            out[:, :, j] = b * fs + (1.0 - b) * (now + lv)
        return out
