"""Rolling-origin backtest, one row per (model, horizon).

Every forecast is made only from what was seen before it: the model is fitted on the
training part, then for each origin it predicts, and the next observed row is fed to
``update`` (online, as the feedback loop would). Without a separate test series the last
``test_fraction`` of ``series`` is the test part.

Metrics, summed over every series and every origin whose target lies in the test part:

* ``nmae`` = sum |yhat - y| / sum |y|   (normalised MAE; one number for all series)
* ``mase_persistence`` = sum |yhat - y| / sum |y_persistence - y|   (relative MAE against
  ``y[o]`` on the same points; < 1 beats persistence) and ``mase_seasonal`` likewise against
  seasonal naive (same time one day earlier; persistence where there is no such day)
* ``coverage_<L>``: share of points inside the level-L interval; ``coverage_<L>_by_decile``:
  the same per decile of series volume (mean |y| over training, decile 0 = smallest)
* ``pinball``: mean pinball loss over the interval quantiles ``(1 -+ L/100) / 2``, divided by
  mean |y|; ``interval_score_<L>``: Winkler interval score divided by mean |y|;
  ``width_<L>``: mean interval width divided by mean |y|.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from shadowcast.errors import ForecastError
from shadowcast.forecast.base import clean
from shadowcast.forecast.core import BaseForecaster
from shadowcast.forecast.keys import align_pair, present
from shadowcast.forecast.registry import make_model
from shadowcast.records import F64, DemandSeries, SeriesFrame
from shadowcast.units import ceil_steps as horizon_steps
from shadowcast.units import format_duration, parse_duration

log = logging.getLogger(__name__)


def split(series: SeriesFrame, test_fraction: float) -> tuple[SeriesFrame, SeriesFrame]:
    """Earlier part / later part of a frame."""
    T = series.values.shape[0]
    cut = int(round(T * (1.0 - test_fraction)))
    if cut < 2 or cut >= T:
        raise ForecastError(f"cannot split {T} steps with test_fraction={test_fraction}")
    return series.rows(0, cut), series.rows(cut, T)


def evaluate(
    series: SeriesFrame,
    test: SeriesFrame | None,
    horizons_steps: Sequence[int],
    models: Sequence[str | BaseForecaster],
    levels: Sequence[float] = (80.0, 95.0),
    *,
    test_fraction: float = 0.3,
    model_options: dict[str, Any] | None = None,
    progress: Callable[[str, int, int], None] | None = None,
    missing: float = 0.0,
) -> list[dict[str, Any]]:
    """Backtest ``models`` at ``horizons_steps``; see the module docstring for the metrics.

    Keys may come and go: a separate ``test`` is aligned with ``series`` on the union of
    their keys (a key one part lacks is ``missing`` there: 0 for demand matrices, NaN when
    absence means unknown), and the models meet the test rows as frames, by key name (a
    key new to a model starts cold). A key that never carries a finite non-zero value in
    either part is not a series and is left out; a key a model does not forecast (retired)
    is scored as forecast 0."""
    if test is None:
        train, test = split(series, test_fraction)
    else:
        if test.step != series.step:
            raise ForecastError(
                f"test series step {test.step} s differs from the training series' {series.step} s"
            )
        train, test = align_pair(series, test, missing)
    keep = present(np.concatenate([train.values, test.values]))
    if not keep.any():
        raise ForecastError("no series carries a non-zero value")
    if not keep.all():
        log.info("keys without any value left out", extra={"keys": int((~keep).sum())})
        train, test = train.columns(np.flatnonzero(keep)), test.columns(np.flatnonzero(keep))
    hs = sorted({int(h) for h in horizons_steps})
    if not hs or hs[0] < 1:
        raise ForecastError(f"horizons must be >= 1 step, got {list(horizons_steps)}")
    step = train.step
    hmax = hs[-1]
    full = np.concatenate([train.values, test.values]).astype(np.float64)
    yc = clean(full)
    n_train = train.values.shape[0]
    T = full.shape[0]
    origins = np.arange(n_train - 1, T - 1)
    volume = np.nanmean(np.where(np.isfinite(train.values), np.abs(train.values), np.nan), 0)
    volume = np.nan_to_num(volume)
    deciles = np.minimum((np.argsort(np.argsort(volume)) * 10) // max(1, len(volume)), 9)
    season = max(1, 86400 // step)
    refs: dict[int, tuple[F64, F64, F64, F64]] = {}
    for h in hs:
        o = origins[origins + h <= T - 1]
        actual = full[o + h]
        pers = yc[o]
        back = o + h - season * math.ceil(h / season)
        seas = np.where((back >= 0)[:, None], yc[np.maximum(back, 0)], pers)
        refs[h] = (actual, pers, seas, o.astype(np.float64))
    rows: list[dict[str, Any]] = []
    opts = model_options or {}
    for spec in models:
        model = (
            make_model(spec, horizons=[h * step for h in hs], **opts.get(spec, {}))
            if isinstance(spec, str)
            else spec
        )
        t0 = time.perf_counter()
        model.fit(train)
        fit_s = time.perf_counter() - t0
        k = len(origins)
        n = full.shape[1]
        means = {h: np.zeros((k, n)) for h in hs}
        bounds = {(h, lv, side): np.zeros((k, n)) for h in hs for lv in levels for side in (0, 1)}
        where = _Columns(train.keys)
        for j, o in enumerate(origins):
            fc = model.predict(hmax, levels)
            col = where(model.keys)
            for h in hs:
                means[h][j, col] = fc.mean[:, h - 1]
                for lv in levels:
                    bounds[(h, lv, 0)][j, col] = fc.lower[float(lv)][:, h - 1]
                    bounds[(h, lv, 1)][j, col] = fc.upper[float(lv)][:, h - 1]
            model.update(test.rows(o + 1 - n_train, o + 2 - n_train))
            if progress is not None:
                progress(model.name, j + 1, k)
        total_s = time.perf_counter() - t0
        for h in hs:
            actual, pers, seas, _ = refs[h]
            m = actual.shape[0]
            row = _metrics(
                actual,
                means[h][:m],
                pers,
                seas,
                {lv: (bounds[(h, lv, 0)][:m], bounds[(h, lv, 1)][:m]) for lv in levels},
                deciles,
            )
            row.update(
                model=model.name,
                horizon=format_duration(h * step),
                horizon_steps=h,
                origins=m,
                series=n,
                fit_seconds=round(fit_s, 3),
                seconds=round(total_s, 3),
            )
            rows.append(row)
    return rows


class _Columns:
    """Column of each of a model's keys in the evaluated frame (recomputed only when the
    model's keys change)."""

    def __init__(self, keys: Sequence[str]) -> None:
        self._at = {k: i for i, k in enumerate(keys)}
        self._last: tuple[tuple[str, ...], npt.NDArray[np.int64]] | None = None

    def __call__(self, keys: tuple[str, ...]) -> npt.NDArray[np.int64]:
        if self._last is None or self._last[0] is not keys:
            self._last = (keys, np.array([self._at[k] for k in keys], dtype=np.int64))
        return self._last[1]


