"""Ensembling by backtest: a convex blend of member models, weights chosen per horizon.

The members' forecasts from every origin of the calibration window (out of sample: the
members were fitted on the history before it) are blended with weights on a 0.1 simplex
grid; per calibrated horizon the blend with the least scale-normalised absolute error over
the window wins. The same window then gives the blend's conformal scores: choosing among the
286 blends of four members is a mild selection, which the online ACI corrects if it shows.
A weight of 1 on one member is per-horizon model *selection*; the default members are
persistence, the profile model, the global LightGBM model, the Theta model (adding Theta:
Abilene 0.832/0.885 -> 0.820/0.877 x persistence at 15 min / 1 h, GEANT unchanged; 10,000
series 50 -> 63 s) and, where torch is installed (the ``neural`` extra), the neural model
(:mod:`shadowcast.forecast.neural`): it joins a horizon's blend only where the backtest
gives it weight.

The window is backtested in ``cal_folds`` parts (3): the members forecast each part after a
fit on all the history before it, as they will in service, where they refit on what
arrives. With one fit before the whole window, members that gain from more history (the GBM,
the neural model) were valued on less than they will have: on the GEANT slice, whose window
is 13 h after 27 h of history, ``auto`` 15 min / 1 h 0.951 / 0.878 -> 0.949 / 0.873 x
persistence. Each part costs one more fit of every member.

Online (``online_rate`` > 0, "online expert aggregation"): every forecast's member
predictions are kept until its target arrives through ``update``; then each candidate
blend's absolute error (in Mbit/s, so big series weigh as they do in NMAE) updates an
exponentially weighted mean loss per horizon, seeded with the calibration window's. Each
series then uses the blend with the least ``own loss + shrinkage x pooled mean loss``: a big
series' own record decides for it, a small one follows the pool (losses are in Mbit/s).
Only observations seen before a forecast ever choose its weights.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
from collections.abc import Callable, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from shadowcast.errors import ConfigError
from shadowcast.forecast.baselines import Persistence
from shadowcast.forecast.conformal import ew_scales
from shadowcast.forecast.core import BaseForecaster
from shadowcast.forecast.gbm import GlobalGBM
from shadowcast.forecast.inputs import GROUPS
from shadowcast.forecast.profile import ProfileEW
from shadowcast.forecast.stats import Theta
from shadowcast.records import F64, SeriesFrame

I64 = npt.NDArray[np.int64]
log = logging.getLogger(__name__)
_SHARED = (
    "step",
    "keys",
    "meta",
    "exog_names",
    "exclude",
    "_t0",
    "H",
    "grid",
    "_floor",
    "seed",
    "_n_fit",
    "_col_keys",
)


def _neural(*args: Any, **kw: Any) -> BaseForecaster:
    from shadowcast.forecast.neural import NeuralForecaster  # torch: imported on first use

    return NeuralForecaster(*args, **kw)


_neural.name = "neural"  # type: ignore[attr-defined]
Member = Callable[..., BaseForecaster]
#: Members by name (``forecast.auto_members``).
MEMBERS: dict[str, Member] = {
    "persistence": Persistence,
    "profile": ProfileEW,
    "gbm": GlobalGBM,
    "theta": Theta,
    "neural": _neural,
}
DEFAULT_MEMBERS = ("persistence", "profile", "gbm", "theta", "neural")


def resolve_members(members: Sequence[str | Member]) -> list[Member]:
    """Member factories from names or factories. ``neural`` needs torch (the ``neural``
    extra): without it, it is left out (logged), so ``auto`` works everywhere and takes the
    neural model where it is installed."""
    out: list[Member] = []
    for m in members:
        if not isinstance(m, str):
            out.append(m)
            continue
        if m not in MEMBERS:
            raise ConfigError(f"forecast.auto_members: unknown member {m!r}; choose from "
                              f"{sorted(MEMBERS)}")  # fmt: skip
        if m == "neural" and importlib.util.find_spec("torch") is None:
            log.info("auto: the neural member needs the neural extra (torch): left out")
            continue
        out.append(MEMBERS[m])
    if not out:
        raise ConfigError("forecast.auto_members: no member left")
    return out


def _simplex(k: int, steps: int = 10) -> list[tuple[float, ...]]:
    out = []
    for c in itertools.product(range(steps + 1), repeat=k):
        if sum(c) == steps:
            out.append(tuple(x / steps for x in c))
    return out


class Ensemble(BaseForecaster):
    """Blend of members; weights per calibrated horizon from the calibration backtest."""

    name = "auto"

    def __init__(
        self,
        horizons: Sequence[str | int] = ("15m", "1h"),
        *,
        members: Sequence[str | Member] = DEFAULT_MEMBERS,
        member_options: dict[str, dict[str, Any]] | None = None,
        online_rate: float = 0.05,
        shrinkage: float = 10.0,
        cal_folds: int = 3,
        **kw: Any,
    ) -> None:
        super().__init__(horizons, **kw)
        if not 1 <= int(cal_folds) <= 8:
            raise ConfigError(f"forecast.auto_cal_folds must be in 1..8, got {cal_folds}")
        self.cal_folds = int(cal_folds)
        self.online_rate = float(online_rate)
        self.shrinkage = float(shrinkage)
        self._sloss: F64 | None = None  # [G, n, n_combos] the same per series
        self._wser: F64 | None = None  # [G, n, M] per-series weights
        factories = resolve_members(members)
        self._combos = np.array(_simplex(len(factories)))
        self._loss: F64 | None = None  # [G, n_combos] EW mean |error| per point
        self._made: dict[int, F64] = {}  # absolute origin -> member points [n, G, M]
        opts = member_options or {}
        self.members = [m(horizons, **opts.get(m.name, {})) for m in factories]  # type: ignore[attr-defined]
        self._weights: F64 | None = None
        self._fits = 0

    @property
    def input_groups(self) -> tuple[str, ...]:
        reads = {g for m in self.members for g in m.input_groups}
        return tuple(g for g in GROUPS if g in reads)

    def _sync(self, m: BaseForecaster) -> None:
        for a in _SHARED:
            setattr(m, a, getattr(self, a))
        m._offset = self._offset
        if hasattr(self, "_buf"):
            m._buf, m._len, m._xbuf = self._buf, self._len, self._xbuf
            m._obsbuf = self._obsbuf

    def fit(self, history: SeriesFrame) -> Self:
        self._fits = 0  # a refit fits every member again (keys may have joined)
        self._made.clear()
        return super().fit(history)

    def _after_update(self, rows: int) -> None:
        for m in self.members:
            self._sync(m)
            m._after_update(rows)
        if (
            self._loss is None
            or self._sloss is None
            or self._wser is None
            or self._weights is None
            or self.online_rate <= 0
        ):
            self._made.clear()
            return
        T = self._y.shape[0]
        end = self._offset + T  # absolute index one past the newest row
        for t_abs in range(end - rows, end):
            act = self._y[t_abs - self._offset]
            seen = self._obs[t_abs - self._offset]  # unobserved targets teach nothing
            if not seen.any():
                continue
            for g, h in enumerate(self.grid):
                pm = self._made.get(t_abs - int(h))
                if pm is None or g >= pm.shape[1]:
                    continue
                err = np.abs(pm[:, g, :] @ self._combos.T - act[:, None])  # [n, C]
                step = self.online_rate * (err - self._sloss[g])
                self._sloss[g] += np.where(seen[:, None], step, 0.0)
                self._loss[g] += self.online_rate * (err[seen].mean(axis=0) - self._loss[g])
                self._choose(g)
        for o in [o for o in self._made if o < end - int(self.grid[-1])]:
            del self._made[o]

    def _choose(self, g: int) -> None:
        assert self._loss is not None and self._sloss is not None
        assert self._weights is not None and self._wser is not None
        self._weights[g] = self._combos[int(np.argmin(self._loss[g]))]
        total = self._sloss[g] + self.shrinkage * self._loss[g][None, :]
        self._wser[g] = self._combos[np.argmin(total, axis=1)]

    def _min_history(self) -> int:
        return max(m._min_history() for m in self.members)

    def _fit_model(self, y: F64) -> None:
        first = self._fits == 0
        self._fits += 1
        for m in self.members:
            self._sync(m)
            if first or m.refit_after_calibration:
                m._fit_model(y)

    def _member_points(self, y: F64, origins: I64, hs: I64, cols: I64 | None) -> F64:
        preds = []
        for m in self.members:
            self._sync(m)
            preds.append(m._point_at(y, origins, hs, cols))
        return np.stack(preds, axis=-1)  # [k, m, G, M]

    def _cal_points(self, y: F64, origins: I64, cols: I64 | None) -> F64:
        """Member forecasts over the calibration window, blended with weights chosen on it;
        the base class scores the blend over the same window."""
        T = y.shape[0]
        parts = [p for p in np.array_split(origins, self.cal_folds) if p.size] or [origins]
        blocks = []
        for j, part in enumerate(parts):
            if j:  # later parts: members refitted on the history before them
                for m in self.members:
                    self._sync(m)
                    m._fit_model(y[: int(part[0]) + 1])
            blocks.append(self._member_points(y, part, self.grid, cols))
        P = np.concatenate(blocks, axis=0)  # [k, m, G, M]
        sub = y if cols is None else y[:, cols]
        floor = self._floor if cols is None else self._floor[cols]
        combos = self._combos
        self._loss = np.zeros((len(self.grid), len(combos)))
        self._sloss = np.zeros((len(self.grid), y.shape[1], len(combos)))
        self._wser = None
        self._made.clear()
        self._weights = np.zeros((len(self.grid), len(self.members)))
        self._weights[:, 0] = 1.0
        for g, h in enumerate(self.grid):
            ok = origins + h <= T - 1
            o = origins[ok]
            if o.size == 0:
                continue
            sc = ew_scales(sub, int(h), self.scale_rate, int(o[0]))[: o.size] + floor
            act = sub[o + h]
            pg = P[ok, :, g]
            errs = np.empty(len(combos))
            own = np.empty((act.shape[1], len(combos)))  # [m, C] mean |error| per series
            for a in range(0, len(combos), 64):  # [o, m, 64] at a time: bounded memory
                err = np.abs(act[:, :, None] - pg @ combos[a : a + 64].T)
                errs[a : a + 64] = (err / sc[:, :, None]).mean(axis=(0, 1))
                own[:, a : a + 64] = err.mean(axis=0)
            self._weights[g] = combos[int(np.argmin(errs))]
            self._loss[g] = own.mean(axis=0)
            self._sloss[g] = self._loss[g][None, :]
            if cols is None:
                self._sloss[g] = own
            else:
                self._sloss[g][cols] = own
        # per-series weights start from the calibration losses; the conformal scores below
        # are the pooled blend's (ACI absorbs the difference online)
        self._wser = np.zeros((len(self.grid), y.shape[1], len(self.members)))
        self._wser[:] = self._weights[:, None, :]
        if self.online_rate > 0:
            for g in range(len(self.grid)):
                self._choose(g)
        self.report["weights"] = {
            int(h): dict(zip([mm.name for mm in self.members], map(float, w), strict=True))
            for h, w in zip(self.grid, self._weights, strict=True)
        }
        return np.asarray(np.einsum("kmgj,gj->kmg", P, self._weights), dtype=np.float64)

    def _point_at(self, y: F64, origins: I64, hs: I64, cols: I64 | None) -> F64:
        P = self._member_points(y, origins, hs, cols)
        if cols is None and origins.size == 1 and int(origins[0]) == y.shape[0] - 1:
            gi = np.searchsorted(hs, self.grid)
            ok = (gi < hs.size) & (hs[np.minimum(gi, hs.size - 1)] == self.grid)
            self._made[self._offset + int(origins[0])] = P[0][:, gi[ok], :]
        if self._weights is None:
            return np.asarray(P.mean(axis=-1), dtype=np.float64)
        gi = np.clip(np.searchsorted(self.grid, hs, side="right") - 1, 0, len(self.grid) - 1)
        if self._wser is not None:
            Ws = self._wser[gi] if cols is None else self._wser[gi][:, cols]  # [G, m, M]
            return np.asarray(np.einsum("kmgj,gmj->kmg", P, Ws), dtype=np.float64)
        W = self._weights[gi]  # [G, M]
        return np.asarray(np.einsum("kmgj,gj->kmg", P, W), dtype=np.float64)
