"""Fit and predict in series chunks, locally or on a Dask cluster, with identical results.

The series are cut into fixed chunks of ``chunk_series`` (in their order); each chunk gets
its own model (a global model is global within its chunk). The local path runs the chunks
one after another; the Dask path maps the same function over the same chunks on the
workers, so both give the same forecasts bit for bit (every model is deterministic given
its seed; LightGBM runs with ``deterministic=True``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from shadowcast.errors import ForecastError
from shadowcast.forecast.registry import make_model
from shadowcast.records import F64, Forecast, SeriesFrame

log = logging.getLogger(__name__)


def chunks(frame: SeriesFrame, chunk_series: int) -> list[SeriesFrame]:
    """Split a frame by series into consecutive chunks of at most ``chunk_series``."""
    if chunk_series < 1:
        raise ForecastError(f"chunk_series must be >= 1, got {chunk_series}")
    n = len(frame.keys)
    out = [frame.columns(slice(a, min(n, a + chunk_series))) for a in range(0, n, chunk_series)]
    return out


def fit_predict_chunk(
    frame: SeriesFrame,
    model: str,
    horizon: int,
    levels: Sequence[float],
    options: dict[str, Any],
) -> tuple[tuple[str, ...], Forecast]:
    """Fit ``model`` on one chunk and forecast ``horizon`` steps (runs on a worker): the
    keys forecast (a model with ``retire_after`` leaves idle ones out) and the forecast."""
    m = make_model(model, **options)
    m.fit(frame)
    return m.keys, m.predict(horizon, levels)


def _concat(parts: Sequence[Forecast], name: str) -> Forecast:
    mean = np.concatenate([p.mean for p in parts], axis=0)
    levels = parts[0].levels
    lower: dict[float, F64] = {lv: np.concatenate([p.lower[lv] for p in parts]) for lv in levels}
    upper: dict[float, F64] = {lv: np.concatenate([p.upper[lv] for p in parts]) for lv in levels}
    return Forecast(mean=mean, lower=lower, upper=upper, model=name)


def fit_predict_keys(
    frame: SeriesFrame,
    model: str,
    horizon: int,
    levels: Sequence[float] = (80.0, 95.0),
    *,
    chunk_series: int = 5000,
    options: dict[str, Any] | None = None,
    client: Any = None,
) -> tuple[tuple[str, ...], Forecast]:
    """Forecast every series of ``frame``: chunked, locally (``client=None``) or on Dask;
    returns the keys forecast (in ``frame`` order) and their forecast.

    ``client`` is a ``dask.distributed.Client`` (a LocalCluster in tests, any scheduler
    address in production: ``Client(settings.forecast.dask_scheduler)``).
    """
    opts = dict(options or {})
    parts = chunks(frame, chunk_series)
    if client is None:
        results = [fit_predict_chunk(p, model, horizon, levels, opts) for p in parts]
    else:
        futures = client.map(
            fit_predict_chunk,
            parts,
            model=model,
            horizon=horizon,
            levels=list(levels),
            options=opts,
            pure=False,
        )
        results = client.gather(futures)
    keys = tuple(k for ks, _ in results for k in ks)
    return keys, _concat([fc for _, fc in results], model)


def fit_predict(
    frame: SeriesFrame,
    model: str,
    horizon: int,
    levels: Sequence[float] = (80.0, 95.0),
    *,
    chunk_series: int = 5000,
    options: dict[str, Any] | None = None,
    client: Any = None,
) -> Forecast:
    """:func:`fit_predict_keys` for models that forecast every series (no retirement):
    one row per key of ``frame``."""
    keys, fc = fit_predict_keys(
        frame,
        model,
        horizon,
        levels,
        chunk_series=chunk_series,
        options=options,
        client=client,
    )
    if keys != frame.keys:
        raise ForecastError(
            f"{len(frame.keys) - len(keys)} series were retired: use fit_predict_keys"
        )
    return fc
