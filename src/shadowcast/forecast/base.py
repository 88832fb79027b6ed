"""The Forecaster protocol: fit on history, predict ``h`` steps with intervals, update online."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, Self, TypeVar, cast

import numpy as np
import numpy.typing as npt

from shadowcast.records import F64, Forecast, SeriesFrame

A = TypeVar("A", bound=npt.NDArray[Any])


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

    Keys come and go (:mod:`shadowcast.forecast.keys`): ``keys`` are the series forecast,
    in ``predict``'s row order. ``update(frame)`` with a ``SeriesFrame`` aligns it by key
    name: a key the model has not seen starts cold (persistence with a pooled prior
    interval) and joins the fitted model at the next ``refit`` (automatic after
    ``join_after``); keys idle for ``retire_after`` are retired (not forecast any more).
    """

    name: str
    keys: tuple[str, ...]

    def fit(self, history: SeriesFrame) -> Self: ...

    def predict(self, horizon: int, levels: Sequence[float] = ()) -> Forecast: ...

    def update(
        self, new_rows: F64 | SeriesFrame, exog: Mapping[str, F64] | None = None
    ) -> None: ...

    def refit(self) -> None: ...


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


def regrow(buf: A, drop: int, length: int, cap: int) -> A:
    """A new buffer of ``cap`` rows holding ``buf[drop:length]`` at its start."""
    out = np.zeros((cap, buf.shape[1]), dtype=buf.dtype)
    out[: length - drop] = buf[drop:length]
    return cast(A, out)


def finite_or_nan(a: npt.ArrayLike) -> F64:
    """A float64 copy with every non-finite value made NaN (unknown)."""
    out = np.array(a, dtype=np.float64, copy=True)
    out[~np.isfinite(out)] = np.nan
    return out


def input_report(raw: F64) -> dict[str, Any]:
    finite = np.isfinite(raw)
    first = np.where(finite.any(axis=0), np.argmax(finite, axis=0), raw.shape[0])
    return {
        "nan": int(np.isnan(raw).sum()),
        "inf": int(np.isinf(raw).sum()),
        "nonfinite": int((~finite).sum()),
        "all_missing_series": int((~finite.any(axis=0)).sum()),
        "late_start_series": int(((first > 0) & (first < raw.shape[0])).sum()),
        "constant_series": int((np.nanstd(np.where(finite, raw, np.nan), axis=0) == 0).sum())
        if finite.any(axis=0).all()
        else 0,
    }
