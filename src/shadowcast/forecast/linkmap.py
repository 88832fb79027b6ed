"""Every step's class forecasts mapped onto links through the routing in force.

The series are the (class, OD) pairs stacked (class-major); the routing of each class is its
own (a plan may route classes differently), so the stacked routing is ``[R_c1 | R_c2 | ...]``.
Link means add up; link bounds combine the series' half-widths with the correlation of the
model's realised errors per horizon (:func:`~shadowcast.forecast.links.link_bounds`), learnt
over the last day from targets already observed; until 50 errors are in, the lag-h changes
of the recent history stand in. Quantiles are never added.

The combined bounds are then calibrated on the links themselves (``calibrate_rate`` > 0):
per horizon and level, the link half-widths are multiplied by a factor that online quantile
tracking (conformal PI control) moves with every observed target, up when more links than
the nominal share end above their bound, down when fewer do. The correlation model is exact
only for Gaussian errors; on the Abilene week its 80 % bounds (nominal 90 % one-sided) held
93 % of link-steps at 1 h, and any change in how fast the OD widths move tipped that either
way. The factor is pooled over links (one link's misses are too rare to learn from alone),
starts at 1 and stays within [1/8, 8].
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from shadowcast.errors import ConfigError
from shadowcast.forecast.links import copula_loadings, link_bounds, sample_loadings
from shadowcast.records import F64, Forecast

MIN_ERRORS = 50
#: the calibration factor's bounds (log): a runaway factor is a bug, not a calibration
_MAX_LOG_FACTOR = float(np.log(8.0))


@dataclass(frozen=True, slots=True)
class LinkPrediction:
    """Predicted load ``mean[n_links, H]`` (Mbit/s) and upper bounds per level; ``util``
    is ``mean / capacity``."""

    issued_s: int
    step_s: int
    mean: F64
    upper: Mapping[float, F64]
    capacity: F64

    @property
    def util(self) -> F64:
        return np.asarray(self.mean / self.capacity[:, None], dtype=np.float64)

    def util_upper(self, level: float) -> F64:
        up = self.upper.get(level)
        return self.util if up is None else np.asarray(up / self.capacity[:, None])


def stack(by_class: Mapping[str, Forecast], classes: Sequence[str]) -> Forecast:
    """Class forecasts ``[n_od, H]`` stacked into one ``[C * n_od, H]`` forecast."""
    fcs = [by_class[c] for c in classes]
    levels = sorted(set.intersection(*(set(f.upper) for f in fcs))) if fcs else []
    return Forecast(
        mean=np.vstack([f.mean for f in fcs]),
        lower={lv: np.vstack([f.lower[lv] for f in fcs]) for lv in levels},
        upper={lv: np.vstack([f.upper[lv] for f in fcs]) for lv in levels},
        model=fcs[0].model if fcs else "",
    )


class LinkMapper:
    """Maps stacked class forecasts onto links; learns the error correlation as it goes."""

    def __init__(
        self,
        capacity_mbps: F64,
        classes: Sequence[str],
        lags: Sequence[int],
        step_s: int,
        *,
        window_steps: int = 288,
        refresh_steps: int = 288,
        calibrate_rate: float = 0.1,
    ) -> None:
        if not 0.0 <= calibrate_rate <= 1.0:
            raise ConfigError(f"forecast.link_calibration_rate must be in [0, 1]: {calibrate_rate}")
        self.capacity = np.asarray(capacity_mbps, dtype=np.float64)
        self.classes = tuple(classes)
        self.lags = sorted(set(int(h) for h in lags))
        self.step_s = int(step_s)
        self.window = int(window_steps)
        self.refresh = max(1, int(refresh_steps))
        self._made: dict[int, deque[tuple[int, F64]]] = {h: deque() for h in self.lags}
        self._errs: dict[int, deque[F64]] = {h: deque(maxlen=self.window) for h in self.lags}
        self._recent: deque[F64] = deque(maxlen=self.window + max(self.lags, default=1))
        self._loadings: dict[int, F64] | None = None
        self._since = 0
        self.calibrate_rate = float(calibrate_rate)
        #: log of the half-width factor per (lag, level)
        self._logf: dict[tuple[int, float], float] = {}
        #: per lag: (target step start, link mean, raw half-widths per level) awaiting it
        self._bounds: dict[int, deque[tuple[int, F64, dict[float, F64]]]] = {
            h: deque() for h in self.lags
        }

    def factor(self, lag: int, level: float) -> float:
        """The calibration factor on the link half-widths at ``lag`` steps ahead (1: none)."""
        return float(np.exp(self._logf.get((int(lag), float(level)), 0.0)))

    def factors(self) -> dict[tuple[int, float], float]:
        """Every (lag, level) factor learnt so far."""
        return {key: float(np.exp(v)) for key, v in self._logf.items()}

    def state(self) -> dict[str, Any]:
        """What a restart keeps: the calibration factors (the bounds awaiting their targets
        and the error correlation are learnt again from the steps that follow)."""
        return {"lags": list(self.lags), "step_s": self.step_s, "logf": dict(self._logf)}

    def load_state(self, st: Mapping[str, Any]) -> bool:
        """The factors saved by :meth:`state`, if they were learnt at the same horizons and
        step (else they do not apply: False, and the factors start at 1)."""
        if st.get("lags") != list(self.lags) or st.get("step_s") != self.step_s:
            return False
        logf = {(int(h), float(lv)): float(v) for (h, lv), v in dict(st.get("logf", {})).items()}
        self._logf = {
            k: float(np.clip(v, -_MAX_LOG_FACTOR, _MAX_LOG_FACTOR)) for k, v in logf.items()
        }
        return True

    def observe(self, t_s: int, actual: F64, load: F64 | None = None) -> None:
        """The stacked actual values of the step starting at ``t_s``, and the measured link
        ``load`` (Mbit/s; what the bounds are calibrated on, when given)."""
        a = np.asarray(actual, dtype=np.float64)
        self._calibrate(t_s, None if load is None else np.asarray(load, dtype=np.float64))
        self._recent.append(a)
        for h in self.lags:
            q = self._made[h]
            while q and q[0][0] <= t_s:
                tgt, mean = q.popleft()
                if tgt == t_s:
                    self._errs[h].append(a - mean)
        self._since += 1

    def map(
        self,
        issued_s: int,
        fc: Forecast,
        routing: sp.csr_matrix,
        columns: Sequence[int] | None = None,
    ) -> LinkPrediction:
        """Link prediction of the stacked forecast ``fc`` under ``routing`` (stacked): the
        mean at every step ahead, the upper bounds at ``columns`` (steps ahead, 1-based; all
        when None) and NaN at the others (bounds cost a pass over the routing per step)."""
        if self._loadings is None or self._since >= self.refresh:
            self._loadings = self._fresh_loadings(fc.mean.shape[0])
            self._since = 0
        H = fc.mean.shape[1]
        cols = list(range(1, H + 1)) if columns is None else sorted(c for c in columns if c <= H)
        sub = Forecast(
            mean=fc.mean[:, [c - 1 for c in cols]],
            upper={lv: v[:, [c - 1 for c in cols]] for lv, v in fc.upper.items()},
            lower={lv: v[:, [c - 1 for c in cols]] for lv, v in fc.lower.items()},
            model=fc.model,
        )
        by_col = {j + 1: self._loadings[self._lag_at(c)] for j, c in enumerate(cols)}
        _, sub_up = link_bounds(sub, routing, by_col if self.lags else None, lower=False)
        mean = np.asarray(routing @ fc.mean, dtype=np.float64)
        up: dict[float, F64] = {}
        for lv, v in sub_up.items():
            full = np.full((routing.shape[0], H), np.nan)
            full[:, [c - 1 for c in cols]] = v
            up[lv] = full
        if self.calibrate_rate > 0 and self.lags:
            raw = {lv: v - mean for lv, v in up.items()}
            for h in self.lags:  # the raw half-widths at each lag, to learn the factor
                if h in cols:
                    tgt = issued_s + (h - 1) * self.step_s
                    hw = {lv: w[:, h - 1].copy() for lv, w in raw.items()}
                    self._bounds[h].append((tgt, mean[:, h - 1].copy(), hw))
            for c in cols:
                for lv in up:
                    f = self.factor(self._lag_at(c), lv)
                    up[lv][:, c - 1] = mean[:, c - 1] + f * raw[lv][:, c - 1]
        for h in self.lags:  # remember the mean at each lag's target to learn its error
            if h <= fc.mean.shape[1]:
                self._made[h].append((issued_s + (h - 1) * self.step_s, fc.mean[:, h - 1].copy()))
        return LinkPrediction(issued_s, self.step_s, mean, up, self.capacity)

    def _lag_at(self, col: int) -> int:
        """The lag whose loadings and factor step ``col`` ahead takes: the longest ``<=
        col``, else the shortest (the loadings are kept for exactly ``self.lags``)."""
        return max([g for g in self.lags if g <= col] or self.lags[:1])

    def _calibrate(self, t_s: int, load: F64 | None) -> None:
        """Quantile tracking on the log factor: ``+= rate * (missed share - nominal)``, per
        lag and level, with the bounds whose target is the step starting ``t_s``. The share
        counts the links with a measured load and a positive half-width; the nominal share
        of a central ``L`` % interval's upper bound is ``(1 - L/100) / 2``."""
        for h in self.lags:
            q = self._bounds[h]
            while q and q[0][0] <= t_s:
                tgt, mean, hw = q.popleft()
                if load is None or tgt != t_s or mean.shape != load.shape:
                    continue
                for lv, w in hw.items():
                    ok = np.isfinite(load) & np.isfinite(w) & (w > 0)
                    if not ok.any():
                        continue
                    key = (h, float(lv))
                    lf = self._logf.get(key, 0.0)
                    missed = float((load[ok] > mean[ok] + np.exp(lf) * w[ok]).mean())
                    alpha = (1.0 - float(lv) / 100.0) / 2.0
                    lf += self.calibrate_rate * (missed - alpha)
                    self._logf[key] = float(np.clip(lf, -_MAX_LOG_FACTOR, _MAX_LOG_FACTOR))

    def _fresh_loadings(self, n: int) -> dict[int, F64]:
        out: dict[int, F64] = {}
        hist = np.vstack(list(self._recent)) if self._recent else np.zeros((0, n))
        for h in self.lags:
            errs = self._errs[h]
            if len(errs) >= MIN_ERRORS and errs[0].shape[0] == n:
                out[h] = sample_loadings(np.vstack(list(errs)))
            elif hist.shape[0] > h + 2 and hist.shape[1] == n:
                out[h] = copula_loadings(hist, lag=h)
            else:
                out[h] = np.zeros((n, 0))
        return out


def stacked_routing(matrices: Sequence[sp.csr_matrix]) -> sp.csr_matrix:
    return sp.hstack(list(matrices), format="csr")
