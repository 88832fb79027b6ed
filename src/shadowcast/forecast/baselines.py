"""Baselines: persistence and seasonal naive, vectorised over all series and origins."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from shadowcast.forecast.core import BaseForecaster
from shadowcast.records import F64
from shadowcast.units import parse_duration

I64 = npt.NDArray[np.int64]


def _take(y: F64, rows: I64, cols: I64 | None) -> F64:
    """``y[rows, cols]`` for a ``[k, G]`` row-index array -> ``[k, m, G]``."""
    sub = y if cols is None else y[:, cols]
    return np.asarray(np.moveaxis(sub[rows], 2, 1), dtype=np.float64)


class Persistence(BaseForecaster):
    """``yhat[t + h] = y[t]`` for every step ``h``."""

    name = "persistence"

    def _point_at(self, y: F64, origins: I64, hs: I64, cols: I64 | None) -> F64:
        rows = np.repeat(origins[:, None], len(hs), axis=1)
        return _take(y, rows, cols)


class SeasonalNaive(BaseForecaster):
    """``yhat[t + h] = y[t + h - s * ceil(h / s)]``: the same time one season earlier.

    ``season_steps`` wins over ``season`` (a duration, default one day). Where the history
    is shorter than a season the forecast falls back to persistence.
    """

    name = "seasonal_naive"

    def __init__(
        self,
        season_steps: int | None = None,
        *,
        season: str | int = "1d",
        horizons: Sequence[str | int] = ("15m", "1h"),
        **kw: Any,
    ) -> None:
        super().__init__(horizons, **kw)
        self.season_steps = season_steps
        self.season_s = parse_duration(season)

    def _season(self) -> int:
        if self.season_steps is not None:
            return max(1, int(self.season_steps))
        return max(1, self.season_s // self.step)

    def _min_history(self) -> int:
        return self._season() + self.H + 1

    def _point_at(self, y: F64, origins: I64, hs: I64, cols: I64 | None) -> F64:
        s = self._season()
        back = s * np.ceil(hs / s).astype(np.int64)
        rows = origins[:, None] + hs[None, :] - back[None, :]
        rows = np.where(rows >= 0, rows, origins[:, None])
        return _take(y, rows, cols)


class SeasonalNaiveWeekly(SeasonalNaive):
    """Seasonal naive with a one-week season."""

    name = "seasonal_naive_weekly"

    def __init__(self, horizons: Sequence[str | int] = ("15m", "1h"), **kw: Any) -> None:
        super().__init__(None, season="7d", horizons=horizons, **kw)