def _metrics(
    actual: F64,
    mean: F64,
    pers: F64,
    seas: F64,
    ivals: dict[float, tuple[F64, F64]],
    deciles: np.ndarray[Any, np.dtype[np.int64]],
) -> dict[str, Any]:
    ok = np.isfinite(actual)
    a = np.where(ok, actual, 0.0)
    denom = float(np.abs(a[ok]).sum()) or 1.0
    scale = denom / max(1, int(ok.sum()))
    err = np.abs(mean - a)[ok].sum()
    ep = np.abs(pers - a)[ok].sum()
    es = np.abs(seas - a)[ok].sum()
    row: dict[str, Any] = {
        "nmae": float(err / denom),
        "mase_persistence": float(err / ep) if ep > 0 else math.nan,
        "mase_seasonal": float(err / es) if es > 0 else math.nan,
        "nmae_persistence": float(ep / denom),
        "nmae_seasonal": float(es / denom),
    }
    pin = []
    for lv, (lo, hi) in ivals.items():
        L = int(lv) if float(lv).is_integer() else lv
        inside = (a >= lo) & (a <= hi)
        row[f"coverage_{L}"] = float(inside[ok].mean())
        by = [
            float(inside[ok & (deciles[None, :] == d)].mean())
            if (ok & (deciles[None, :] == d)).any()
            else math.nan
            for d in range(10)
        ]
        row[f"coverage_{L}_by_decile"] = by
        alpha = 1.0 - lv / 100.0
        width = hi - lo
        iscore = width + (2 / alpha) * (lo - a) * (a < lo) + (2 / alpha) * (a - hi) * (a > hi)
        row[f"interval_score_{L}"] = float(iscore[ok].mean() / scale)
        row[f"width_{L}"] = float(width[ok].mean() / scale)
        for q, b in ((alpha / 2, lo), (1 - alpha / 2, hi)):
            d = a - b
            pin.append(float(np.maximum(q * d, (q - 1) * d)[ok].mean()))
    if pin:
        row["pinball"] = float(np.mean(pin) / scale)
    return row


DEFAULT_EVAL_MODELS = ("persistence", "seasonal_naive", "profile", "auto")


def eval_forecast(
    demands: DemandSeries,
    test: DemandSeries | None = None,
    horizons: Sequence[str | int] = ("15m", "1h"),
    models: Sequence[str] = DEFAULT_EVAL_MODELS,
    levels: Sequence[float] = (80.0, 95.0),
) -> dict[str, Any]:
    """What ``shadowcast eval forecast --json`` prints: ``{"rows": [...], ...}``.

    ``horizons`` are durations (``"15m"``) turned into steps at the data's step.
    """
    series = SeriesFrame.from_demands(demands)
    tframe = SeriesFrame.from_demands(test) if test is not None else None
    steps = horizon_steps([parse_duration(h) for h in horizons], series.step)
    rows = evaluate(series, tframe, steps, list(models), levels)
    return {
        "rows": rows,
        "series": len(series.keys),
        "step": series.step,
        "train_steps": series.values.shape[0] if tframe is not None else None,
        "nmae_definition": "sum |yhat - y| / sum |y| over all series and origins",
    }
