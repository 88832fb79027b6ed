"""The service's forecast cycle: warm-up, online updates, retraining, saving and resuming."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shadowcast.forecast.cycle import ForecastCycle
from shadowcast.forecast.registry import make_model

STEP = 300
OD = (("a", "b"), ("b", "a"), ("a", "c"))


def series(T: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(T)[:, None]
    daily = 10 + 5 * np.sin(2 * np.pi * t / 288 + np.array([0.0, 1.0, 2.0]))
    return daily + rng.normal(0, 0.5, (T, 3))


def cycle(**kw: object) -> ForecastCycle:
    opts = {"warmup_s": 86400, "retrain_every_s": None, "keep_s": 3 * 86400, **kw}
    return ForecastCycle(
        lambda: make_model("profile", horizons=["15m", "1h"]),
        "profile",
        ("high", "low"),
        OD,
        STEP,
        horizon_steps=12,
        **opts,  # type: ignore[arg-type]
    )


def feed(c: ForecastCycle, y: np.ndarray, start: int = 0, t0: int = 1_700_000_100) -> None:
    for i in range(start, len(y)):
        c.observe(t0 + i * STEP, {"high": y[i], "low": 2 * y[i]})


def test_fits_after_the_warmup_and_predicts_every_class() -> None:
    c = cycle()
    y = series(400)
    feed(c, y[:287])
    assert not c.ready and c.predict() is None
    feed(c, y[:300], start=287)
    assert c.ready and c.version == 1
    fc = c.predict()
    assert fc is not None
    assert set(fc.by_class) == {"high", "low"}
    assert fc.by_class["low"].mean.shape == (3, 12)
    assert fc.issued_s == 1_700_000_100 + 300 * STEP
    lo, hi = fc.by_class["high"].lower[80.0], fc.by_class["high"].upper[80.0]
    assert (lo <= fc.by_class["high"].mean).all() and (fc.by_class["high"].mean <= hi).all()


def test_refits_on_schedule() -> None:
    c = cycle(retrain_every_s=3600)
    feed(c, series(288 + 30))
    assert c.version == 3  # fitted at 288, again 12 and 24 steps later


def test_save_and_load_continue_identically(tmp_path: Path) -> None:
    y = series(400)
    a = cycle()
    feed(a, y[:320])
    a.save(tmp_path)
    b = cycle()
    assert b.load(tmp_path)
    assert b.version == a.version and b.last_s == a.last_s
    feed(a, y[:360], start=320)
    feed(b, y[:360], start=320)
    fa, fb = a.predict(), b.predict()
    assert fa is not None and fb is not None
    np.testing.assert_array_equal(fa.by_class["high"].mean, fb.by_class["high"].mean)
    np.testing.assert_array_equal(fa.by_class["low"].upper[95.0], fb.by_class["low"].upper[95.0])
    assert b.version == 1  # no refit: the loaded models went on


def test_load_refuses_another_shape(tmp_path: Path) -> None:
    a = cycle()
    feed(a, series(300))
    a.save(tmp_path)
    other = ForecastCycle(
        lambda: make_model("profile", horizons=["15m"]), "profile", ("high",), OD, STEP,
        horizon_steps=3,
    )  # fmt: skip
    assert not other.load(tmp_path)
    assert not other.ready


def test_catch_up_updates_loaded_models_with_later_steps(tmp_path: Path) -> None:
    y = series(400)
    t0 = 1_700_000_100
    a = cycle()
    feed(a, y[:320])
    a.save(tmp_path)
    feed(a, y[:340], start=320)  # the service ran on, then stopped without saving
    b = cycle()
    assert b.load(tmp_path)
    b.catch_up([(t0 + i * STEP, {"high": y[i], "low": 2 * y[i]}) for i in range(340)])
    assert b.last_s == a.last_s and b.history.rows == a.history.rows
    fa, fb = a.predict(), b.predict()
    assert fa is not None and fb is not None
    np.testing.assert_allclose(fa.by_class["high"].mean, fb.by_class["high"].mean)


def test_a_gap_refits_on_what_the_history_holds() -> None:
    c = cycle()
    y = series(400)
    feed(c, y[:300])
    t0 = 1_700_000_100
    c.observe(t0 + 310 * STEP, {"high": y[310], "low": y[310]})
    assert c.version == 2
    assert c.history.rows == 311  # the nine missing steps are NaN rows
    assert np.isnan(c.history.data["high"][300:310]).all()
    fc = c.predict()
    assert fc is not None and np.isfinite(fc.by_class["high"].mean).all()


def test_old_steps_are_ignored() -> None:
    c = cycle()
    y = series(300)
    feed(c, y)
    last = c.last_s
    c.observe(1_700_000_100, {"high": y[0], "low": y[0]})
    assert c.last_s == last


@pytest.mark.parametrize("model", ["persistence", "profile"])
def test_every_cycle_model_pickles(tmp_path: Path, model: str) -> None:
    c = ForecastCycle(
        lambda: make_model(model, horizons=["15m"]), model, ("all",), OD, STEP,
        horizon_steps=3, warmup_s=3600,
    )  # fmt: skip
    for i, row in enumerate(series(50)):
        c.observe(1_700_000_100 + i * STEP, {"all": row})
    c.save(tmp_path)
    d = ForecastCycle(
        lambda: make_model(model, horizons=["15m"]), model, ("all",), OD, STEP,
        horizon_steps=3, warmup_s=3600,
    )  # fmt: skip
    assert d.load(tmp_path)
