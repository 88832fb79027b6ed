"""One model per chunk of series behind one :class:`~shadowcast.forecast.base.Forecaster`:
the service's refits on a Dask cluster (``forecast.dask_scheduler``), or in bounded memory.

``shadowcast forecast`` already fits in chunks (:mod:`shadowcast.forecast.distributed`);
the service's forecast cycle keeps one fitted model that it updates every step and refits
on schedule or on drift. :class:`ChunkedForecaster` is that model when the series are many
or a scheduler is configured: ``fit`` cuts the frame into consecutive chunks of
``chunk_series`` and fits one model per chunk, mapped over the Dask workers when a
``scheduler`` address is set (the fitted models come back to the service), one after
another otherwise: both give the same models (every model is deterministic given its
seed). ``update`` hands each chunk its columns, ``predict`` stacks the chunks' forecasts in
series order. A global model is global within its chunk, as in ``shadowcast forecast``.

Each fit connects to the scheduler and disconnects when the models are back (refits are
hours apart: nothing is held open between them, and a scheduler that is away fails that
refit with a ``ForecastError`` naming it; the cycle keeps its current models).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np

from shadowcast.errors import ForecastError
from shadowcast.forecast.base import Forecaster
from shadowcast.forecast.distributed import _concat, chunks
from shadowcast.forecast.registry import make_model
from shadowcast.records import F64, Forecast, SeriesFrame

log = logging.getLogger(__name__)


def fit_chunk(frame: SeriesFrame, model: str, options: Mapping[str, Any]) -> Forecaster:
    """Fit ``model`` on one chunk (runs on a Dask worker, or here)."""
    return make_model(model, **dict(options)).fit(frame)


class ChunkedForecaster:
    """Models fitted per chunk of series, forecasting as one (see the module docstring)."""

    def __init__(
        self,
        model: str,
        options: Mapping[str, Any] | None = None,
        *,
        chunk_series: int = 5000,
        scheduler: str | None = None,
        connect_timeout_s: float = 30.0,
    ) -> None:
        if chunk_series < 1:
            raise ForecastError(f"chunk_series must be >= 1, got {chunk_series}")
        self.name = model
        self.options = dict(options or {})
        self.chunk_series = int(chunk_series)
        self.scheduler = scheduler
        self.connect_timeout_s = connect_timeout_s
        self.parts: list[Forecaster] = []
        self.bounds: list[tuple[int, int]] = []  # the columns of each chunk in fit's frame
        self.keys: tuple[str, ...] = ()

    def fit(self, history: SeriesFrame) -> Self:
        parts = chunks(history, self.chunk_series)
        if self.scheduler is None:
            fitted = [fit_chunk(p, self.name, self.options) for p in parts]
        else:
            fitted = self._on_dask(parts)
        self.parts = fitted
        sizes = [len(p.keys) for p in parts]
        edges = np.concatenate([[0], np.cumsum(sizes)]).astype(int)
        self.bounds = [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]
        self.keys = tuple(k for m in fitted for k in m.keys)
        log.info(
            "forecast chunks fitted",
            extra={
                "model": self.name,
                "chunks": len(fitted),
                "series": len(history.keys),
                "on": self.scheduler or "local",
            },
        )
        return self

    def _on_dask(self, parts: Sequence[SeriesFrame]) -> list[Forecaster]:
        try:
            from dask.distributed import Client
        except ImportError:
            raise ForecastError(
                "forecast.dask_scheduler needs the dask extra: "
                "pip install 'shadowcast-netops[dask]'"
            ) from None
        try:
            with Client(self.scheduler, timeout=self.connect_timeout_s) as client:  # type: ignore[no-untyped-call]
                futures = client.map(
                    fit_chunk, parts, model=self.name, options=self.options, pure=False
                )
                return list(client.gather(futures))
        except (OSError, TimeoutError) as exc:
            raise ForecastError(
                f"forecast.dask_scheduler: {self.scheduler}: {exc or type(exc).__name__}"
            ) from None

    def _require_fit(self) -> None:
        if not self.parts:
            raise ForecastError(f"{self.name}: chunked model used before fit")

    def update(self, new_rows: F64 | SeriesFrame, exog: Mapping[str, F64] | None = None) -> None:
        self._require_fit()
        if isinstance(new_rows, SeriesFrame):
            self._update_frame(new_rows)
            return
        rows = np.asarray(new_rows, dtype=np.float64)
        n = self.bounds[-1][1]
        if rows.ndim != 2 or rows.shape[1] != n:
            raise ForecastError(f"{self.name}: update rows {rows.shape}, expected (k, {n})")
        for m, (a, b) in zip(self.parts, self.bounds, strict=True):
            part_exog = {k: np.asarray(v)[:, a:b] for k, v in exog.items()} if exog else None
            m.update(rows[:, a:b], part_exog)

    def _update_frame(self, frame: SeriesFrame) -> None:
        """By key: each chunk gets the columns of its keys; keys no chunk has seen join the
        last chunk (they start cold there, as in any model)."""
        where = {k: i for i, m in enumerate(self.parts) for k in m.keys}
        last = len(self.parts) - 1
        owner = np.array([where.get(k, last) for k in frame.keys], dtype=np.int64)
        for i, m in enumerate(self.parts):
            idx = np.flatnonzero(owner == i)
            if idx.size:
                m.update(frame.columns(idx))

    def refit(self) -> None:
        self._require_fit()
        for m in self.parts:
            m.refit()
        self.keys = tuple(k for m in self.parts for k in m.keys)

    def predict(self, horizon: int, levels: Sequence[float] = ()) -> Forecast:
        self._require_fit()
        return _concat([m.predict(horizon, levels) for m in self.parts], self.name)
