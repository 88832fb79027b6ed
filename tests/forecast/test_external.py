"""The optional statsforecast baseline: clear error without the extra, contract with it."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import pytest

from shadowcast.errors import ConfigError
from shadowcast.forecast.evaluate import evaluate
from shadowcast.forecast.external import (
    INSTALL_HINT,
    StatsForecastModel,
    eval_subset,
    subset_frame,
)
from shadowcast.records import SeriesFrame

from .conftest import check_forecast as _check


@pytest.fixture
def sf() -> Any:
    return pytest.importorskip("statsforecast")


def _seasonal(n: int, days: int, seed: int, noise: float = 2.0) -> SeriesFrame:
    """Hourly series with a clean daily cycle (season 24) and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * 24)
    amp = rng.uniform(20, 60, n)
    base = rng.uniform(80, 200, n)
    phase = rng.uniform(0, 2 * np.pi, n)
    v = base + amp * np.sin(2 * np.pi * t[:, None] / 24 + phase) + rng.normal(0, noise, (t.size, n))
    times = np.datetime64("2024-01-01T00:00:00", "s") + t.astype("timedelta64[h]")
    return SeriesFrame(times=times, keys=tuple(f"s{i}" for i in range(n)), values=v, step=3600)


def test_missing_statsforecast_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "statsforecast", None)  # import now raises ImportError
    monkeypatch.setitem(sys.modules, "statsforecast.models", None)
    with pytest.raises(ConfigError, match="statsforecast") as err:
        StatsForecastModel(model="AutoETS")
    assert INSTALL_HINT in str(err.value)
    assert "shadowcast-netops[stats]" in INSTALL_HINT


def test_unknown_or_unsupported_model(sf: Any) -> None:
    with pytest.raises(ConfigError, match="AutoETS"):  # the message lists the choices
        StatsForecastModel(model="Prophet")
    with pytest.raises(ConfigError, match="forward"):
        StatsForecastModel(model="AutoMFLES")  # no forward(): would refit per origin
    with pytest.raises(ConfigError, match="refit_every"):
        StatsForecastModel(refit_every=-1)


def test_shapes_order_no_nan(sf: Any, frame: SeriesFrame) -> None:
    model = StatsForecastModel(model="AutoETS").fit(frame)
    fc = model.predict(12, [80, 95])
    _check(fc.mean, fc.lower, fc.upper, len(frame.keys), 12)
    assert fc.model == "sf_AutoETS"
    # 5-min data: a one-day season (288) is above AutoETS's cap, so it is fitted non-seasonal
    assert model.report["season_length"] == 1 and model.report["season_capped"]
    assert model.report["sf_fit_failures"] == 0
    model.update(frame.values[-3:])
    fc = model.predict(4, [80, 95])
    _check(fc.mean, fc.lower, fc.upper, len(frame.keys), 4)


def test_bad_input_and_short_history(sf: Any, bad_frame: SeriesFrame) -> None:
    model = StatsForecastModel(model="AutoETS").fit(bad_frame)
    fc = model.predict(12, [80, 95])
    _check(fc.mean, fc.lower, fc.upper, len(bad_frame.keys), 12)
    np.testing.assert_allclose(fc.mean[2], 42.0, rtol=1e-6)  # constant series
    rows = bad_frame.values[-5:].copy()
    rows[0, :] = np.nan
    model.update(rows)
    _check(*_parts(model.predict(3, [80, 95])), len(bad_frame.keys), 3)
    # three points: statsforecast cannot fit; every series falls back to persistence
    tiny = SeriesFrame(bad_frame.times[:3], bad_frame.keys, bad_frame.values[-3:], 300)
    m2 = StatsForecastModel(model="AutoETS").fit(tiny)
    # (series without any non-zero value are cold: not fitted, persistence with a prior)
    assert m2.report["sf_fit_failures"] == len(tiny.keys) - m2.report["cold_keys"] == 9
    fc = m2.predict(5, [80, 95])
    _check(fc.mean, fc.lower, fc.upper, len(tiny.keys), 5)


def _parts(fc: Any) -> tuple[np.ndarray, dict, dict]:
    return fc.mean, fc.lower, fc.upper


