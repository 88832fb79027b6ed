"""The Forecaster protocol: fit on history, predict ``h`` steps with intervals, update online."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, Self

import numpy as np

from shadowcast.records import F64, Forecast, SeriesFrame


class Forecaster(Protocol):
    """Every model has these verbs. ``predict`` returns ``mean[n_series, horizon]``.

    ``update(new_rows)`` appends observations ``new_rows[k, n_series]`` (online: the model
    may refit incrementally, and conformal intervals adapt); ``predict`` then forecasts from
    the end of everything seen so far.

    ``SeriesFrame.exog`` (time-varying exogenous inputs, ``[T, n]`` each, NaN = unknown) is
    kept by ``fit``; ``update(new_rows, exog)`` takes their rows for the same times
    (``exog[name][k, n]``; a wrongly shaped one raises ForecastError naming it). Models
    that use exogenous inputs read only what was known at each forecast's origin; models
    that do not use them accept and keep them all the same.
    """

    name: str

    def fit(self, history: SeriesFrame) -> Self: ...

    def predict(self, horizon: int, levels: Sequence[float] = ()) -> Forecast: ...

    def update(self, new_rows: F64, exog: Mapping[str, F64] | None = None) -> None: ...


def clean(values: F64) -> F64:
    """Replace NaN/inf with the last finite value of the series (0 before the first)."""
    out = np.array(values, dtype=np.float64, copy=True)
    bad = ~np.isfinite(out)
    if not bad.any():
        return out
    out[bad] = np.nan
    idx = np.where(~np.isnan(out), np.arange(out.shape[0])[:, None], 0)
    np.maximum.accumulate(idx, axis=0, out=idx)
    filled = out[idx, np.arange(out.shape[1])[None, :]]
    return np.nan_to_num(filled, nan=0.0)
