"""Contract suite: every registered model obeys the Forecaster protocol."""

from __future__ import annotations

import numpy as np
import pytest

from shadowcast.errors import ConfigError, ForecastError
from shadowcast.forecast.base import Forecaster
from shadowcast.forecast.registry import MODELS, make_model
from shadowcast.records import SeriesFrame

from .conftest import HAS_TORCH, model_names, opts
from .conftest import check_forecast as _check

NAMES = model_names(sorted(MODELS))
PLAIN = [n for n in sorted(MODELS) if n != "neural" or HAS_TORCH]


@pytest.mark.parametrize("name", NAMES)
def test_fit_predict_shapes_and_order(name: str, frame: SeriesFrame) -> None:
    model: Forecaster = make_model(name, **opts(name))
    assert all(callable(getattr(model, v)) for v in ("fit", "predict", "update"))
    fc = model.fit(frame).predict(12, [80, 95])
    _check(fc.mean, fc.lower, fc.upper, len(frame.keys), 12)
    assert fc.model == model.name
    # deterministic: a second fit gives the same forecast
    fc2 = make_model(name, **opts(name)).fit(frame).predict(12, [80, 95])
    np.testing.assert_array_equal(fc.mean, fc2.mean)
    np.testing.assert_array_equal(fc.upper[95.0], fc2.upper[95.0])


@pytest.mark.parametrize("name", NAMES)
def test_bad_input_no_nan(name: str, bad_frame: SeriesFrame) -> None:
    model = make_model(name, **opts(name)).fit(bad_frame)
    fc = model.predict(12, [80, 95])
    _check(fc.mean, fc.lower, fc.upper, len(bad_frame.keys), 12)
    assert model.report["nonfinite"] > 0
    assert model.report["late_start_series"] >= 1
    assert model.report["all_missing_series"] == 1
    # constant series: forecast the constant (to 1e-4: the neural model's "no change" is
    # learnt, not exact)
    np.testing.assert_allclose(fc.mean[2], 42.0, rtol=1e-4)
    # online update with bad rows is cleaned too
    rows = bad_frame.values[-5:].copy()
    rows[0, :] = np.nan
    rows[1, 0] = np.inf
    model.update(rows)
    fc = model.predict(3, [80, 95])
    _check(fc.mean, fc.lower, fc.upper, len(bad_frame.keys), 3)


@pytest.mark.parametrize("name", NAMES)
def test_misuse_raises(name: str, frame: SeriesFrame) -> None:
    model = make_model(name, **opts(name))
    with pytest.raises(ForecastError, match="before fit"):
        model.predict(3)
    with pytest.raises(ForecastError, match="before fit"):
        model.update(np.zeros((1, 3)))
    model.fit(frame)
    with pytest.raises(ForecastError, match="horizon"):
        model.predict(0)
    with pytest.raises(ForecastError, match="update expects"):
        model.update(np.zeros((1, len(frame.keys) + 1)))
    with pytest.raises(ForecastError, match="level"):
        model.predict(3, [100])


@pytest.mark.parametrize("name", NAMES)
def test_update_moves_origin(name: str, frame: SeriesFrame) -> None:
    cut = frame.values.shape[0] - 10
    head = SeriesFrame(
        times=frame.times[:cut], keys=frame.keys, values=frame.values[:cut], step=frame.step
    )
    model = make_model(name, **opts(name)).fit(head)
    model.update(frame.values[cut:])
    fc = model.predict(2, [80])
    if name == "persistence":
        np.testing.assert_array_equal(fc.mean[:, 0], frame.values[-1])
    assert fc.mean.shape == (len(frame.keys), 2)


def test_short_history_and_long_horizon() -> None:
    from shadowcast.forecast.synthetic import synthetic_frame

    f = synthetic_frame(5, 3, 300, seed=1)
    for name in PLAIN:
        fc = make_model(name, **opts(name)).fit(f).predict(40, [80, 95])
        _check(fc.mean, fc.lower, fc.upper, 5, 40)


def test_unknown_model() -> None:
    with pytest.raises(ConfigError, match="unknown model"):
        make_model("prophet")


@pytest.mark.parametrize("name", ["persistence", "seasonal_naive", "profile"])
def test_long_online_run_trims_history(name: str, frame: SeriesFrame) -> None:
    """The buffer keeps only ``keep`` of history; time stamps stay right after trimming."""
    head = SeriesFrame(
        times=frame.times[:300], keys=frame.keys, values=frame.values[:300], step=frame.step
    )
    model = make_model(name, keep="6h", **opts(name)).fit(head)
    for t in range(300, frame.values.shape[0]):
        model.update(frame.values[t])
    assert model._offset > 0 and model._y.shape[0] < frame.values.shape[0]
    fc = model.predict(12, [80, 95])
    _check(fc.mean, fc.lower, fc.upper, len(frame.keys), 12)
    if name == "seasonal_naive":  # same time yesterday, from the trimmed buffer
        T = frame.values.shape[0]
        np.testing.assert_allclose(fc.mean[:, 0], frame.values[T - 288])
    assert int(model.time_of(np.array([model._y.shape[0] - 1]))[0]) == int(
        frame.times[-1].astype("datetime64[s]").astype(np.int64)
    )


