"""The global LightGBM model: calendar cycles gated by the history's span, and the
per-horizon scaling of its target."""

from __future__ import annotations

import numpy as np

from shadowcast.forecast.gbm import GlobalGBM, calendar_terms
from shadowcast.records import SeriesFrame

STEP = 900


def _walks(days: float, n: int = 30, seed: int = 0, drift: float = 0.0) -> SeriesFrame:
    """``n`` positive random walks (15-min steps), levels 100-1000, optional drift/step."""
    rng = np.random.default_rng(seed)
    T = int(days * 86400 // STEP)
    level = rng.uniform(100.0, 1000.0, n)
    steps = rng.normal(drift, 1.0, (T, n)) * level * 0.02
    y = level + np.cumsum(steps, axis=0)
    times = 1_700_000_000 + STEP * np.arange(T, dtype=np.int64)
    return SeriesFrame(times, tuple(f"s{i}" for i in range(n)), np.maximum(y, 1.0), STEP)


def test_calendar_terms_without_the_week() -> None:
    t = np.array([0, 3600 * 30], dtype=np.int64)
    assert len(calendar_terms(t, (1, 2))) == 7
    daily = calendar_terms(t, (1, 2), weekly=False)
    assert len(daily) == 4
    np.testing.assert_allclose(np.stack(daily), np.stack(calendar_terms(t, (1, 2))[:4]))


def test_a_cycle_is_read_only_where_the_history_spans_two_of_it() -> None:
    """A phase seen less than twice is a time index: no daily terms on a day and a half,
    no weekly ones on three days, both on fifteen (the feature count says which)."""
    o = np.array([60], dtype=np.int64)
    i = np.array([0], dtype=np.int64)
    h = np.array([1], dtype=np.int64)
    width = {}
    for days in (1.5, 3.0, 15.0):
        m = GlobalGBM(rounds=3, max_rows=3000, calibration_window="6h").fit(_walks(days))
        width[days] = m._features(m._y, o, i, h).shape[1]
        assert m._cycles == (days >= 2, days >= 14)
    assert width[3.0] - width[1.5] == 4  # two daily Fourier pairs
    assert width[15.0] - width[3.0] == 3  # the weekly pair and the weekend flag


def test_horizon_scale_of_random_walks_grows_as_the_square_root() -> None:
    """k_h is the mean absolute change over h steps relative to one step: sqrt(h) for a
    random walk; without horizon scaling there is none (k = 1)."""
    fr = _walks(3.0, n=60, seed=1)
    m = GlobalGBM(rounds=3, max_rows=3000, horizons=("15m", "1h")).fit(fr)
    np.testing.assert_allclose(m._hscale, np.sqrt(np.arange(1, 5)), rtol=0.08)
    off = GlobalGBM(rounds=3, max_rows=3000, horizon_scaling=False).fit(fr)
    assert off._hscale.size == 0
    np.testing.assert_array_equal(off._k(np.array([1, 4])), [1.0, 1.0])


def test_a_drift_is_forecast_in_proportion_to_the_step() -> None:
    """On walks that all climb by the same share per step, the forecast's rise at 1 h is
    about four times that at 15 min: the scaled target is multiplied back by k_h."""
    fr = _walks(3.0, n=40, seed=2, drift=3.0)
    m = GlobalGBM(rounds=60, max_rows=20_000).fit(fr)
    fc = m.predict(4, (80.0,))
    last = fr.values[-1]
    rise = (fc.mean - last[:, None]) / last[:, None]
    r1, r4 = float(np.median(rise[:, 0])), float(np.median(rise[:, 3]))
    assert r1 > 0.0
    assert 3.0 < r4 / r1 < 5.0


def test_the_refit_schedule_comes_from_the_config() -> None:
    """``forecast.gbm_refit_every`` reaches the GBM, alone and as a member of ``auto``
    (null: refits only when the service refits the whole model)."""
    from shadowcast.forecast.config import ForecastConfig
    from shadowcast.forecast.outlook import model_options
    from shadowcast.forecast.registry import make_model

    assert (
        make_model("gbm", **model_options(ForecastConfig(model="gbm"), 300)).refit_every_s == 10800
    )
    off = ForecastConfig(model="auto", gbm_refit_every=None, auto_members=["persistence", "gbm"])
    auto = make_model("auto", **model_options(off, 300))
    gbm = [m for m in auto.members if m.name == "gbm"]
    assert len(gbm) == 1 and gbm[0].refit_every_s is None


def test_bags_average_boosters_fitted_on_their_own_samples() -> None:
    """``bags`` boosters, each on its own sample of rows; the forecast is their mean."""
    import pytest

    from shadowcast.errors import ForecastError

    f = _walks(3.0)
    bagged = GlobalGBM(("15m", "1h"), bags=3, refit_every=None, rounds=20).fit(f)
    assert len(bagged._boosters) == 3
    T = f.values.shape[0]
    origins = np.array([T - 1], dtype=np.int64)
    hs = np.array([1, 4], dtype=np.int64)
    y = bagged._y
    both = bagged._point_at(y, origins, hs, None)
    each = []
    for b in list(bagged._boosters):
        bagged._boosters = [b]
        each.append(bagged._point_at(y, origins, hs, None))
    np.testing.assert_allclose(both, np.mean(each, axis=0), rtol=1e-9)
    assert not np.allclose(each[0], each[1])  # the samples differ, so the boosters do
    with pytest.raises(ForecastError, match="bags"):
        GlobalGBM(bags=0)


def test_a_model_saved_before_bagging_loads_with_its_one_booster() -> None:
    import pickle

    m = GlobalGBM(("15m",), bags=1, refit_every=None, rounds=10).fit(_walks(3.0))
    state = m.__dict__.copy()
    one = state.pop("_boosters")[0]
    state.pop("bags")
    state["_booster"] = one
    old = GlobalGBM.__new__(GlobalGBM)
    old.__setstate__(state)
    assert old._boosters == [one] and old.bags == 1
    again = pickle.loads(pickle.dumps(m))
    np.testing.assert_allclose(again.predict(4).mean, m.predict(4).mean)


def test_bags_and_folds_come_from_the_config() -> None:
    import pytest
    from pydantic import ValidationError

    from shadowcast.forecast.config import ForecastConfig
    from shadowcast.forecast.outlook import model_options
    from shadowcast.forecast.registry import make_model

    cfg = ForecastConfig(model="auto", gbm_bags=2, auto_cal_folds=2,
                         auto_members=["persistence", "gbm"])  # fmt: skip
    auto = make_model("auto", **model_options(cfg, 300))
    assert auto.cal_folds == 2
    assert [m.bags for m in auto.members if m.name == "gbm"] == [2]
    for bad in ({"gbm_bags": 0}, {"auto_cal_folds": 9}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            ForecastConfig(**bad)
