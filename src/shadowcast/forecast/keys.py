"""Series keys that come and go: the bookkeeping every model shares (via BaseForecaster).

Real series are not rectangular: a new OD pair or application shows up in the middle of a
week, an old one goes silent. The life of a key in a model:

* **fit**: a key with at least one finite non-zero value in the history is *warm*: the
  model is fitted on it. A key without any (all zero or NaN: absent) is *cold*. With
  ``retire_after`` set, a key idle (no finite non-zero value) for that long at the end of
  the history is not taken at all.
* **update(frame)**: a ``SeriesFrame`` is aligned on the model's keys by name. A key the
  model has not seen is added (:meth:`KeyBook.extend_keys`), cold, as soon as it carries a
  finite non-zero value; a model key missing from the frame is missing (NaN) at those rows.
  Plain arrays ``rows[k, len(model.keys)]`` stay positional, in ``model.keys`` order.
* **cold forecast**: persistence (the last value) with a pooled prior interval: the
  quantiles of the relative persistence errors ``(y[o + h] - y[o]) / level[o]`` of the
  warm series over the calibration window (pooled over series and origins; ``level[o]``
  is the mean over the hour up to ``o``), times the key's own level (its mean over the
  last hour, since it appeared). A key that has
  carried nothing yet is forecast 0, [0, 0].
* **join**: when a cold key has been present for ``join_after`` (default one day), the
  next ``update`` refits the whole model on the kept history (``refit()``, also callable
  at any time); the key is warm from then on.
* **retire**: with ``retire_after`` set, a key idle that long leaves ``model.keys``: it is
  not forecast any more and update rows no longer carry it; its column goes at the next
  refit. If it comes back, it is a new key.

The buffer keeps the warm keys first (columns ``0 .. n_fit - 1``, what the model's hooks
see), then the cold ones; ``_pos[j]`` is the buffer column of ``keys[j]``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from shadowcast.errors import ForecastError
from shadowcast.forecast.conformal import interp_grid
from shadowcast.records import F64, SeriesFrame

I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
log = logging.getLogger(__name__)

PRIOR_MIN_SCORES = 20  # fewer pooled errors than this: the wide fallback below
PRIOR_FALLBACK = 1.0  # +- this many times the key's level when nothing is pooled
PRIOR_SERIES = 2000  # series sampled for the pooled prior
LEVEL_S = 3600  # a key's level: its mean over the last hour (since it appeared)


def level_rows(step: int) -> int:
    """Rows a level is measured over (LEVEL_S at this step, at least one)."""
    return max(1, LEVEL_S // max(1, step))


def pooled_prior(
    y: F64, obs: B, grid: I64, window: int, cap: int, seed: int, level_rows: int
) -> list[F64]:
    """Sorted relative persistence errors ``(y[o + h] - y[o]) / level[o]`` per grid
    horizon, pooled over (at most PRIOR_SERIES) series and the last ``window`` origins
    that show horizon ``h``; ``level[o]`` is the series' mean observed |y| over the
    ``level_rows`` rows up to ``o`` (what a new key's level is measured on). Only observed
    pairs with a positive level count."""
    T, n = y.shape
    if n == 0 or T < 2:
        return [np.zeros(0) for _ in grid]
    rng = np.random.default_rng(seed)
    cols = np.sort(rng.choice(n, PRIOR_SERIES, replace=False)) if n > PRIOR_SERIES else None
    ys = y if cols is None else y[:, cols]
    ob = obs if cols is None else obs[:, cols]
    level = _trailing_level(ys, ob, level_rows)
    out: list[F64] = []
    for h in (int(v) for v in grid):
        o = np.arange(max(0, T - h - window), T - h, dtype=np.int64)
        if o.size == 0:
            out.append(np.zeros(0))
            continue
        lv = level[o]
        good = ob[o + h] & ob[o] & (lv > 0)
        s = ((ys[o + h] - ys[o]) / np.where(lv > 0, lv, 1.0))[good]
        if s.size > cap:
            s = rng.choice(s, cap, replace=False)
        out.append(np.sort(s))
    return out


def _trailing_level(y: F64, obs: B, rows: int) -> F64:
    """Mean observed |y| over the ``rows`` rows up to each row (0 where none)."""
    z = np.zeros((1, y.shape[1]))
    c = np.concatenate([z, np.cumsum(np.where(obs, np.abs(y), 0.0), axis=0)])
    k = np.concatenate([z, np.cumsum(obs, axis=0, dtype=np.float64)])
    t = np.arange(1, y.shape[0] + 1)
    a = np.maximum(t - rows, 0)
    return np.asarray((c[t] - c[a]) / np.maximum(k[t] - k[a], 1.0), dtype=np.float64)


def prior_quantiles(prior: Sequence[F64], level: float) -> tuple[F64, F64]:
    """Lower/upper relative error quantiles per grid horizon for a ``level`` % interval
    (0 inside them; the wide fallback where too few errors were pooled)."""
    alpha = 1.0 - level / 100.0
    lo = np.empty(len(prior))
    hi = np.empty(len(prior))
    for g, s in enumerate(prior):
        k = s.size
        if k < PRIOR_MIN_SCORES:
            lo[g], hi[g] = -PRIOR_FALLBACK, PRIOR_FALLBACK
            continue
        i_lo = int(np.clip(np.floor(alpha / 2.0 * (k + 1)) - 1, 0, k - 1))
        i_hi = int(np.clip(np.ceil((1.0 - alpha / 2.0) * (k + 1)) - 1, 0, k - 1))
        lo[g], hi[g] = min(float(s[i_lo]), 0.0), max(float(s[i_hi]), 0.0)
    return lo, hi


def align_pair(
    train: SeriesFrame, test: SeriesFrame, fill: float = np.nan
) -> tuple[SeriesFrame, SeriesFrame]:
    """Both frames on the union of their keys (the train order when the test adds none,
    else sorted): a key one part lacks is ``fill`` there."""
    if set(test.keys) <= set(train.keys):
        keys: Sequence[str] = train.keys
    else:
        keys = sorted(set(train.keys) | set(test.keys))
    return train.align(keys, fill), test.align(keys, fill)


def present(values: F64) -> B:
    """Per column: carries at least one finite non-zero value (a series, not an absence)."""
    v = np.asarray(values, dtype=np.float64)
    return np.asarray((np.isfinite(v) & (v != 0)).any(axis=0), dtype=np.bool_)


class KeyBook:
    """The key bookkeeping mixed into BaseForecaster (see the module docstring)."""

    name: str
    step: int
    keys: tuple[str, ...]
    meta: dict[str, npt.NDArray[np.generic]]
    report: dict[str, Any]
    retire_s: int | None
    join_s: int | None
    _buf: F64
    _obsbuf: B
    _xbuf: dict[str, F64]
    _len: int
    _offset: int
    _n_fit: int
    _col_keys: list[str]
    _pos: I64
    _first_seen: I64
    _last_seen: I64
    _meta_cols: dict[str, npt.NDArray[np.generic]]
    _frame_map: tuple[tuple[str, ...], tuple[str, ...], I64] | None
    _prior: list[F64]
    _nonneg: bool
    _t0: int
    grid: I64

    def _setup_keys(self, history: SeriesFrame, raw: F64) -> I64:
        """Warm, cold and retired keys of a history; returns the buffer column order (as
        positions in ``history.keys``) and sets ``keys``, ``_pos``, ``_n_fit``, meta."""
        T, n = raw.shape
        seen = np.isfinite(raw) & (raw != 0)
        any_seen = seen.any(axis=0)
        last = np.where(any_seen, T - 1 - np.argmax(seen[::-1], axis=0), -1).astype(np.int64)
        first = np.where(any_seen, np.argmax(seen, axis=0), -1).astype(np.int64)
        live = np.ones(n, dtype=bool)
        if self.retire_s is not None:
            live = (T - 1 - last) * self.step < self.retire_s
        if not live.any():
            log.warning("every series is idle: nothing to forecast", extra={"model": self.name})
        warm, cold = np.flatnonzero(live & any_seen), np.flatnonzero(live & ~any_seen)
        order = np.concatenate([warm, cold]).astype(np.int64)
        self._n_fit = int(warm.size)
        self._col_keys = [history.keys[int(i)] for i in order]
        col_of = np.full(n, -1, dtype=np.int64)
        col_of[order] = np.arange(order.size)
        idx = np.flatnonzero(live)
        self.keys = tuple(history.keys[int(i)] for i in idx)
        self._pos = col_of[idx]
        self._first_seen, self._last_seen = first[order], last[order]
        self._meta_cols = {
            k: np.asarray(v)[order] for k, v in history.meta.items() if np.shape(v) == (n,)
        }
        self.meta = {k: v[: self._n_fit] for k, v in self._meta_cols.items()}
        self._frame_map = None
        self.report["cold_keys"] = int(cold.size)
        self.report["retired_keys"] = int(n - idx.size)
        if n - idx.size:
            log.info("idle series keys retired", extra={"model": self.name, "keys": n - idx.size})
        return order

    def refit(self) -> None:
        """Fit again on everything kept, as ``fit`` would: cold keys join the fitted
        models, retired keys' columns go; the conformal state restarts from the new
        calibration."""
        self._check()
        if not self.keys:
            return
        n, pos = self._len, self._pos
        times = self._t0 + (self._offset + np.arange(n, dtype=np.int64)) * self.step
        frame = SeriesFrame(
            times=times.astype("datetime64[s]"),
            keys=self.keys,
            values=np.where(self._obsbuf[:n], self._buf[:n], np.nan)[:, pos],
            step=self.step,
            meta={k: v[pos] for k, v in self._meta_cols.items()},
            exog={k: b[:n][:, pos] for k, b in self._xbuf.items()},
        )
        refits = int(self.report.get("refits", 0)) + 1
        self.fit(frame)
        self.report["refits"] = refits

    def fit(self, history: SeriesFrame) -> Any:  # BaseForecaster's
        raise NotImplementedError

    def _check(self) -> None:  # BaseForecaster's
        raise NotImplementedError

    def extend_keys(self, keys: Sequence[str]) -> list[str]:
        """Add ``keys`` the model does not forecast yet, cold (see the module docstring);
        returns those added. Their history is unknown (NaN)."""
        have = set(self.keys)
        new = [k for k in dict.fromkeys(keys) if k not in have]
        if not new:
            return []
        m, cap = len(new), self._buf.shape[0]
        self._buf = np.concatenate([self._buf, np.zeros((cap, m))], axis=1)
        self._obsbuf = np.concatenate([self._obsbuf, np.zeros((cap, m), dtype=bool)], axis=1)
        self._xbuf = {
            k: np.concatenate([b, np.full((cap, m), np.nan)], axis=1) for k, b in self._xbuf.items()
        }
        base = len(self._col_keys)
        self._col_keys = [*self._col_keys, *new]
        none = np.full(m, -1, dtype=np.int64)
        self._first_seen = np.concatenate([self._first_seen, none])
        self._last_seen = np.concatenate([self._last_seen, none])
        self._meta_cols = {k: _extend_meta(v, m) for k, v in self._meta_cols.items()}
        self.keys = (*self.keys, *new)
        self._pos = np.concatenate([self._pos, base + np.arange(m, dtype=np.int64)])
        self.report["new_keys"] = int(self.report.get("new_keys", 0)) + m
        log.info(
            "new series keys, cold until the next refit", extra={"model": self.name, "keys": m}
        )
        return new

    def _align(
        self, frame: SeriesFrame, exog: Mapping[str, F64] | None
    ) -> tuple[F64, dict[str, F64]]:
        """``frame``'s rows on ``self.keys`` (NaN where it lacks one), adding new keys that
        carry a value; its exogenous inputs aligned the same way."""
        if exog:
            raise ForecastError(f"{self.name}: with a frame, give exogenous inputs in frame.exog")
        if frame.step != self.step:
            raise ForecastError(
                f"{self.name}: update frame has a {frame.step} s step, the model {self.step} s"
            )
        vals = np.asarray(frame.values, dtype=np.float64)
        idx = self._frame_index(frame.keys)
        unknown = np.flatnonzero(idx < 0)
        if unknown.size:
            carry = unknown[present(vals[:, unknown])]
            if carry.size and self.extend_keys([frame.keys[int(j)] for j in carry]):
                idx = self._frame_index(frame.keys)
        ok = np.flatnonzero(idx >= 0)
        k = vals.shape[0]
        rows = np.full((k, len(self.keys)), np.nan)
        rows[:, idx[ok]] = vals[:, ok]
        out: dict[str, F64] = {}
        for name, arr in frame.exog.items():
            x = np.full((k, len(self.keys)), np.nan)
            x[:, idx[ok]] = np.asarray(arr, dtype=np.float64)[:, ok]
            out[name] = x
        return rows, out

    def _frame_index(self, frame_keys: tuple[str, ...]) -> I64:
        """Position in ``self.keys`` of each frame key (-1: not forecast); cached while the
        frame's keys and the model's keys stay the same."""
        c = self._frame_map
        if c is not None and c[1] is self.keys and (c[0] is frame_keys or c[0] == frame_keys):
            return c[2]
        if len(set(frame_keys)) != len(frame_keys):
            raise ForecastError(f"{self.name}: update frame has duplicate keys")
        known = {k: i for i, k in enumerate(self.keys)}
        idx = np.array([known.get(k, -1) for k in frame_keys], dtype=np.int64)
        self._frame_map = (frame_keys, self.keys, idx)
        return idx

    def _note_seen(self, t_abs: int, seen: B) -> None:
        """Row ``t_abs`` carried a finite non-zero value in the columns ``seen``."""
        self._first_seen[(self._first_seen < 0) & seen] = t_abs
        self._last_seen[seen] = t_abs

    def _retire_idle(self) -> None:
        if self.retire_s is None or not self.keys:
            return
        now = self._offset + self._len - 1
        idle = (now - self._last_seen[self._pos]) * self.step >= self.retire_s
        if not idle.any():
            return
        keep = ~idle
        self.keys = tuple(k for k, ok in zip(self.keys, keep, strict=True) if ok)
        self._pos = self._pos[keep]
        self.report["retired_keys"] = int(self.report.get("retired_keys", 0)) + int(idle.sum())
        log.info("idle series keys retired", extra={"model": self.name, "keys": int(idle.sum())})

    def _join_due(self) -> bool:
        """A cold key has been present for ``join_after``: time to refit."""
        if self.join_s is None:
            return False
        first = self._first_seen[self._pos[self._pos >= self._n_fit]]
        first = first[first >= 0]
        if first.size == 0:
            return False
        now = self._offset + self._len - 1
        return bool((now - int(first.min())) * self.step >= self.join_s)

    def _cold_predict(
        self, hs: I64, levels: Sequence[float]
    ) -> tuple[F64, dict[float, F64], dict[float, F64]]:
        """Persistence with the pooled prior interval for the buffer's cold columns."""
        nf, T = self._n_fit, self._len
        last = self._buf[T - 1, nf:]
        lo_row = max(0, T - level_rows(self.step))
        rows_abs = self._offset + np.arange(lo_row, T)
        first = self._first_seen[nf:]
        mask = self._obsbuf[lo_row:T, nf:] & (rows_abs[:, None] >= first[None, :])
        mask &= first[None, :] >= 0
        vals = np.where(mask, np.abs(self._buf[lo_row:T, nf:]), 0.0)
        level = vals.sum(axis=0) / np.maximum(mask.sum(axis=0), 1)
        mean = np.repeat(last[:, None], hs.size, axis=1)
        if self._nonneg:
            mean = np.maximum(mean, 0.0)
        lower: dict[float, F64] = {}
        upper: dict[float, F64] = {}
        for lv in levels:
            qlo, qhi = prior_quantiles(self._prior, float(lv))
            lo = mean + level[:, None] * interp_grid(self.grid, qlo[None, :], hs)
            hi = mean + level[:, None] * interp_grid(self.grid, qhi[None, :], hs)
            lo = np.minimum(lo, mean)
            if self._nonneg:
                lo = np.maximum(lo, 0.0)
            lower[float(lv)], upper[float(lv)] = lo, np.maximum(hi, mean)
        return mean, lower, upper


def _extend_meta(v: npt.NDArray[np.generic], m: int) -> npt.NDArray[np.generic]:
    """A per-series meta array with ``m`` unknown entries appended (NaN, or "")."""
    if v.dtype.kind in "fiub":
        return np.concatenate([v.astype(np.float64), np.full(m, np.nan)])
    return np.concatenate([v.astype(object), np.full(m, "", dtype=object)])
