"""Recalibration every cycle: the forecasts the service issues, corrected by what the ledger saw.

Two corrections on top of the champion model's forecasts ``mean[n, H]`` (and bounds):

* **level ratios while adapting.** A series of a group that drifted adapts for
  ``adapt_steps``: for every step ahead ``h`` its forecasts are multiplied by
  ``ratio[i, h]``, learnt from the realised values of its own earlier forecasts at that
  step ahead, ``ratio <- ratio + rate * ((y + eps) / (yhat + eps) - ratio)``. A level shift,
  a new application or a measurement change is absorbed in a few steps instead of the day
  a seasonal model needs; once the series stops adapting its ratios relax back to 1 (the
  model, refitted on drift, carries the new level by then).
* **interval widths per volume decile and step ahead** (:class:`GroupACI`): the coverage of
  every decile is kept at the nominal level, not only the pooled coverage the model's own
  conformal calibration targets.
* **interval widths of the series adapting after a drift**: one more group, learnt only
  from forecasts issued after the drift, and not by stepping a width up and down (after
  the misses of a change an adaptive step overshoots: two misses widen the intervals for
  many steps of full coverage) but from the quantile of its recent scores: the width
  factor that would have put ``level`` % of the group's series inside their intervals
  over the last ``score_steps`` steps, ``|y - mean| / half-width`` at each step ahead.

Both are vectorised over series and steps ahead; ``learn`` runs once per step.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from shadowcast.forecast.conformal import GroupACI
from shadowcast.records import F64, Forecast

I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]


@dataclass(frozen=True, slots=True)
class _Issued:
    issued_s: int
    raw: F64  # the model's mean [n, H]
    lower: Mapping[float, F64]  # the bounds issued (corrected)
    upper: Mapping[float, F64]
    deciles: I64
    adapting: B  # which series adapted when this was issued
    mean: F64  # the corrected mean [n, H]
    # per level, the half-widths above and below the mean before the drifted group's
    # factor (its unit), for the adapting series' scores; None when none adapted
    unit: Mapping[float, tuple[F64, F64]] | None


class Adapter:
    """Per-series level ratios while adapting, per-decile interval widths (module docstring)."""

    def __init__(
        self,
        n_series: int,
        horizon: int,
        levels: Sequence[float],
        step_s: int,
        *,
        rate: float = 0.3,
        relax: float = 0.02,
        gamma: float = 0.02,
        deciles: int = 10,
        max_ratio: float = 10.0,
        score_steps: int = 3,
        enabled: bool = True,
    ) -> None:
        self.n = int(n_series)
        self.H = int(horizon)
        self.levels = tuple(float(x) for x in levels)
        self.step_s = int(step_s)
        self.rate, self.relax, self.max_ratio = float(rate), float(relax), float(max_ratio)
        self.enabled = enabled
        self.ratio = np.ones((self.n, self.H))
        self.level = np.zeros(self.n)  # EW |y|: the ratio's epsilon
        self.adapt_until = np.full(self.n, -1, dtype=np.int64)  # time (s) adaptation ends
        self.widths = GroupACI(self.levels, self.H, deciles, gamma=gamma)
        self.drifted = GroupACI(self.levels, self.H, 1, gamma=0.0)  # set by _score
        self._issued: deque[_Issued] = deque(maxlen=self.H)
        self.score_steps = int(score_steps)
        # per level and step ahead, the adapting series' scores of the last steps
        self._scores: dict[float, list[deque[F64]]] = {}
        self._reset_scores()

    def adapting(self, now_s: int) -> B:
        return np.asarray(self.adapt_until > now_s)

    def start(self, members: I64, now_s: int, steps: int) -> None:
        """Series ``members`` adapt from ``now_s`` for ``steps`` steps."""
        fresh = members[self.adapt_until[members] <= now_s]
        if fresh.size and not self.adapting(now_s).any():
            self.drifted.reset()
            self._reset_scores()
        self.adapt_until[members] = now_s + int(steps) * self.step_s

    def correct(self, issued_s: int, fc: Forecast, deciles: I64) -> Forecast:
        """The forecast issued at ``issued_s`` (column ``j``: the step starting
        ``issued_s + j * step``), corrected; remembered for ``learn``."""
        if not self.enabled or fc.mean.shape[0] != self.n:
            return fc
        H = min(self.H, fc.mean.shape[1])
        adapting = self.adapting(issued_s)
        r = self.ratio[:, :H]
        mean = fc.mean.copy()
        mean[:, :H] *= r
        groups = np.where(adapting, -1, deciles)
        lower: dict[float, F64] = {}
        upper: dict[float, F64] = {}
        unit: dict[float, tuple[F64, F64]] = {}
        for lv, hi in fc.upper.items():
            f = np.ones_like(fc.mean)
            f[:, :H] = r * self.widths.factors(lv, groups)[:, :H]
            lo = fc.lower.get(lv)
            if adapting.any():
                unit[lv] = ((hi - fc.mean) * f, (fc.mean - (lo if lo is not None else hi)) * f)
                f[adapting, :H] *= self.drifted.factors(lv, np.zeros(1, np.int64))[0, :H]
            upper[lv] = mean + (hi - fc.mean) * f
            if lo is not None:
                low = mean - (fc.mean - lo) * f
                lower[lv] = np.maximum(low, 0.0) if (lo >= 0).all() else low
        out = Forecast(mean=mean, lower=lower, upper=upper, model=fc.model)
        self._issued.append(
            _Issued(issued_s, fc.mean, lower, upper, np.asarray(deciles), adapting, mean,
                    unit if adapting.any() else None)
        )  # fmt: skip
        return out

    def learn(self, t_s: int, actual: F64) -> None:
        """The realised values of the step starting at ``t_s``."""
        if not self.enabled:
            return
        y = np.asarray(actual, dtype=np.float64)
        if y.shape != (self.n,):
            return
        ok = np.isfinite(y)
        self.level += 0.05 * (np.where(ok, np.abs(y), self.level) - self.level)
        adapting = self.adapting(t_s)
        eps = 0.02 * self.level + 1e-9
        for iss in self._issued:
            h = (t_s - iss.issued_s) // self.step_s + 1
            if not 1 <= h <= min(self.H, iss.raw.shape[1]):
                continue
            m = iss.raw[:, h - 1]
            q = np.clip((y + eps) / (np.maximum(m, 0.0) + eps), 0.0, self.max_ratio)
            col = self.ratio[:, h - 1]
            fast = adapting & ok & np.isfinite(q)
            col[fast] += self.rate * (q[fast] - col[fast])
            for lv, hi in iss.upper.items():
                lo = iss.lower.get(lv)
                inside = (y <= hi[:, h - 1]) & (
                    (y >= lo[:, h - 1]) if lo is not None else np.ones(self.n, dtype=bool)
                )
                steady = np.where(iss.adapting | ~ok, -1, iss.deciles)
                self.widths.observe(lv, h, steady, inside)
                after = iss.adapting & adapting & ok
                if iss.unit is not None and lv in iss.unit and after.any():
                    up, down = iss.unit[lv]
                    self._score(lv, h, y[after] - iss.mean[after, h - 1],
                                up[after, h - 1], down[after, h - 1])  # fmt: skip
        calm = ~adapting
        self.ratio[calm] += self.relax * (1.0 - self.ratio[calm])

    def _score(self, level: float, h: int, err: F64, up: F64, down: F64) -> None:
        """The adapting series' errors at ``h`` steps ahead against their interval's unit
        half-widths: their score joins the last ``score_steps`` steps' and the group's
        width factor at ``h`` becomes the score quantile at ``level`` (module docstring)."""
        half = np.where(err >= 0, up, down)
        with np.errstate(divide="ignore", invalid="ignore"):
            score = np.where(half > 0, np.abs(err) / half, np.where(err == 0, 0.0, np.inf))
        ring = self._scores[level][h - 1]
        ring.append(score)
        q = float(np.quantile(np.concatenate(ring), level / 100.0, method="higher"))
        lw = self.drifted.log_w[level]
        lw[h - 1, 0] = np.clip(np.log(max(q, 1e-12)), -self.drifted.bound, self.drifted.bound)

    def _reset_scores(self) -> None:
        self._scores = {
            lv: [deque(maxlen=max(self.score_steps, 1)) for _ in range(self.H)]
            for lv in self.levels
        }

    def reset_ratios(self) -> None:
        """The model changed (refit, promotion, rollback): ratios learnt for the old one go."""
        self.ratio[:] = 1.0
        self._issued.clear()

    def switch_model(self, issued_s: int, raw: F64) -> None:
        """The model changed; ``raw[n, H]`` is the new one's first forecast, issued at
        ``issued_s``. Series that are not adapting drop the ratios learnt for the old model.
        A series still adapting after a drift keeps its correction: its ratios are set so
        that the corrected forecast goes on from the old model's corrected forecast of the
        same target steps (issued one step earlier), and learn from the new model's errors
        from there. Without that, a retrain on drift (fitted on an hour of the new
        behaviour) would throw away what the adaptation learnt and coverage would collapse
        until the ratios were learnt again."""
        prev = self._issued[-1] if self._issued else None
        adapting = self.adapting(issued_s)
        H = min(self.H, raw.shape[1], prev.raw.shape[1] if prev is not None else 0)
        carried = self.ratio.copy()
        if prev is not None and H >= 2 and prev.issued_s == issued_s - self.step_s:
            # the old model's column j + 1 and the new one's column j: the same target step
            old = np.maximum(prev.raw[:, 1:H], 0.0) * self.ratio[:, 1:H]
            eps = (0.02 * self.level + 1e-9)[:, None]
            r = np.clip((old + eps) / (np.maximum(raw[:, : H - 1], 0.0) + eps), 0, self.max_ratio)
            carried[:, : H - 1] = r
            carried[:, H - 1 :] = r[:, -1:]
        else:
            adapting = np.zeros(self.n, dtype=bool)
        self.ratio[:] = 1.0
        self.ratio[adapting] = carried[adapting]
        self._issued.clear()

    # -- persistence -------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "ratio": self.ratio,
            "level": self.level,
            "adapt_until": self.adapt_until,
            "widths": {lv: w.copy() for lv, w in self.widths.log_w.items()},
            "drifted": {lv: w.copy() for lv, w in self.drifted.log_w.items()},
        }

    def load_state(self, st: Mapping[str, Any]) -> bool:
        if np.asarray(st.get("ratio", ())).shape != self.ratio.shape:
            return False
        self.ratio = np.asarray(st["ratio"], dtype=np.float64).copy()
        self.level = np.asarray(st["level"], dtype=np.float64).copy()
        self.adapt_until = np.asarray(st["adapt_until"], dtype=np.int64).copy()
        for name in ("widths", "drifted"):
            aci: GroupACI = getattr(self, name)
            for lv, w in dict(st.get(name, {})).items():
                if lv in aci.log_w and aci.log_w[lv].shape == np.shape(w):
                    aci.log_w[lv] = np.asarray(w, dtype=np.float64).copy()
        return True
