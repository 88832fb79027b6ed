"""Series keys that come and go: cold start, joining, retirement, NaN history, backtests."""

from __future__ import annotations

import numpy as np
import pytest

from shadowcast.errors import ForecastError
from shadowcast.forecast.evaluate import evaluate
from shadowcast.forecast.keys import align_pair, pooled_prior, prior_quantiles
from shadowcast.forecast.registry import make_model
from shadowcast.forecast.synthetic import synthetic_frame
from shadowcast.records import SeriesFrame

from .conftest import opts


def _coverage(name: str) -> tuple[float, float, float]:
    """80 %/95 % coverage at one step of 20 keys that appear after the fit (cold for a
    day), and 80 % coverage of the 100 fitted ones, on the same day."""
    f = synthetic_frame(120, 864 + 288, 300, seed=11)
    model = make_model(name, join_after=None, **opts(name)).fit(
        f.columns(slice(0, 100)).rows(0, 864)
    )
    cold: dict[float, list[float]] = {80.0: [], 95.0: []}
    warm: list[float] = []
    for t in range(864, 864 + 287):
        model.update(f.rows(t, t + 1))
        fc = model.predict(1, [80, 95])
        y = f.values[t + 1]
        inside = {lv: (fc.lower[lv][:, 0] <= y) & (y <= fc.upper[lv][:, 0]) for lv in cold}
        for lv in cold:
            cold[lv].append(float(inside[lv][100:].mean()))
        warm.append(float(inside[80.0][:100].mean()))
    assert model.keys == f.keys and model._n_fit == 100  # type: ignore[attr-defined]
    return float(np.mean(cold[80.0])), float(np.mean(cold[95.0])), float(np.mean(warm))


@pytest.mark.parametrize("name", ["persistence", "profile"])
def test_cold_keys_get_an_honest_interval(name: str) -> None:
    """Persistence with the pooled prior: near nominal for new keys (0.776 / 0.948 here)."""
    c80, c95, w80 = _coverage(name)
    assert 0.72 <= c80 <= 0.88 and 0.91 <= c95 <= 0.99
    assert abs(w80 - 0.80) <= 0.04


def test_prior_quantiles_and_fallback() -> None:
    rng = np.random.default_rng(0)
    y = np.abs(rng.normal(100.0, 10.0, (300, 5)))
    obs = np.ones_like(y, dtype=bool)
    prior = pooled_prior(y, obs, np.array([1, 4]), 200, 10_000, 0, 12)
    assert all(p.size == 200 * 5 for p in prior)
    lo, hi = prior_quantiles(prior, 80.0)
    assert (lo < 0).all() and (hi > 0).all() and hi[1] >= 0.9 * hi[0]
    # nothing pooled (no warm series): +-1 x the key's level
    lo, hi = prior_quantiles(pooled_prior(y[:, :0], obs[:, :0], np.array([1]), 200, 10, 0, 12), 80)
    assert lo[0] == -1.0 and hi[0] == 1.0


def test_idle_keys_retire_and_come_back_as_new() -> None:
    f = synthetic_frame(6, 600, 300, seed=5)
    v = f.values.copy()
    v[470:500, 3] = 0.0  # idle at the end of the history: 2.5 h
    v[520:560, 2] = 0.0  # goes silent in the online part for 40 steps
    v[550:, 5] = np.nan  # stops reporting (missing, not zero)
    frame = SeriesFrame(f.times, f.keys, v, f.step)
    model = make_model("profile", retire_after="2h").fit(frame.rows(0, 500))
    assert model.keys == ("s0", "s1", "s2", "s4", "s5") and model.report["retired_keys"] == 1
    assert model.predict(3, [80]).mean.shape == (5, 3)
    for t in range(500, 590):
        model.update(frame.rows(t, t + 1))
        if t == 520 + 23:  # 24 idle steps = 2 h
            assert "s2" not in model.keys
    # s3 came back at row 500 (a new key), s2 at 560; s5 stopped reporting (NaN) at 550:
    # missing is idle too, retired 2 h later
    assert model.keys == ("s0", "s1", "s4", "s3", "s2")
    assert model.report["new_keys"] == 2 and model.report["retired_keys"] == 3
    fc = model.predict(3, [80])
    assert fc.mean.shape == (5, 3) and np.isfinite(fc.mean).all()
    # positional rows follow model.keys
    with pytest.raises(ForecastError, match="update expects"):
        model.update(frame.values[590])
    model.update(frame.values[590, [0, 1, 4, 3, 2]])


