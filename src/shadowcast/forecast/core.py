"""Shared machinery for every model: input cleaning, history buffer, conformal intervals.

A model subclasses :class:`BaseForecaster` and provides two hooks:

* ``_fit_model(y, t0_index)`` learns parameters from the cleaned history ``y[T, n]``;
* ``_point_at(y, origins, hs, cols)`` returns point forecasts ``[k, m, len(hs)]`` made at
  each origin (index of the last observed row in ``y``) for steps ``hs``, for series
  ``cols``, using only ``y[: origin + 1]``.

Exogenous inputs (``SeriesFrame.exog``, time-varying, NaN = unknown) are kept in a buffer
beside the values, row for row (``self._xbuf[name]``, rows as in ``y``; ``self._x`` gives
views of what is kept); ``update(rows, exog)`` appends their new rows. A model that reads
them takes row ``o`` (or earlier) only, for a forecast made at origin ``o``; models that
ignore them need nothing.

Keys come and go (:mod:`shadowcast.forecast.keys`): the hooks see the *warm* keys only
(``self._y`` is ``[T, n_fit]``); cold keys (absent so far) are forecast by persistence
with a pooled prior interval until they join at the next refit; ``update`` also takes a
``SeriesFrame`` aligned by key name. Missing values (NaN) are cleaned for the hooks (last
value carried forward) but never scored: conformal scores, scale updates and the GBM's
training rows skip targets that were not observed (``self._obs``).

Calibration: the last ``calibration_window`` of the history is held out; the model is fitted
on the rest, its forecasts from every held-out origin are scored (scale-aware, see
:mod:`shadowcast.forecast.conformal`), then (for cheap models) it is refitted on everything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from shadowcast.errors import ForecastError
from shadowcast.forecast.base import clean, finite_or_nan, input_report, regrow
from shadowcast.forecast.conformal import (
    Calibrator,
    ew_scales,
    horizon_grid,
    interp_grid,
    volume_groups,
)
from shadowcast.forecast.conformal import scale_floor as _scale_floor
from shadowcast.forecast.inputs import check_groups, keep_inputs
from shadowcast.forecast.keys import KeyBook, level_rows, pooled_prior
from shadowcast.records import F64, Forecast, SeriesFrame
from shadowcast.units import ceil_steps as horizon_steps
from shadowcast.units import parse_duration

I64 = npt.NDArray[np.int64]
log = logging.getLogger(__name__)


class BaseForecaster(KeyBook):
    """Base class: see the module docstring. Constructors are inert.

    ``retire_after``: a key idle (no finite non-zero value) this long is retired (default:
    never); ``join_after``: a cold key present this long makes the next update refit the
    model (default one day; None: only an explicit ``refit()``); ``exclude``: input groups
    left out (:mod:`shadowcast.forecast.inputs`: what ``eval forecast --ablate`` varies)."""

    name = "base"
    refit_after_calibration = True
    refit_every_s: int | None = None  # online refits (``_refit_online``); a model's option
    _since_fit = 0  # rows of online updates since the last fit
    exclude: tuple[str, ...] = ()

    def __init__(
        self,
        horizons: Sequence[str | int] = ("15m", "1h"),
        *,
        calibration_window: str | int = "1d",
        scale_rate: float = 0.1,
        aci_gamma: float = 0.8,
        max_scores: int = 60_000,
        keep: str | int = "15d",
        seed: int = 0,
        retire_after: str | int | None = None,
        join_after: str | int | None = "1d",
        exclude: Sequence[str] = (),
        conformal_groups: int = 10,
    ) -> None:
        if not 1 <= int(conformal_groups) <= 100:
            raise ForecastError(f"conformal_groups must be in 1..100, got {conformal_groups}")
        self.conformal_groups = int(conformal_groups)
        self.horizons_s = [parse_duration(h) for h in horizons]
        self.calibration_s = parse_duration(calibration_window)
        self.scale_rate = scale_rate
        self.aci_gamma = aci_gamma
        self.max_scores = max_scores
        self.keep_s = parse_duration(keep)
        self.seed = seed
        self.retire_s = None if retire_after is None else parse_duration(retire_after)
        self.join_s = None if join_after is None else parse_duration(join_after)
        self.exclude = check_groups(exclude)
        self.keys: tuple[str, ...] = ()
        self._n_fit = 0
        self.report: dict[str, Any] = {}
        self.exog_names: tuple[str, ...] = ()
        self._xbuf: dict[str, F64] = {}
        self._fitted = False

    # -- hooks ---------------------------------------------------------------------------
    def _fit_model(self, y: F64) -> None:
        return None

    def _point_at(self, y: F64, origins: I64, hs: I64, cols: I64 | None) -> F64:
        raise NotImplementedError

    # -- helpers for subclasses ----------------------------------------------------------
    def _refit_online(self, rows: int) -> None:
        """For an ``_after_update``: count ``rows`` towards ``refit_every_s`` (None: never)
        and, once that much new history arrived since the last fit, refit on everything
        kept; the conformal scores and ACI carry on. ``_fit_model`` restarts the count."""
        if self.refit_every_s is None:
            return
        self._since_fit += rows
        if self._since_fit * self.step >= self.refit_every_s:
            self._fit_model(self._y)

    def time_of(self, idx: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Absolute UNIX seconds of buffer row indices (may lie in the future)."""
        return np.asarray(self._t0 + (self._offset + idx) * self.step, dtype=np.int64)

    @property
    def _y(self) -> F64:
        """Everything seen so far (the last ``keep`` at most) of the warm keys: a view."""
        return self._buf[: self._len, : self._n_fit]

    @property
    def _obs(self) -> npt.NDArray[np.bool_]:
        """Which values of ``_y`` were observed (not filled in): a view."""
        return self._obsbuf[: self._len, : self._n_fit]

    @property
    def _x(self) -> dict[str, F64]:
        """Exogenous inputs aligned with ``_y``, by name: views of the buffer."""
        return {k: b[: self._len, : self._n_fit] for k, b in self._xbuf.items()}

    @property
    def input_groups(self) -> tuple[str, ...]:
        """The input groups (:mod:`shadowcast.forecast.inputs`) this model reads."""
        return ()

    @property
    def n_series(self) -> int:
        """Series forecast (``len(self.keys)``): the rows of ``predict``'s arrays."""
        return len(self.keys)

    # -- protocol ------------------------------------------------------------------------
    def fit(self, history: SeriesFrame) -> Self:
        if history.step <= 0:
            raise ForecastError(f"series step must be positive, got {history.step}")
        raw = np.asarray(history.values, dtype=np.float64)
        if raw.ndim != 2 or raw.shape[0] < 1 or raw.shape[1] < 1:
            raise ForecastError(f"need values[T>=1, n>=1], got shape {raw.shape}")
        if self.exclude:  # input groups left out (ablation): every model sees the same frame
            history = replace(
                history,
                meta=keep_inputs(history.meta, self.exclude),
                exog=keep_inputs(history.exog, self.exclude),
            )
        self.step = int(history.step)
        self.exog_names = tuple(sorted(history.exog))
        self._t0 = int(np.asarray(history.times[:1], dtype="datetime64[s]").astype(np.int64)[0])
        self._offset = 0
        self.report = input_report(raw)
        if self.report["nonfinite"]:
            log.info("forecast input cleaned", extra=self.report)
        order = self._setup_keys(history, raw)
        raw = raw[:, order]
        buf = clean(raw)
        self._nonneg = bool((buf >= 0).all())
        self.H = max(horizon_steps(self.horizons_s, self.step))
        self.grid = horizon_grid(self.H)
        self._buf, self._obsbuf, self._len = buf, np.isfinite(raw), raw.shape[0]
        self._xbuf = {
            k: finite_or_nan(np.asarray(history.exog[k])[:, order]) for k in self.exog_names
        }
        y = self._y
        self._floor = _scale_floor(y)
        self._cal = Calibrator(
            self.grid, self.aci_gamma, self.max_scores, self.seed, groups=self._volume_groups(y)
        )
        self._per_step = 1
        T = y.shape[0]
        cal = min(max(1, self.calibration_s // self.step), T // 3)
        if self._n_fit and cal >= 2 and T - cal >= 2:
            self._fit_model(y[: T - cal])
            self._calibrate(y, T - cal - 1)
            if self.refit_after_calibration:
                self._fit_model(y)
        elif self._n_fit:
            self._fit_model(y)
            self._calibrate(y, max(0, T - 2))
        self.report["calibrated"] = self._cal.calibrated
        self._scale_state = np.zeros((self._n_fit, len(self.grid)))
        if self._n_fit:
            self._scale_state = np.stack(
                [ew_scales(y, int(h), self.scale_rate, T - 1)[-1] for h in self.grid], axis=1
            )
        self._extrapolate_scales(T)
        window = max(12, self.calibration_s // self.step)
        self._prior = pooled_prior(
            y, self._obs, self.grid, window, self.max_scores, self.seed, level_rows(self.step)
        )
        self.report["calibrated_steps"] = int(self._cal.max_calibrated_step())
        self._pending: dict[int, tuple[F64, F64, dict[float, tuple[F64, F64]]]] = {}
        self._fitted = True
        return self

    def _volume_groups(self, y: F64) -> I64:
        """Volume group of each warm series (rank of its mean observed |y|; groups of ten
        series at least, so a small frame keeps one pooled group)."""
        n = y.shape[1]
        k = max(1, min(self.conformal_groups, n // 10))
        obs = self._obs
        level = np.where(obs, np.abs(y), 0.0).sum(axis=0) / np.maximum(obs.sum(axis=0), 1)
        return volume_groups(level, k)

    def _extrapolate_scales(self, T: int) -> None:
        """Horizons at least as long as the history (``h >= T - 1``) have no measured
        ``|y[t] - y[t-h]|``: their scale grows from the longest measurable one as
        ``sqrt(h)`` (a random walk), never a zero-width interval."""
        ok = self.grid < T - 1
        if ok.all():
            return
        if not ok.any():
            base, hb = np.abs(self._y).mean(axis=0) * 0.1, 1.0
        else:
            j = int(np.flatnonzero(ok)[-1])
            base, hb = self._scale_state[:, j], float(self.grid[j])
        for g in np.flatnonzero(~ok):
            self._scale_state[:, g] = base * np.sqrt(float(self.grid[g]) / hb)

    def _calibrate(self, y: F64, first_origin: int) -> None:
        T, n = y.shape
        origins = np.arange(first_origin, T - 1, dtype=np.int64)
        rng = np.random.default_rng(self.seed)
        m = int(min(n, max(1, self.max_scores // max(1, len(origins)))))
        cols = np.sort(rng.choice(n, m, replace=False)) if m < n else None
        pred = self._cal_points(y, origins, cols)  # [k, m, G]
        ysub = y if cols is None else y[:, cols]
        obs = self._obs if cols is None else self._obs[:, cols]
        floor = self._floor if cols is None else self._floor[cols]
        scores: list[F64] = []
        for g, h in enumerate(self.grid):
            ok = origins + h <= T - 1
            o = origins[ok]
            if o.size == 0:
                scores.append(np.zeros((0, ysub.shape[1])))
                continue
            sc = ew_scales(ysub, int(h), self.scale_rate, int(o[0]))[: o.size] + floor
            s = (ysub[o + h] - pred[ok, :, g]) / sc
            scores.append(np.where(obs[o + h], s, np.nan))  # unobserved: no score
        self._cal.fit(scores, cols)
        self._per_step = max(1, m)

    def _cal_points(self, y: F64, origins: I64, cols: I64 | None) -> F64:
        """Forecasts from the calibration origins at the grid steps (hook for ensembles)."""
        return self._point_at(y, origins, self.grid, cols)

    def _check(self) -> None:
        if not self._fitted:
            raise ForecastError(f"{self.name}: predict/update called before fit")

    def predict(self, horizon: int, levels: Sequence[float] = ()) -> Forecast:
        """Forecast every key of ``self.keys`` (rows in that order) ``horizon`` steps."""
        self._check()
        if int(horizon) < 1:
            raise ForecastError(f"{self.name}: horizon must be >= 1 step, got {horizon}")
        for level in levels:
            if not 0.0 < float(level) < 100.0:
                raise ForecastError(f"{self.name}: level {level} must be in (0, 100)")
        hs = np.arange(1, int(horizon) + 1, dtype=np.int64)
        lvs = [float(lv) for lv in levels]
        nf, ncol = self._n_fit, self._buf.shape[1]
        mean = np.empty((ncol, hs.size))
        lower = {lv: np.empty_like(mean) for lv in lvs}
        upper = {lv: np.empty_like(mean) for lv in lvs}
        if nf:
            wm, wlo, whi = self._warm_predict(hs, lvs)
            mean[:nf] = wm
            for lv in lvs:
                lower[lv][:nf], upper[lv][:nf] = wlo[lv], whi[lv]
        if ncol > nf:
            cm, clo, chi = self._cold_predict(hs, lvs)
            mean[nf:] = cm
            for lv in lvs:
                lower[lv][nf:], upper[lv][nf:] = clo[lv], chi[lv]
        pos = self._pos
        return Forecast(
            mean=mean[pos],
            lower={lv: v[pos] for lv, v in lower.items()},
            upper={lv: v[pos] for lv, v in upper.items()},
            model=self.name,
        )

    def _warm_predict(
        self, hs: I64, levels: Sequence[float]
    ) -> tuple[F64, dict[float, F64], dict[float, F64]]:
        """The fitted model's forecasts and conformal intervals for the warm keys."""
        T = self._y.shape[0]
        mean = self._point_at(self._y, np.array([T - 1], dtype=np.int64), hs, None)[0]
        last = np.broadcast_to(self._y[-1][:, None], mean.shape)
        mean = np.where(np.isfinite(mean), mean, last)
        if self._nonneg:
            mean = np.maximum(mean, 0.0)
        scale = interp_grid(self.grid, self._scale_state, hs) + self._floor[:, None]
        lower: dict[float, F64] = {}
        upper: dict[float, F64] = {}
        used: dict[float, tuple[F64, F64]] = {}
        n = mean.shape[0]
        for lv in levels:
            qlo, qhi = self._cal.quantiles(lv)  # [G, K]: per grid horizon and volume group
            used[lv] = (qlo, qhi)
            lo = mean + scale * interp_grid(self.grid, self._cal.per_series(qlo, n), hs)
            hi = mean + scale * interp_grid(self.grid, self._cal.per_series(qhi, n), hs)
            lo = np.minimum(lo, mean)
            if self._nonneg:
                lo = np.maximum(lo, 0.0)
            lower[lv], upper[lv] = lo, np.maximum(hi, mean)
        # ACI moves each level's alpha on its own: keep a higher level's interval around
        # every lower one's (nested intervals), whatever their alphas did
        order = sorted(lower)
        for a, b in zip(order, order[1:], strict=False):
            lower[b] = np.minimum(lower[b], lower[a])
            upper[b] = np.maximum(upper[b], upper[a])
        gi = self.grid[self.grid <= hs[-1]] - 1
        self._pending[self._offset + T - 1] = (mean[:, gi], scale[:, gi], used)
        return mean, lower, upper

    def update(self, new_rows: F64 | SeriesFrame, exog: Mapping[str, F64] | None = None) -> None:
        """Append ``new_rows[k, n]`` (positional, in ``self.keys`` order) and, optionally,
        the exogenous inputs' rows for the same times (``exog[name][k, n]``). An input seen
        at fit but not given here is unknown (NaN) for these rows; one not seen at fit is
        checked and ignored. A ``SeriesFrame`` is aligned by key name instead: new keys
        join cold, keys it lacks are missing (NaN); its rows are taken as the next steps.
        Then idle keys retire, and a cold key present for ``join_after`` triggers a
        ``refit``."""
        self._check()
        if isinstance(new_rows, SeriesFrame):
            rows, exog = self._align(new_rows, exog)
        else:
            rows = np.asarray(new_rows, dtype=np.float64)
            if rows.ndim == 1:
                rows = rows[None, :]
            if rows.ndim != 2 or rows.shape[1] != self.n_series:
                raise ForecastError(
                    f"{self.name}: update expects rows[k, {self.n_series}], got {rows.shape}"
                )
        k = rows.shape[0]
        xs = self._exog_rows(exog, k)
        bad = ~np.isfinite(rows)
        self.report["nonfinite"] = int(self.report.get("nonfinite", 0)) + int(bad.sum())
        full = np.full((k, self._buf.shape[1]), np.nan)
        full[:, self._pos] = rows
        xfull = {}
        for name, v in xs.items():
            xfull[name] = np.full_like(full, np.nan)
            xfull[name][:, self._pos] = v
        for j in range(k):
            self._append(full[j], {name: v[j] for name, v in xfull.items()})
        if self._n_fit:  # the model's own online steps (nothing fitted: nothing to do)
            self._after_update(k)
        self._retire_idle()
        if self._join_due():
            self.refit()

    def _exog_rows(self, exog: Mapping[str, F64] | None, k: int) -> dict[str, F64]:
        """Checked exogenous rows ``[k, n]`` for every input seen at fit (NaN if not given)."""
        n = self.n_series
        given = dict(exog or {})
        out: dict[str, F64] = {}
        for name, arr in given.items():
            a = np.asarray(arr)
            if a.ndim == 1 and k == 1:
                a = a[None, :]
            if a.shape != (k, n) or a.dtype.kind not in "fiu":
                raise ForecastError(
                    f"{self.name}: exog[{name!r}] must be numeric rows[{k}, {n}] like new_rows, "
                    f"got {a.dtype} {a.shape}"
                )
            if name in self._xbuf:
                out[name] = finite_or_nan(a)
        unknown = sorted(set(given) - set(self._xbuf))
        if unknown:
            log.debug("exog inputs not seen at fit ignored", extra={"exog": unknown})
        for name in self._xbuf:
            out.setdefault(name, np.full((k, n), np.nan))
        return out

    def _after_update(self, rows: int) -> None:
        return None

    def _min_history(self) -> int:
        """Rows of history the model's forecasts read (the online buffer keeps at least so
        many)."""
        return 2

    def _append(self, r: F64, x: Mapping[str, F64] | None = None) -> None:
        """One row of every buffer column (NaN: not observed, the last value is kept)."""
        obs = np.isfinite(r)
        r = np.where(obs, r, self._buf[self._len - 1])
        nf = self._n_fit
        rf, of = r[:nf], obs[:nf]
        T = self._len
        t_abs = self._offset + T
        for g, h in enumerate(self.grid):
            p = self._pending.get(t_abs - int(h))
            if p is None or g >= p[0].shape[1]:
                continue
            mean, scale, used = p
            sc = np.where(of, (rf - mean[:, g]) / scale[:, g], np.nan)
            q = {lv: (lo[g], hi[g]) for lv, (lo, hi) in used.items()}
            self._cal.observe(g, sc, q, self._per_step)
        for g, h in enumerate(self.grid):
            if T - h < 0:  # not measurable yet: keeps its extrapolated scale
                continue
            d = np.abs(rf - self._buf[T - h, :nf])
            step = self.scale_rate * (d - self._scale_state[:, g])
            self._scale_state[:, g] += np.where(of, step, 0.0)
        if T < self.grid[-1]:
            self._extrapolate_scales(T + 1)
        hooks = self._min_history() if nf else 0  # (a model without warm keys: not fitted)
        keep = max(self.keep_s // self.step, 4 * self.H + 2, hooks)
        if self._len == self._buf.shape[0]:  # full: drop the oldest beyond keep, or grow
            drop = max(0, self._len - keep)
            cap = max(self._len - drop + 1, 2 * (self._len - drop), 64)
            self._buf = regrow(self._buf, drop, self._len, cap)
            self._obsbuf = regrow(self._obsbuf, drop, self._len, cap)
            self._xbuf = {k: regrow(b, drop, self._len, cap) for k, b in self._xbuf.items()}
            self._len -= drop
            self._offset += drop
        self._buf[self._len] = r
        self._obsbuf[self._len] = obs
        for k, b in self._xbuf.items():
            b[self._len] = np.nan if x is None or k not in x else x[k]
        self._len += 1
        self._note_seen(t_abs, obs & (r != 0))
        for o in [o for o in self._pending if o < t_abs - self.H]:
            del self._pending[o]
