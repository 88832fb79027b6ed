"""A global LightGBM model: one booster for every series and every horizon step.

Direct multi-horizon: the horizon ``h`` is a feature and each training row is one
(series, origin, h) triple, so one model serves every step without feeding forecasts back
in (no error compounding, one fit). Every value is normalised by the series' recent level
``s = mean(y[o - w + 1 .. o]) + floor`` so one model serves series of any volume; the
target is ``(y[o + h] - y[o]) / (s * k_h)`` and rows are weighted by ``s`` so the L1
objective matches the NMAE we report. ``k_h`` (``horizon_scaling``) is the mean normalised
absolute change over ``h`` steps in the training history (per calibrated horizon, relative
to one step): without it the longer horizons' larger changes decide the splits and the
leaf values, and the shortest horizon is forecast worse than by a model trained for it
alone (GEANT 15 min: 1.004 x persistence for the shared model, 0.970 for one trained on
15 min only; with ``k_h``: 0.977, and 1 h 0.913 -> 0.901; on Abilene, mean of three seeds,
0.838 / 0.903 -> 0.848 / 0.907 at 15 min / 1 h, ``auto`` there unchanged). After
calibration the booster is refitted on the whole history (``refit``: the latest day matters,
GEANT 15-min NMAE 1.04 -> 0.99 x persistence), and again every ``refit_every`` (3 h) while
updating online: on the GEANT slice, whose training part is 1.7 days, the hours that arrive
during the test are a quarter more history (15 min / 1 h: 0.977 / 0.901 -> 0.966 / 0.881 x
persistence). One fit samples at most ``max_rows`` rows, so a refit costs seconds whatever
the number of series. Each fit trains ``bags`` boosters (4), each on its own sample of rows
with its own bagging seed, and forecasts their mean: on a short history the sample decides
much of the model (GEANT 15 min, one booster, seeds 0 / 1: 0.971 / 0.973; four: 0.967 /
0.970; eight add nothing).

Features: lags ``y[o - k] / s`` (k < 12), rolling means (3, 12, 48 steps) and the std over
12 steps, same time one day (and one week, where available) before the target, calendar
terms of the target (two daily Fourier pairs, a weekly pair, weekend flag; each cycle only
where the fitted history spans two of it, see ``_cycles``), ``h``,
``log s``, and optional per-series meta from ``SeriesFrame.meta``: numeric arrays
(e.g. ``distance_km``, ``capacity``, shadow-path ``rtt_ms``) as they are, string arrays
(e.g. ``category``) as categorical codes. Time-varying exogenous inputs
(``SeriesFrame.exog``: shadow-path ``abw_mbps``, ``rtt_ms``, ...; see
:mod:`shadowcast.forecast.exog`) add, per input, its value at the origin and its change over
the last hour, as they are (NaN = unknown; LightGBM routes missing values itself): only what
was measured by the origin, never at the target time.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

# OpenMP threads that spin while waiting make LightGBM 5-10x slower on a shared, busy
# machine; passive waiting costs nothing when it has the cores to itself. Must be set
# before the OpenMP runtime starts (i.e. before lightgbm is imported).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import lightgbm as lgb  # noqa: E402
import numpy as np
import numpy.typing as npt

from shadowcast.errors import ForecastError
from shadowcast.forecast.core import BaseForecaster
from shadowcast.forecast.geo import OFFSET_KEYS
from shadowcast.forecast.inputs import GROUPS
from shadowcast.records import F64
from shadowcast.units import parse_duration

I64 = npt.NDArray[np.int64]
log = logging.getLogger(__name__)

LAGS = 12
ROLL = (3, 12, 48)


def calendar_terms(
    t: npt.NDArray[np.integer] | F64, harmonics: Sequence[int], weekly: bool = True
) -> list[F64]:
    """Time-of-day Fourier pairs (``harmonics`` per day), and with ``weekly`` a weekly pair
    and a weekend flag, for UNIX times ``t`` (seconds; a float array may carry NaN: unknown
    -> NaN terms)."""
    tt = np.asarray(t, dtype=np.float64)
    day = np.mod(tt, 86400.0) / 86400.0
    dow = np.mod(np.floor(tt / 86400.0) + 3.0, 7.0)  # 1970-01-01 was a Thursday; 0 = Monday
    out: list[F64] = []
    for k in harmonics:
        out.append(np.sin(2 * np.pi * k * day))
        out.append(np.cos(2 * np.pi * k * day))
    if not weekly:
        return out
    wk = (dow + day) / 7.0
    out.append(np.sin(2 * np.pi * wk))
    out.append(np.cos(2 * np.pi * wk))
    out.append(np.where(np.isnan(tt), np.nan, (dow >= 5).astype(np.float64)))
    return out


class GlobalGBM(BaseForecaster):
    """Global direct multi-horizon LightGBM on level-normalised features."""

    name = "gbm"
    _offsets: tuple[F64, ...] = ()  # per end, the UTC offset (h) of each fitted series
    _hscale: F64 = np.ones(0)  # k_h per calibrated horizon; a model saved before it: none
    #: Calendar cycles read (daily, weekly): each only where the fitted history spans two of
    #: it. With less, its phase is a time index within the history: the trees learn the
    #: training days' trend through it and carry it into the forecasts (GEANT, 1.7 days
    #: of 15-min training data: 15-min NMAE ratio to persistence over four seeds 0.985,
    #: 1.003, 1.043, 1.053 with the weekly terms, 0.979-0.986 without).
    _cycles: tuple[bool, bool] = (True, True)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """A model saved before bagging holds one ``_booster``: it is the only bag."""
        if "_booster" in state:
            one = state.pop("_booster")
            state.setdefault("_boosters", [] if one is None else [one])
            state.setdefault("bags", 1)
        self.__dict__.update(state)

    def __init__(
        self,
        horizons: Sequence[str | int] = ("15m", "1h"),
        *,
        rounds: int = 100,
        max_rows: int = 150_000,
        num_leaves: int = 31,
        learning_rate: float = 0.08,
        threads: int = 1,
        norm_window: str | int = "1h",
        refit: bool = True,
        refit_every: str | int | None = "3h",
        horizon_scaling: bool = True,
        bags: int = 4,
        **kw: Any,
    ) -> None:
        super().__init__(horizons, **kw)
        self.rounds = rounds
        self.max_rows = max_rows
        self.num_leaves = num_leaves
        self.learning_rate = learning_rate
        self.threads = threads
        self.norm_s = parse_duration(norm_window)
        self.refit_after_calibration = refit
        self.refit_every_s = None if refit_every is None else parse_duration(refit_every)
        self.horizon_scaling = bool(horizon_scaling)
        self._since_fit = 0
        if not 1 <= int(bags) <= 16:
            raise ForecastError(f"gbm: bags must be in 1..16, got {bags}")
        self.bags = int(bags)
        self._boosters: list[lgb.Booster] = []

    @property
    def input_groups(self) -> tuple[str, ...]:
        return GROUPS

    # -- features ------------------------------------------------------------------------
    def _meta_matrix(self, n: int) -> tuple[F64, list[str], list[int]]:
        cols: list[F64] = []
        names: list[str] = []
        cats: list[int] = []
        for key in sorted(self.meta):
            arr = np.asarray(self.meta[key])
            if arr.shape != (n,):
                continue
            if arr.dtype.kind in "fiub":
                cols.append(arr.astype(np.float64))  # NaN: unknown (LightGBM routes it)
            else:
                _, codes = np.unique(arr.astype(str), return_inverse=True)
                cols.append(codes.astype(np.float64))
                cats.append(len(names))
            names.append(f"meta_{key}")
        m = np.stack(cols, axis=1) if cols else np.zeros((n, 0))
        return m, names, cats

    def _features(self, y: F64, o: I64, i: I64, h: I64) -> F64:
        """Rows for (origin, series, step) triples -> ``[R, F]``."""
        season = max(1, 86400 // self.step)
        week = 7 * season
        w = max(1, self.norm_s // self.step)
        lo = max(0, int(o.min()) - max(w, max(ROLL), LAGS, week))
        sub = y[lo : int(o.max()) + 1]
        oo = o - lo
        c = np.concatenate([np.zeros((1, y.shape[1])), np.cumsum(sub, axis=0)])
        c2 = np.concatenate([np.zeros((1, y.shape[1])), np.cumsum(sub * sub, axis=0)])

        def rmean(win: int, cc: F64 = c) -> F64:
            a = np.maximum(oo + 1 - win, 0)
            return np.asarray((cc[oo + 1, i] - cc[a, i]) / (oo + 1 - a), dtype=np.float64)

        s = rmean(w) + self._floor[i]
        inv = 1.0 / s
        feats: list[F64] = [h.astype(np.float64), np.log(s)]
        for k in range(LAGS):
            feats.append(sub[np.maximum(oo - k, 0), i] * inv)
        for win in ROLL:
            feats.append(rmean(win) * inv)
        m12, q12 = rmean(12), rmean(12, c2)
        feats.append(np.sqrt(np.maximum(q12 - m12 * m12, 0.0)) * inv)
        for back in (season, week):
            t = oo + h - back * np.ceil(h / back).astype(np.int64)
            ok = (o + h - back * np.ceil(h / back).astype(np.int64)) >= 0
            val = sub[np.clip(t, 0, sub.shape[0] - 1), i] * inv
            feats.append(np.where(ok, val, np.nan))
        tt = self.time_of(o + h)
        daily, weekly = self._cycles
        if "calendar" not in self.exclude and daily:
            feats.extend(calendar_terms(tt, (1, 2), weekly))
        for off in self._offsets if daily else ():  # the local time of each end (geography)
            local = tt + np.round(off[i] * 3600.0)  # NaN offset: NaN terms (unknown)
            feats.extend(calendar_terms(local, (1,), weekly))
        if "cross_series" not in self.exclude:
            feats.extend(self._group_features(sub, oo, i, w))
        X = np.stack(feats, axis=1)
        if self._meta.shape[1]:
            X = np.concatenate([X, self._meta[i]], axis=1)
        if self._xbuf:
            X = np.concatenate([X, self._exog_features(o, i, inv)], axis=1)
        return X

    def _exog_features(self, o: I64, i: I64, inv: F64) -> F64:
        """Per exogenous input: its value at the origin and its change over the last hour
        (NaN where unknown, or where the hour reaches before the buffer); a rate in Mbit/s
        (``*_mbps``: capacity, headroom, available bandwidth) also relative to the series'
        level (how many times its recent level fits)."""
        back = o - max(1, 3600 // self.step)
        ok = back >= 0
        cols: list[F64] = []
        for name in self.exog_names:
            x = self._xbuf[name]
            now = x[o, i]
            cols.append(now)
            cols.append(np.where(ok, now - x[np.maximum(back, 0), i], np.nan))
            if name.endswith("_mbps"):
                cols.append(np.log1p(np.maximum(now * inv, 0.0)))
        return np.stack(cols, axis=1)

    def _n_exog_columns(self) -> int:
        return sum(3 if k.endswith("_mbps") else 2 for k in self.exog_names)

    def _group_features(self, sub: F64, oo: I64, i: I64, w: int) -> list[F64]:
        """Recent relative change of the network total and of the series' source and
        destination totals (keys ``"src->dst"``): cross-series context for a global model."""
        out: list[F64] = []
        for onehot, gi in self._groups:
            tot = sub @ onehot  # [t, n_groups]
            c = np.concatenate([np.zeros((1, tot.shape[1])), np.cumsum(tot, axis=0)])
            a = np.maximum(oo + 1 - w, 0)
            g = gi[i]
            now = tot[oo, g]
            prev = tot[np.maximum(oo - 1, 0), g]
            mean = (c[oo + 1, g] - c[a, g]) / (oo + 1 - a)
            eps = 1e-9 + 1e-6 * float(np.abs(tot).mean())
            out.append(np.clip(now / (prev + eps) - 1.0, -1.0, 5.0))
            out.append(np.clip(now / (mean + eps) - 1.0, -1.0, 5.0))
        return out

    def _make_groups(self, n: int) -> None:
        self._groups: list[tuple[F64, I64]] = [(np.ones((n, 1)), np.zeros(n, dtype=np.int64))]
        keys = self._col_keys[:n]  # the buffer's first n columns: the fitted keys
        if n and all("->" in k for k in keys):
            for side in (0, 1):
                names = [k.split("->")[side] for k in keys]
                _, gi = np.unique(names, return_inverse=True)
                gi = gi.astype(np.int64)
                onehot = np.zeros((n, int(gi.max()) + 1))
                onehot[np.arange(n), gi] = 1.0
                self._groups.append((onehot, gi))

    def _target(self, y: F64, o: I64, i: I64, h: I64) -> tuple[F64, F64]:
        """Normalised change ``(y[o + h] - y[o]) / s`` (before ``k_h``) and the level ``s``."""
        w = max(1, self.norm_s // self.step)
        c = np.concatenate([np.zeros((1, y.shape[1])), np.cumsum(y, axis=0)])
        a = np.maximum(o + 1 - w, 0)
        s = (c[o + 1, i] - c[a, i]) / (o + 1 - a) + self._floor[i]
        return (y[o + h, i] - y[o, i]) / s, s

    def _k(self, h: I64) -> F64:
        """``k_h`` for steps ``h`` (interpolated over the calibrated grid, the last value
        beyond it; 1 without horizon scaling)."""
        if self._hscale.size == 0:
            return np.ones(h.shape)
        g = self.grid[: self._hscale.size].astype(np.float64)
        return np.asarray(np.interp(h.astype(np.float64), g, self._hscale), dtype=np.float64)

    def _horizon_scales(self, y: F64, rng: np.random.Generator, first: int, grid: I64) -> F64:
        """``k_h`` over ``grid``: the level-weighted mean |normalised change| over ``h`` steps
        of a sample of observed (origin, series) pairs, relative to that of the first
        horizon (so ``k`` = 1 at the shortest step); 1 where the history shows no change."""
        T, n = y.shape
        n_orig = T - int(grid[-1]) - first
        R = int(min(50_000, n_orig * n))
        o = rng.integers(first, first + n_orig, R)
        i = rng.integers(0, n, R)
        _, s = self._target_scale(y, o, i)  # the level at each origin: the same for every h
        out = np.ones(grid.size)
        for g, h in enumerate(grid):
            seen = self._obs[o + h, i] & self._obs[o, i]
            # level-weighted mean |change / level| = sum |change| / sum level
            change = np.abs(y[o[seen] + h, i[seen]] - y[o[seen], i[seen]])
            out[g] = float(np.sum(change) / max(float(np.sum(s[seen])), 1e-300))
        if not out[0] > 0 or not np.all(np.isfinite(out)):
            return np.ones(grid.size)
        return np.asarray(np.maximum(out / out[0], 1e-3), dtype=np.float64)

    def _after_update(self, rows: int) -> None:
        """Online: refit on everything kept so far every ``refit_every`` (if set); the
        conformal scores and ACI carry on across refits."""
        self._refit_online(rows)

    def _min_history(self) -> int:
        season = max(1, 86400 // self.step)
        return 7 * season + max(ROLL) + LAGS + self.H + 2

    # -- hooks ---------------------------------------------------------------------------
    def _fit_model(self, y: F64) -> None:
        T, n = y.shape
        self._since_fit = 0
        self._meta, names, cats = self._meta_matrix(n)
        self._offsets = tuple(
            np.asarray(self.meta[k], dtype=np.float64)
            for k in OFFSET_KEYS
            if k in self.meta and np.shape(self.meta[k]) == (n,)
        )
        self._make_groups(n)
        span = T * self.step
        self._cycles = (span >= 2 * 86400, span >= 14 * 86400)
        first = min(LAGS, max(0, T - 2))
        # every horizon the history can show at least once; longer ones are predicted as
        # the longest trained (h is a feature: trees hold its last split beyond it)
        fit_grid = self.grid[self.grid <= T - 1 - first]
        if fit_grid.size == 0:
            self._boosters = []
            log.info("gbm: history too short to train, falling back to persistence")
            return
        if fit_grid.size < self.grid.size:
            log.info(
                "gbm: horizons beyond the history trained as the longest it shows",
                extra={"longest_trained_steps": int(fit_grid[-1])},
            )
        self._hscale = (
            self._horizon_scales(y, np.random.default_rng(self.seed), first, fit_grid)
            if self.horizon_scaling
            else np.ones(0)
        )
        boosters = [self._train(y, first, fit_grid, cats, self.seed + b) for b in range(self.bags)]
        self._boosters = [b for b in boosters if b is not None]

    def _train(
        self, y: F64, first: int, fit_grid: I64, cats: list[int], seed: int
    ) -> lgb.Booster | None:
        """One booster on a sample of (origin, series, h) rows drawn with ``seed``."""
        T, n = y.shape
        rng = np.random.default_rng(seed)
        # origins: uniform over those that show every trained horizon
        n_orig = T - int(fit_grid[-1]) - first
        R = int(min(self.max_rows, n_orig * n * len(fit_grid)))
        o = rng.integers(first, first + n_orig, R)
        i = rng.integers(0, n, R)
        h = fit_grid[rng.integers(0, len(fit_grid), R)]
        seen = self._obs[o + h, i]  # a target that was not observed is not learnt from
        if not seen.all():
            o, i, h = o[seen], i[seen], h[seen]
        if o.size == 0:
            return None
        X = self._features(y, o, i, h)
        # meta columns follow the base features (exogenous ones come last): index them in X
        first_meta = X.shape[1] - self._meta.shape[1] - self._n_exog_columns()
        cats = [first_meta + c for c in cats]
        target, s = self._target(y, o, i, h)
        target = target / self._k(h)
        params = {
            "objective": "l1",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": 50,
            "feature_fraction": 0.9,
            "bagging_fraction": 0.8,
            "bagging_freq": 1,
            "lambda_l2": 1.0,
            "num_threads": self.threads,
            "deterministic": True,
            "force_row_wise": True,
            "max_bin": 127,
            "seed": seed,
            "verbose": -1,
        }
        ds = lgb.Dataset(
            X,
            label=target,
            weight=s / s.mean(),
            categorical_feature=cats or "auto",
            free_raw_data=True,
        )
        return lgb.train(params, ds, num_boost_round=self.rounds)

    def _point_at(self, y: F64, origins: I64, hs: I64, cols: I64 | None) -> F64:
        n = y.shape[1]
        cidx = np.arange(n, dtype=np.int64) if cols is None else cols
        k, m, G = len(origins), len(cidx), len(hs)
        base = np.broadcast_to(y[origins][:, cidx][:, :, None], (k, m, G))
        if not self._boosters:
            return np.array(base, dtype=np.float64)
        o = np.broadcast_to(origins[:, None, None], (k, m, G)).ravel()
        i = np.broadcast_to(cidx[None, :, None], (k, m, G)).ravel()
        h = np.broadcast_to(hs[None, None, :], (k, m, G)).ravel()
        out = np.empty(o.size)
        chunk = 500_000
        for a in range(0, o.size, chunk):
            sl = slice(a, a + chunk)
            X = self._features(y, o[sl], i[sl], h[sl])
            _, s = self._target_scale(y, o[sl], i[sl])
            nt = self.threads if o.size > 200_000 else 1
            pred = np.mean([b.predict(X, num_threads=nt) for b in self._boosters], axis=0)
            out[sl] = y[o[sl], i[sl]] + pred * s * self._k(h[sl])
        return out.reshape(k, m, G)

    def _target_scale(self, y: F64, o: I64, i: I64) -> tuple[None, F64]:
        w = max(1, self.norm_s // self.step)
        lo = max(0, int(o.min()) - w)
        sub = y[lo : int(o.max()) + 1]
        oo = o - lo
        c = np.concatenate([np.zeros((1, y.shape[1])), np.cumsum(sub, axis=0)])
        a = np.maximum(oo + 1 - w, 0)
        return None, (c[oo + 1, i] - c[a, i]) / (oo + 1 - a) + self._floor[i]
