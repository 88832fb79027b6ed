"""The Theta method, vectorised over every series and every forecast origin.

Classic Theta (Assimakopoulos & Nikolopoulos 2000; Hyndman & Billah 2003): simple exponential
smoothing (SES) of the seasonally adjusted series plus half its linear drift. For series ``i``
and origin ``o`` (only ``y[: o + 1]`` is read)::

    d[t]     = y[t] / S[phase(t)]    (multiplicative)  or  y[t] - S[phase(t)]  (additive)
    l[o]     = SES of d over the last ``W`` rows up to ``o``, started at the window's first value
    b[o]     = OLS slope of d over the last ``trend_window`` rows up to ``o``
    dhat     = l[o] + w * b[o] * (h - 1 + (1 - (1 - a) ** n) / a)    (n: rows in the SES window)
    yhat     = dhat * S[phase(o + h)]  or  dhat + S[phase(o + h)]

``w = 0.5`` is the classic Theta forecast (theta = 2 line), ``w = 0`` plain SES.

* Seasonal indices ``S`` (daily season) come from a classical decomposition (centred moving
  average, mean ratio or difference per time-of-day phase, circularly smoothed); they exist
  only when the history holds >= 2 seasons. A series is adjusted multiplicatively when it is
  non-negative and every index is >= 0.2, additively otherwise.
* Per series and per selection horizon (1 step and each configured horizon), the candidate
  ``(seasonal on/off, a, w)`` with the lowest absolute error over the last ``select_window``
  of the training history (at most ``select_origins`` evenly spaced origins; each series'
  relative errors shrunk towards the pooled ones by ``shrink / (shrink + origins)``) is
  chosen (grid search, all series at once); steps between
  selection horizons use the nearest selected one below. The indices used while selecting
  are estimated on the history before the selection window, so selection is out-of-sample.
* Online: the level and slope are recomputed from the buffer at each origin (``O(W + window)``
  rows, not the whole history); every ``refit_every`` of new rows the indices and the choice
  are refitted on the buffer.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from shadowcast.forecast.core import BaseForecaster
from shadowcast.forecast.profile import circular_smooth
from shadowcast.records import F64
from shadowcast.units import ceil_steps as horizon_steps
from shadowcast.units import parse_duration

I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
log = logging.getLogger(__name__)

ALPHAS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.85, 1.0)
DRIFTS = (0.0, 0.5)
MULT_MIN_INDEX = 0.2
MAX_SELECT_ORIGINS = 96  # origins scored per selection (evenly thinned)
BLOCK_ELEMENTS = 1 << 20  # rows x series per block of work (bounds the temporaries)


def seasonal_indices(y: F64, season: int, phase0: int) -> tuple[F64, B] | None:
    """Classical decomposition -> ``(S[season, n], multiplicative[n])``; None if < 2 seasons.

    ``phase0`` is the phase of row 0. Multiplicative indices average ``y / MA`` per phase
    (mean 1), additive ones ``y - MA`` (mean 0); ``MA`` is the centred ``2 x season`` moving
    average for an even season.
    """
    T, n = y.shape
    m = int(season)
    if m < 2 or T < 2 * m:
        return None
    size = max(1, BLOCK_ELEMENTS // T)
    parts = [_indices_block(y[:, a : a + size], m, phase0) for a in range(0, n, size)]
    return np.concatenate([p[0] for p in parts], axis=1), np.concatenate([p[1] for p in parts])


def _indices_block(y: F64, m: int, phase0: int) -> tuple[F64, B]:
    T, n = y.shape
    h2 = m // 2
    c = np.concatenate([np.zeros((1, n)), np.cumsum(y, axis=0)])
    t = np.arange(h2, T - h2)
    if m % 2 == 0:
        ma = (c[t + h2 + 1] - c[t - h2] - 0.5 * (y[t - h2] + y[t + h2])) / m
    else:
        ma = (c[t + h2 + 1] - c[t - h2]) / m
    yt = y[t]
    pos = ma > 0
    ratio = np.where(pos, yt / np.where(pos, ma, 1.0), 0.0)
    diff = yt - ma
    pad = (phase0 + h2) % m
    days = -(-(pad + t.size) // m)

    def per_phase(v: F64) -> F64:
        full = np.zeros((days * m, n))
        full[pad : pad + t.size] = v
        return np.asarray(full.reshape(days, m, n).sum(axis=0), dtype=np.float64)

    cnt = per_phase(pos.astype(np.float64))
    sm = np.where(cnt > 0, per_phase(ratio) / np.maximum(cnt, 1.0), 1.0)
    sa = per_phase(diff) / per_phase(np.ones((t.size, n)))
    k = m // 144
    if k:
        sm, sa = circular_smooth(sm, k), circular_smooth(sa, k)
    sm = sm / np.maximum(sm.mean(axis=0, keepdims=True), 1e-12)
    sa = sa - sa.mean(axis=0, keepdims=True)
    mult = (y.min(axis=0) >= 0) & (sm.min(axis=0) >= MULT_MIN_INDEX)
    return np.asarray(np.where(mult[None, :], sm, sa), dtype=np.float64), mult


def _ols_slopes(d: F64, w0: I64, r: I64) -> F64:
    """OLS slope of ``d`` against the row index over rows ``[w0[j], r[j]]`` -> ``[k, m]``
    (0 for one row): a dot product per origin when few, cumulative sums when many."""
    k = len(r)
    if k <= 4:
        out = np.zeros((k, d.shape[1]))
        for j in range(k):
            tt = np.arange(w0[j], r[j] + 1, dtype=np.float64)
            tt -= tt.mean()
            ss = float(tt @ tt)
            if ss > 0:
                out[j] = (tt @ d[w0[j] : r[j] + 1]) / ss
        return out
    t = np.arange(d.shape[0], dtype=np.float64)[:, None]
    c1 = np.concatenate([np.zeros((1, d.shape[1])), np.cumsum(d, axis=0)])
    c2 = np.concatenate([np.zeros((1, d.shape[1])), np.cumsum(t * d, axis=0)])
    nt = (r - w0 + 1).astype(np.float64)[:, None]
    sd = c1[r + 1] - c1[w0]
    std = c2[r + 1] - c2[w0]
    a0, a1 = w0.astype(np.float64)[:, None], r.astype(np.float64)[:, None]
    st = (a0 + a1) * nt / 2.0
    stt = (a1 * (a1 + 1) * (2 * a1 + 1) - (a0 - 1) * a0 * (2 * a0 - 1)) / 6.0
    den = nt * stt - st * st
    return np.asarray(np.where(nt > 1, (nt * std - st * sd) / np.where(nt > 1, den, 1.0), 0.0))


class Theta(BaseForecaster):
    """Theta method (SES + half drift on a seasonally adjusted series); see the module doc."""

    name = "theta"

    def __init__(
        self,
        horizons: Sequence[str | int] = ("15m", "1h"),
        *,
        alphas: Sequence[float] = ALPHAS,
        drifts: Sequence[float] = DRIFTS,
        season: str | int = "1d",
        trend_window: str | int = "7d",
        select_window: str | int = "1d",
        refit_every: str | int | None = "1d",
        shrink: float = 100.0,
        select_origins: int = MAX_SELECT_ORIGINS,
        **kw: Any,
    ) -> None:
        super().__init__(horizons, **kw)
        self._S: F64 | None = None
        self._mult: B | None = None
        self.alphas = tuple(float(a) for a in alphas)
        self.drifts = tuple(float(w) for w in drifts)
        if not self.alphas or not all(0.0 < a <= 1.0 for a in self.alphas) or not self.drifts:
            raise ValueError(f"theta: alphas must lie in (0, 1], got {self.alphas}")
        self.season_s = parse_duration(season)
        self.trend_s = parse_duration(trend_window)
        self.select_s = parse_duration(select_window)
        self.shrink = float(shrink)
        self.select_origins = max(1, int(select_origins))
        self.refit_s = None if refit_every is None else parse_duration(refit_every)

    # -- geometry ------------------------------------------------------------------------
    @property
    def season(self) -> int:
        return int(self.season_s // self.step)

    @property
    def ses_window(self) -> int:
        """Rows the SES level reads: the smallest alpha's weight beyond it is < 1e-4."""
        a = min(self.alphas)
        return 1 if a >= 1.0 else int(math.ceil(math.log(1e-4) / math.log(1.0 - a)))

    @property
    def trend_window(self) -> int:
        return max(2, int(self.trend_s // self.step))

    def _min_history(self) -> int:
        """The buffer keeps the SES window and two seasons (for online refits); the drift
        window is cut to what the buffer holds when ``keep`` is shorter."""
        return max(self.ses_window, 2 * self.season) + 1

    def _phase(self, idx: I64) -> I64:
        m = max(1, self.season)
        return np.asarray((self.time_of(idx) // self.step) % m, dtype=np.int64)

    def _cand(self, s: int, ai: int, di: int) -> int:
        return (s * len(self.alphas) + ai) * len(self.drifts) + di

    # -- fitting -------------------------------------------------------------------------
    def _seasonal(self, y: F64) -> tuple[F64, B] | None:
        return seasonal_indices(y, self.season, int(self._phase(np.zeros(1, np.int64))[0]))

    def _fit_model(self, y: F64) -> None:
        T, n = y.shape
        hs = horizon_steps(self.horizons_s, self.step)
        self._hsel = np.unique(np.array([1, *hs], dtype=np.int64))
        sel = min(max(1, self.select_s // self.step), T // 3)
        full = self._seasonal(y)
        # default (no selection possible): seasonal when available, largest alpha, no drift
        top = int(np.argmax(self.alphas))
        default = self._cand(int(full is not None), top, 0)
        self._choice = np.full((len(self._hsel), n), default, dtype=np.int64)
        if sel >= 4 and T - sel >= 2:
            # indices from before the selection window (in-sample only if that is too short)
            self._S, self._mult = self._seasonal(y[: T - sel]) or full or (None, None)
            self._select(y, T - sel - 1)
        self._S, self._mult = full or (None, None)
        self._since_fit = 0
        log.debug(
            "theta fitted",
            extra={"rows": T, "series": n, "seasonal": self._S is not None},
        )

    def _select(self, y: F64, first: int) -> None:
        T, n = y.shape
        span = T - 1 - first
        origins = np.arange(first, T - 1, max(1, span // self.select_origins), dtype=np.int64)
        modes = (0, 1) if self._S is not None else (0,)
        C = 2 * len(self.alphas) * len(self.drifts)
        err = np.full((len(self._hsel), C, n), np.inf)
        rows = origins[:, None] + self._hsel[None, :]  # [k, H]
        ok = rows <= T - 1
        kj = ok.sum(axis=0)
        for cols in self._blocks(y, origins, n):
            actual = np.moveaxis(y[np.minimum(rows, T - 1)][..., cols], 2, 1)  # [k, m, H]
            for s in modes:
                lev, slope, nw = self._states(y, origins, cols, s)
                Sh = self._season_at(rows, cols) if s else None
                for ai in range(len(self.alphas)):
                    for di in range(len(self.drifts)):
                        c = self._cand(s, ai, di)
                        f = self._combine(lev[ai], slope, nw, c, self._hsel, Sh)
                        e = np.abs(f - actual)
                        for j in range(len(self._hsel)):  # valid origins: a prefix
                            err[j, c, cols] = e[: kj[j], :, j].sum(axis=0)
        none = ~ok.any(axis=0)
        err[none] = np.inf
        # shrink each series' relative errors towards the pooled ones (few origins: noisy)
        ref = self._cand(0, int(np.argmax(self.alphas)), 0)  # persistence
        for j, h in enumerate(self._hsel):
            k = max(0, span - int(h) + 1)  # origins spanned (the sample is thinned)
            if not np.isfinite(err[j]).any():
                if j:
                    self._choice[j] = self._choice[j - 1]
                continue
            base = err[j, ref]
            rel = err[j] / np.where(base > 0, base, 1.0)[None, :]
            pooled = err[j].sum(axis=1) / max(float(base.sum()), 1e-300)
            kappa = self.shrink / (self.shrink + k) if self.shrink > 0 else 0.0
            score = np.where(np.isfinite(rel), (1 - kappa) * rel, np.inf)
            if kappa > 0:
                score = score + np.where(np.isfinite(pooled), kappa * pooled, np.inf)[:, None]
            self._choice[j] = np.argmin(score, axis=0)

    def _blocks(self, y: F64, origins: I64, n: int) -> Iterator[slice]:
        """Contiguous blocks of series, so that the temporaries stay in cache."""
        rows = int(origins.max() - origins.min()) + max(self.ses_window, self.trend_window)
        size = max(1, BLOCK_ELEMENTS // max(1, rows))
        for a in range(0, n, size):
            yield slice(a, min(n, a + size))

    def _after_update(self, rows: int) -> None:
        if self.refit_s is None:
            return
        self._since_fit += rows
        if self._since_fit * self.step >= self.refit_s:
            self._fit_model(self._y)

    # -- the forecast --------------------------------------------------------------------
    def _adjust(self, y: F64, a: int, b: int, cols: I64 | slice, s: int) -> F64:
        """Seasonally adjusted ``y[a:b, cols]`` (unchanged when ``s == 0``)."""
        sub = y[a:b][:, cols]
        if not s or self._S is None or self._mult is None:
            return np.asarray(sub, dtype=np.float64)
        S = self._S[:, cols][self._phase(np.arange(a, b, dtype=np.int64))]
        mult = self._mult[cols][None, :]
        return np.asarray(np.where(mult, sub / np.where(mult, S, 1.0), sub - S), np.float64)

    def _season_at(self, rows: I64, cols: I64 | slice) -> tuple[F64, F64]:
        """Seasonal factors at buffer rows ``rows[k, H]`` for ``cols`` as ``(mul, add)``
        arrays ``[k, m, H]``: the forecast is ``dhat * mul + add``."""
        assert self._S is not None and self._mult is not None
        S = np.moveaxis(self._S[:, cols][self._phase(rows)], 2, 1)
        mult = self._mult[cols][None, :, None]
        return np.where(mult, S, 1.0), np.where(mult, 0.0, S)

    def _states(
        self, y: F64, origins: I64, cols: I64 | slice, s: int
    ) -> tuple[list[F64], F64, I64]:
        """SES levels per alpha ``[k, m]``, drift slope ``[k, m]`` and SES window rows ``[k]``."""
        lo, hi = int(origins.min()), int(origins.max())
        W, Wt = self.ses_window, self.trend_window
        start = max(0, lo - max(W, Wt) + 1)
        d = self._adjust(y, start, hi + 1, cols, s)
        r = origins - start  # origin rows in d
        # drift: OLS slope of d against time over [w0, o]
        w0 = np.maximum(r - Wt + 1, 0)
        slope = _ols_slopes(d, w0, r)
        # SES over [ws, o]: windowed sums from one recursion A[t] = d[t] + (1 - a) A[t - 1]
        ws = np.maximum(r - W + 1, 0)
        nw = r - ws + 1
        f0 = int(ws.min())
        ds = d[f0:]
        lev: list[F64] = []
        for a in self.alphas:
            q = 1.0 - a
            if a >= 1.0:
                lev.append(np.asarray(d[r], dtype=np.float64))
                continue
            A = lfilter([1.0], [1.0, -q], ds, axis=0)
            prev = np.where((ws > f0)[:, None], A[np.maximum(ws - 1 - f0, 0)], 0.0)
            ssum = A[r - f0] - (q ** nw.astype(np.float64))[:, None] * prev
            tail = (q ** (nw - 1).astype(np.float64))[:, None] * d[ws]
            lev.append(np.asarray(a * (ssum - tail) + tail, dtype=np.float64))
        return lev, np.asarray(slope, dtype=np.float64), nw

    def _combine(
        self, lev: F64, slope: F64, nw: I64, c: int, hs: I64, Sh: tuple[F64, F64] | None
    ) -> F64:
        """Candidate ``c``'s forecasts ``[k, m, len(hs)]``; ``Sh``: the seasonal factors at
        the targets (None when not seasonal)."""
        nA, nD = len(self.alphas), len(self.drifts)
        ai, di = (c // nD) % nA, c % nD
        a, w = self.alphas[ai], self.drifts[di]
        dhat = lev[:, :, None]
        if w:
            steps = hs[None, :] - 1 + ((1.0 - (1.0 - a) ** nw.astype(np.float64)) / a)[:, None]
            dhat = dhat + w * slope[:, :, None] * steps[:, None, :]
        if Sh is None:
            return np.asarray(np.broadcast_to(dhat, (*lev.shape, len(hs))), dtype=np.float64)
        return np.asarray(dhat * Sh[0] + Sh[1], dtype=np.float64)

    def _point_at(self, y: F64, origins: I64, hs: I64, cols: I64 | None) -> F64:
        allc = np.arange(y.shape[1], dtype=np.int64) if cols is None else cols
        gi = np.clip(np.searchsorted(self._hsel, hs, side="right") - 1, 0, len(self._hsel) - 1)
        out = np.zeros((len(origins), len(allc), len(hs)))
        nA, nD = len(self.alphas), len(self.drifts)
        rows = origins[:, None] + hs[None, :]
        for b in self._blocks(y, origins, len(allc)):
            cb: I64 | slice = b if cols is None else allc[b]
            ch = self._choice[:, cb][gi].T  # [mb, len(hs)]: candidate per series and step
            bi = np.arange(len(allc))[b]
            for s in (0, 1):
                used = np.unique(ch[(ch // (nA * nD)) == s])
                if used.size == 0:
                    continue
                lev, slope, nw = self._states(y, origins, cb, s)
                Sh = self._season_at(rows, cb) if s else None
                for c in used:
                    ai = (int(c) // nD) % nA
                    on = ch == c
                    sel = on.any(axis=1)
                    f = self._combine(
                        lev[ai][:, sel],
                        slope[:, sel],
                        nw,
                        int(c),
                        hs,
                        None if Sh is None else (Sh[0][:, sel], Sh[1][:, sel]),
                    )
                    out[:, bi[sel], :] = np.where(on[sel][None], f, out[:, bi[sel], :])
        return out
