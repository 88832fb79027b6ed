"""Optional baselines from statsforecast (``pip install 'shadowcast-netops[stats]'``), side by side.

:class:`StatsForecastModel` wraps one statsforecast model chosen by name (``AutoETS``,
``AutoTheta``, ``AutoARIMA``, ``AutoCES``, ``MSTL``, ...). Intervals are ours (split
conformal + ACI from :class:`~shadowcast.forecast.core.BaseForecaster`), so they are
calibrated the same way as every other model's; statsforecast gives the point forecasts.

Rolling origin: refitting per origin is far too slow (AutoETS with a 288-step season takes
6-22 s CPU per Abilene series here). The model is fitted **once** per series, on the history
before the calibration window (``refit=False``: the calibration scores are then truly out of
sample and no second fit is paid). For every later origin, statsforecast's ``forward(y, h)``
applies the fitted parameters to the history ``y[: origin + 1]`` (it re-runs the model's
filter with fixed parameters: ETS's state recursion, ARIMA's Kalman filter, Theta's
state update) and forecasts ``h`` steps; that costs 0.1-2 ms per series per origin for
AutoETS, AutoCES, AutoARIMA (non-seasonal) and AutoTheta, but ~200 ms for MSTL, which
re-decomposes the history. ``refit_every=N`` (rows) additionally re-estimates the parameters
on everything seen after every ``N`` online rows. Only models with ``forward`` are accepted.

Season: one day of steps unless ``season_length`` is given. ETS, CES and ARIMA estimate one
state (or lag polynomial) per season step, which is slow and, with a 288-step season, chose
a non-seasonal model for the two largest Abilene series anyway; above ``max_season`` (by
default 24 for those models, as R's ``forecast::ets`` does) they are fitted non-seasonal and
``report["season_length"]`` says so. AutoTheta and MSTL handle a long season cheaply (by
decomposition) and are not capped.

statsforecast fits one series at a time: the loops over series here are inherent to the
wrapped library; this is a baseline, not the production path. A series whose fit fails
falls back to persistence (counted in ``report["sf_fit_failures"]``), as does a forecast
that raises or is not finite (``report["sf_forward_failures"]``).

:func:`subset_frame` and :func:`eval_subset` run the baseline beside ours on the largest
series, for when the full set is too slow.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import time
import warnings
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from shadowcast.errors import ConfigError
from shadowcast.extras import install_hint
from shadowcast.forecast.core import BaseForecaster
from shadowcast.records import F64, SeriesFrame

I64 = npt.NDArray[np.int64]
log = logging.getLogger(__name__)

INSTALL_HINT = install_hint("statsforecast")
# Models whose cost grows with the season (one state / lag per season step).
SEASON_CAP = {"AutoETS": 24, "HoltWinters": 24, "AutoCES": 24, "AutoARIMA": 24, "ARIMA": 24}


def _statsforecast_models() -> ModuleType:
    """``statsforecast.models``, imported on first use; ConfigError with the hint if absent."""
    try:
        return importlib.import_module("statsforecast.models")
    except ImportError as exc:
        raise ConfigError(
            f"forecast.model: the statsforecast baselines need the optional extra: {INSTALL_HINT}"
        ) from exc


class StatsForecastModel(BaseForecaster):
    """One statsforecast model per series, fitted once, rolled forward with ``forward``."""

    refit_after_calibration = False

    def __init__(
        self,
        horizons: Sequence[str | int] = ("15m", "1h"),
        *,
        model: str = "AutoETS",
        season_length: int | None = None,
        max_season: int | None = None,
        refit: bool = False,
        refit_every: int = 0,
        model_options: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(horizons, **kw)
        mod = _statsforecast_models()
        cls = getattr(mod, model, None)
        if not isinstance(cls, type) or not hasattr(cls, "forward"):
            ok = sorted(
                n
                for n in dir(mod)
                if not n.startswith("_")
                and isinstance(getattr(mod, n), type)
                and hasattr(getattr(mod, n), "forward")
            )
            raise ConfigError(
                f"forecast.statsforecast.model: {model!r} is not a statsforecast model with "
                f"forward(); choose one of {ok}"
            )
        if refit_every < 0:
            raise ConfigError(f"forecast.statsforecast.refit_every must be >= 0: {refit_every}")
        self._cls: type = cls
        self._seasonal = "season_length" in inspect.signature(cls).parameters
        self.model = model
        self.name = f"sf_{model}"
        self.season_length = season_length
        self.max_season = SEASON_CAP.get(model) if max_season is None else max_season
        self.refit_after_calibration = bool(refit)
        self.refit_every = int(refit_every)
        self.model_options = dict(model_options or {})
        self._since_fit = 0

    # -- fitting -------------------------------------------------------------------------
    def _season(self) -> int:
        s = self.season_length if self.season_length is not None else 86400 // self.step
        s = max(1, int(s))
        if self.max_season is not None and s > self.max_season:
            return 1
        return s

    def _new(self) -> Any:
        opts = dict(self.model_options)
        if self._seasonal:
            opts.setdefault("season_length", self._season())
        return self._cls(**opts)

    def _fit_model(self, y: F64) -> None:
        t0 = time.process_time()
        self._fit_at = int(getattr(self, "_offset", 0))  # absolute row of y[0]
        self._models: list[Any | None] = []
        failures = 0
        for i in range(y.shape[1]):  # statsforecast fits one series at a time
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    self._models.append(self._new().fit(np.ascontiguousarray(y[:, i])))
            except Exception as exc:  # any library failure -> persistence
                log.debug("statsforecast fit failed", extra={"series": i, "error": str(exc)})
                self._models.append(None)
                failures += 1
        season = self._season() if self._seasonal else 1
        wanted = self.season_length if self.season_length is not None else 86400 // self.step
        self.report.update(
            sf_model=self.model,
            season_length=season,
            season_capped=self._seasonal and season == 1 and wanted > 1,
            sf_fits=int(self.report.get("sf_fits", 0)) + 1,
            sf_fit_failures=int(self.report.get("sf_fit_failures", 0)) + failures,
            sf_fit_cpu_s=round(
                float(self.report.get("sf_fit_cpu_s", 0.0)) + time.process_time() - t0, 3
            ),
        )
        self.report.setdefault("sf_forward_failures", 0)
        if failures:
            log.info(
                "statsforecast fit failed for some series; they use persistence",
                extra={"model": self.model, "failed": failures, "series": y.shape[1]},
            )

    def _after_update(self, rows: int) -> None:
        self._since_fit += rows
        if self.refit_every and self._since_fit >= self.refit_every:
            self._fit_model(self._y)
            self._since_fit = 0

    def _min_history(self) -> int:
        # forward re-filters from where the fit started; keep that much when possible
        return 2

    # -- forecasting ---------------------------------------------------------------------
    def _start_row(self) -> int:
        """Row of ``y`` to run ``forward`` from: where the fit started, else the first row
        at the same season phase (the buffer dropped the fit's start)."""
        d = self._fit_at - self._offset
        return d if d >= 0 else d % self._season()

    def _point_at(self, y: F64, origins: I64, hs: I64, cols: I64 | None) -> F64:
        idx = np.arange(y.shape[1], dtype=np.int64) if cols is None else cols
        hmax = int(hs.max())
        r0 = self._start_row()
        out = np.empty((len(origins), len(idx), len(hs)))
        fails = 0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for c, i in enumerate(idx):
                mod = self._models[int(i)]
                for j, o in enumerate(origins):
                    last = y[o, i]
                    if mod is None:
                        out[j, c] = last
                        continue
                    try:
                        m = np.asarray(
                            mod.forward(y=np.ascontiguousarray(y[r0 : o + 1, i]), h=hmax)["mean"]
                        )[hs - 1]
                    except Exception:  # library failure -> persistence
                        m = np.full(len(hs), np.nan)
                    bad = ~np.isfinite(m)
                    if bad.any():
                        fails += 1
                        m = np.where(bad, last, m)
                    out[j, c] = m
        if fails:
            self.report["sf_forward_failures"] = (
                int(self.report.get("sf_forward_failures", 0)) + fails
            )
        return out


def subset_frame(
    frame: SeriesFrame, n: int, by: str = "volume", *, test_fraction: float = 0.3
) -> SeriesFrame:
    """The ``n`` largest series by mean |value| over the training part (the first
    ``1 - test_fraction`` of the rows, as :func:`~shadowcast.forecast.evaluate.split`
    cuts it), in their original order, with their ``meta``."""
    if by != "volume":
        raise ConfigError(f"subset_frame: by must be 'volume', got {by!r}")
    if n < 1:
        raise ConfigError(f"subset_frame: n must be >= 1, got {n}")
    T, k = frame.values.shape
    cut = max(1, int(round(T * (1.0 - test_fraction))))
    head = np.abs(frame.values[:cut])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN series -> NaN -> 0
        volume = np.nan_to_num(np.nanmean(np.where(np.isfinite(head), head, np.nan), axis=0))
    pick = np.sort(np.argsort(-volume, kind="stable")[: min(n, k)])
    return frame.columns(pick)


def eval_subset(
    frame: SeriesFrame,
    hs: Sequence[int],
    n: int,
    sf_models: Sequence[str] = ("AutoETS",),
    ours: str = "auto",
    *,
    levels: Sequence[float] = (80.0, 95.0),
    test_fraction: float = 0.3,
    sf_options: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Backtest persistence, seasonal naive, ``ours`` and each statsforecast model on the
    same ``n`` largest series (see :func:`subset_frame`); rows as from ``evaluate`` plus
    ``subset_series`` and, for statsforecast models, their ``report``."""
    from shadowcast.forecast.evaluate import evaluate  # late: the registry may import us
    from shadowcast.forecast.registry import make_model

    sub = subset_frame(frame, n, test_fraction=test_fraction)
    horizons = [int(h) * frame.step for h in hs]
    sf = [StatsForecastModel(horizons, model=m, **(sf_options or {}).get(m, {})) for m in sf_models]
    names: list[str | BaseForecaster] = ["persistence", "seasonal_naive"]
    if ours not in names:
        names.append(make_model(ours, horizons=horizons))
    rows = evaluate(sub, None, hs, [*names, *sf], levels, test_fraction=test_fraction)
    reports = {m.name: m.report for m in sf}
    for r in rows:
        r["subset_series"] = len(sub.keys)
        if r["model"] in reports:
            rep = reports[r["model"]]
            r["sf_report"] = {k: v for k, v in rep.items() if k.startswith(("sf_", "season"))}
    return rows