def test_gbm_online_refit_inside_ensemble(frame: SeriesFrame) -> None:
    head = SeriesFrame(
        times=frame.times[:700], keys=frame.keys, values=frame.values[:700], step=frame.step
    )
    o = {"member_options": {"gbm": {"rounds": 10, "max_rows": 5000, "refit_every": "30m"}}}
    model = make_model("auto", **o).fit(head)
    (gbm,) = [m for m in model.members if m.name == "gbm"]  # type: ignore[attr-defined]
    first = gbm._boosters[0]
    model.update(frame.values[700:712])
    assert gbm._boosters[0] is not first  # refitted online
    fc = model.predict(12, [80, 95])
    _check(fc.mean, fc.lower, fc.upper, len(frame.keys), 12)


@pytest.mark.parametrize("name", ["persistence", "seasonal_naive", "profile", "gbm", "theta"])
def test_planning_horizon_days(name: str, frame: SeriesFrame) -> None:
    """Multi-day horizons: calibrated on a log-spaced grid of steps, interpolated between."""
    model = make_model(name, horizons=["15m", "1d"], **opts(name)).fit(frame)
    assert len(model.grid) <= 24 and model.grid[-1] == 288
    fc = model.predict(288, [80, 95])
    _check(fc.mean, fc.lower, fc.upper, len(frame.keys), 288)
    width = (fc.upper[80.0] - fc.lower[80.0]).mean(axis=0)
    assert width[-1] > width[0]  # uncertainty grows with the horizon


def test_gbm_uses_meta(frame: SeriesFrame) -> None:
    n = len(frame.keys)
    meta = {
        "category": np.array(["video", "web", "bulk"] * (n // 3)),
        "distance_km": np.linspace(100, 5000, n),
        "bad_length": np.zeros(n + 1),  # ignored: not one value per series
    }
    f = SeriesFrame(frame.times, frame.keys, frame.values, frame.step, meta=meta)
    model = make_model("gbm", **opts("gbm")).fit(f)
    assert model._meta.shape == (n, 2)  # type: ignore[attr-defined]
    fc = model.predict(12, [80, 95])
    _check(fc.mean, fc.lower, fc.upper, n, 12)


@pytest.mark.parametrize("name", NAMES)
def test_update_with_a_frame_of_new_and_missing_keys(name: str, frame: SeriesFrame) -> None:
    """``update(frame)`` aligns by key name: a key the model has not seen starts cold
    (persistence, a prior interval scaled by its level) and joins the fitted model at the
    next refit; a key the frame lacks is missing (NaN) for those rows."""
    n = len(frame.keys)
    cut = frame.values.shape[0] - 24
    model = make_model(name, join_after="1h", **opts(name)).fit(
        frame.columns(slice(0, n - 2)).rows(0, cut)
    )
    assert model.keys == frame.keys[: n - 2]
    model.update(frame.rows(cut, cut + 1))  # every key: two are new
    assert model.keys == frame.keys and model.report["new_keys"] == 2
    fc = model.predict(12, [80, 95])
    _check(fc.mean, fc.lower, fc.upper, n, 12)
    np.testing.assert_array_equal(fc.mean[n - 2 :, 0], frame.values[cut, n - 2 :])
    width = fc.upper[80.0][n - 2 :] - fc.lower[80.0][n - 2 :]
    assert (width[:, 0] > 0).all() and (width[:, -1] >= width[:, 0]).all()
    # another key order, the first key missing: aligned by name, NaN for the missing one
    shuffled = frame.rows(cut + 1, cut + 2).columns(np.arange(n)[::-1][:-1])
    model.update(shuffled)
    assert model.keys == frame.keys and model.report["nonfinite"] >= 1
    if name == "persistence":
        got = model.predict(1).mean[:, 0]
        np.testing.assert_array_equal(got[1:], frame.values[cut + 1, 1:])
        assert got[0] == frame.values[cut, 0]  # missing: the last value carries on
    with pytest.raises(ForecastError, match="step"):
        model.update(SeriesFrame(frame.times[:1], frame.keys, frame.values[:1], 600))
    with pytest.raises(ForecastError, match="exogenous"):
        model.update(frame.rows(cut + 2, cut + 3), {"rtt_ms": np.zeros((1, n))})
    # one hour after they appeared, the new keys join the fitted model (a refit)
    for t in range(cut + 2, cut + 14):
        model.update(frame.rows(t, t + 1))
    assert model.report["refits"] == 1 and model.report["cold_keys"] == 0
    assert model.keys == frame.keys and model._n_fit == n  # type: ignore[attr-defined]
    fc = model.predict(12, [80, 95])
    _check(fc.mean, fc.lower, fc.upper, n, 12)
    model.update(frame.values[cut + 14])  # positional rows still work, in model.keys order


@pytest.mark.parametrize("name", NAMES)
def test_all_keys_cold_at_fit(name: str, frame: SeriesFrame) -> None:
    """A history where nothing was seen yet: every key cold (0, [0, 0]) until it carries
    a value, then persistence with the prior, then fitted at the next refit."""
    head = SeriesFrame(frame.times[:300], frame.keys, np.zeros((300, len(frame.keys))), 300)
    model = make_model(name, join_after="30m", **opts(name)).fit(head)
    fc = model.predict(4, [80, 95])
    _check(fc.mean, fc.lower, fc.upper, len(frame.keys), 4)
    assert (fc.upper[95.0] == 0).all()
    for t in range(300, 308):
        model.update(frame.rows(t, t + 1))
    assert model.report["refits"] == 1 and model._n_fit == len(frame.keys)  # type: ignore[attr-defined]
    fc = model.predict(4, [80, 95])
    _check(fc.mean, fc.lower, fc.upper, len(frame.keys), 4)