def test_point_at_uses_only_the_past(sf: Any) -> None:
    """Forecasts from an origin do not change when later rows change."""
    f = _seasonal(2, 6, seed=1)
    model = StatsForecastModel(model="AutoETS", horizons=[3 * 3600]).fit(f)
    y = f.values.copy()
    origins = np.array([60, 100], dtype=np.int64)
    hs = np.array([1, 3], dtype=np.int64)
    a = model._point_at(y, origins, hs, None)
    y[101:] += 1000.0
    b = model._point_at(y, origins, hs, np.array([0, 1], dtype=np.int64))
    assert a.shape == (2, 2, 2) and np.isfinite(a).all()
    np.testing.assert_array_equal(a, b)


def test_autoets_beats_persistence_on_seasonal_series(sf: Any) -> None:
    f = _seasonal(3, 12, seed=2)
    model = StatsForecastModel(model="AutoETS", horizons=[3600, 6 * 3600])
    rows = evaluate(f, None, [1, 6], ["persistence", model], test_fraction=0.25)
    assert model.report["season_length"] == 24  # hourly: the daily season is kept
    by = {(r["model"], r["horizon_steps"]): r for r in rows}
    for h in (1, 6):
        ours = by[("sf_AutoETS", h)]
        assert ours["nmae"] < 0.8 * by[("persistence", h)]["nmae"]
        assert ours["mase_persistence"] < 0.8
        assert 0.6 <= ours["coverage_80"] <= 0.97  # calibrated by our conformal layer


def test_refit_every_and_trimmed_buffer(sf: Any, frame: SeriesFrame) -> None:
    head = SeriesFrame(frame.times[:300], frame.keys[:4], frame.values[:300, :4], frame.step)
    model = StatsForecastModel(model="AutoETS", keep="6h", refit_every=200).fit(head)
    assert model.report["sf_fits"] == 1  # once, before the calibration window
    for t in range(300, 700):
        model.update(frame.values[t, :4])
    assert model._offset > 0  # the buffer dropped the rows the first fit started on
    assert model.report["sf_fits"] == 3  # refitted online after 200 and 400 rows
    fc = model.predict(12, [80, 95])
    _check(fc.mean, fc.lower, fc.upper, 4, 12)


def test_subset_frame_uses_training_volume() -> None:
    T = 100
    v = np.tile(np.array([1.0, 5.0, 3.0, 4.0, 2.0]), (T, 1))
    v[70:, 0] = 1000.0  # huge only in the test part: must not be picked
    v[:10, 3] = np.nan  # gaps do not disqualify
    times = np.datetime64("2024-01-01", "s") + np.arange(T).astype("timedelta64[m]") * 5
    meta = {"site": np.array(list("abcde"))}
    f = SeriesFrame(times, tuple("ABCDE"), v, 300, meta=meta)
    sub = subset_frame(f, 3, test_fraction=0.3)
    assert sub.keys == ("B", "C", "D")  # the 3 largest, original order
    np.testing.assert_array_equal(sub.values, v[:, [1, 2, 3]])
    np.testing.assert_array_equal(sub.meta["site"], np.array(["b", "c", "d"]))
    assert subset_frame(f, 50).keys == f.keys
    with pytest.raises(ConfigError):
        subset_frame(f, 3, by="random")


def test_eval_subset_side_by_side(sf: Any) -> None:
    f = _seasonal(6, 8, seed=3)
    f = SeriesFrame(f.times, f.keys, f.values * np.arange(1, 7), f.step)
    rows = eval_subset(f, [1, 4], 3, ("AutoETS", "AutoTheta"), ours="profile")
    models = {r["model"] for r in rows}
    assert models == {"persistence", "seasonal_naive", "profile", "sf_AutoETS", "sf_AutoTheta"}
    assert len(rows) == 5 * 2
    assert all(r["subset_series"] == 3 and r["series"] == 3 for r in rows)
    sfr = [r for r in rows if r["model"].startswith("sf_")]
    assert all(r["sf_report"]["sf_fit_failures"] == 0 for r in sfr)
    assert all(np.isfinite(r["nmae"]) and 0 <= r["coverage_95"] <= 1 for r in rows)