def test_every_key_idle_forecasts_nothing_until_one_appears() -> None:
    f = synthetic_frame(2, 100, 300, seed=1)
    zero = SeriesFrame(f.times, f.keys, np.zeros_like(f.values), f.step)
    model = make_model("profile", retire_after="1h").fit(zero)
    assert model.keys == () and model.predict(3, [80]).mean.shape == (0, 3)
    model.update(np.zeros((1, 0)))
    model.update(f.rows(50, 51))
    assert model.keys == f.keys and model.predict(3, [80]).mean.shape == (2, 3)


def test_missing_values_are_not_scored() -> None:
    """NaN history is cleaned for the model but its targets give no conformal score."""
    f = synthetic_frame(6, 600, 300, seed=2)
    v = f.values.copy()
    rng = np.random.default_rng(1)
    v[rng.random(v.shape) < 0.2] = np.nan
    model = make_model("persistence").fit(SeriesFrame(f.times, f.keys, v, f.step))
    cal = 200  # held out: one day, at most a third of the history; targets one step ahead
    scored = sum(s.size for s in model._cal._scores[0])  # every volume group's scores
    assert scored == int(np.isfinite(v[-cal:]).sum())
    gbm = make_model("gbm", **opts("gbm")).fit(SeriesFrame(f.times, f.keys, v, f.step))
    fc = gbm.predict(12, [80])
    assert np.isfinite(fc.mean).all() and gbm.report["nonfinite"] > 0


def test_refit_on_demand_and_no_join_without_it() -> None:
    f = synthetic_frame(5, 500, 300, seed=3)
    model = make_model("theta", join_after=None).fit(f.columns(slice(0, 4)).rows(0, 400))
    for t in range(400, 500):
        model.update(f.rows(t, t + 1))
    assert model.report["cold_keys"] == 0 and "refits" not in model.report
    assert model._n_fit == 4 and model.keys == f.keys  # type: ignore[attr-defined]
    model.refit()
    assert model._n_fit == 5 and model.report["refits"] == 1  # type: ignore[attr-defined]
    assert model.predict(2, [80]).mean.shape == (5, 2)


def _appear_vanish() -> tuple[SeriesFrame, SeriesFrame, SeriesFrame]:
    """Train (s6 absent: not a column), the same with s6 all zero, and a test part where
    s6 appears after 30 steps and s7 goes silent after 60."""
    f = synthetic_frame(8, 600, 300, seed=6)
    v = f.values.copy()
    v[:450, 6] = 0.0
    v[480:, 7] = 0.0
    full = SeriesFrame(f.times, f.keys, v, f.step)
    dense_train, test = full.rows(0, 420), full.rows(420, None)
    sparse_train = dense_train.columns([0, 1, 2, 3, 4, 5, 7])
    return sparse_train, dense_train, test.columns([0, 1, 2, 3, 4, 5, 6])


def _strip(rows: list[dict[str, object]]) -> list[dict[str, object]]:
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


def test_backtest_with_keys_that_appear_and_vanish() -> None:
    sparse, dense, test = _appear_vanish()
    assert "s6" not in sparse.keys and "s7" not in test.keys
    models = ["persistence", "profile", "theta"]
    a = evaluate(sparse, test, [1, 4], models)
    b = evaluate(dense, test, [1, 4], models)
    np.testing.assert_equal(_strip(a), _strip(b))  # absent and all-zero: the same thing
    assert all(r["series"] == 8 and np.isfinite(r["nmae"]) for r in a)
    tr, te = align_pair(sparse, test, 0.0)
    assert tr.keys == te.keys == tuple(f"s{i}" for i in range(8))
    assert (tr.values[:, 6] == 0).all() and (te.values[:, 7] == 0).all()
    # a model that retires idle keys stops forecasting s7 (scored as a forecast of 0:
    # what persistence says of a silent key anyway)
    model = make_model("persistence", retire_after="1h")
    retire = evaluate(dense, test, [1], [model])
    assert model.keys == ("s0", "s1", "s2", "s3", "s4", "s5", "s6")  # s6 retired, back
    assert model.report["retired_keys"] == 2 and model.report["new_keys"] == 1
    plain = evaluate(dense, test, [1], ["persistence"])
    assert retire[0]["nmae"] == plain[0]["nmae"]
