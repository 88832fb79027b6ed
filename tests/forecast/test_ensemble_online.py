"""Online expert aggregation in the ensemble: weights follow the member that has been
right lately, using only observations seen before each forecast."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from shadowcast.forecast.baselines import Persistence, SeasonalNaive
from shadowcast.forecast.ensemble import Ensemble
from shadowcast.records import SeriesFrame


class _Daily(SeasonalNaive):
    name = "daily"

    def __init__(self, horizons: Sequence[str | int] = ("1h",), **kw: Any) -> None:
        super().__init__(None, season="1d", horizons=horizons, **kw)


def _daily_frame(days: int = 10, n: int = 3) -> SeriesFrame:
    t = np.arange(days * 24)
    v = 100.0 + 50.0 * np.sin(2 * np.pi * t / 24.0)[:, None] * np.arange(1, n + 1)[None, :]
    times = np.datetime64("2024-01-01T00:00:00", "s") + t * np.timedelta64(3600, "s")
    return SeriesFrame(times=times, keys=tuple(f"s{i}" for i in range(n)), values=v, step=3600)


def _model(rate: float) -> Ensemble:
    return Ensemble(("1h",), members=(Persistence, _Daily), online_rate=rate)


def test_weights_move_to_the_member_that_is_right_now() -> None:
    f = _daily_frame()
    model = _model(0.2).fit(f)
    assert model._weights is not None
    assert model._weights[0].tolist() == [0.0, 1.0]  # the daily cycle wins on calibration
    level = np.full(3, 70.0)  # the cycle stops: persistence is exact from here on
    chosen = []
    for _ in range(30):
        fc = model.predict(1, [80])
        assert np.isfinite(fc.mean).all()
        model.update(level)
        chosen.append(model._weights[0].tolist())
    assert chosen[0] == [0.0, 1.0]  # one bad step is not enough to switch
    assert chosen[-1] == [1.0, 0.0]
    assert model._wser is not None
    assert (model._wser[0] == [1.0, 0.0]).all()  # every series, through its own losses
    np.testing.assert_allclose(model.predict(1).mean[:, 0], level)


def test_zero_rate_keeps_the_calibration_weights() -> None:
    model = _model(0.0).fit(_daily_frame())
    for _ in range(10):
        model.predict(1)
        model.update(np.full(3, 70.0))
    assert model._weights is not None
    assert model._weights[0].tolist() == [0.0, 1.0]


def test_updates_without_forecasts_leave_the_weights() -> None:
    model = _model(0.5).fit(_daily_frame())
    for _ in range(10):
        model.update(np.full(3, 70.0))  # nothing was forecast: nothing to score
    assert model._weights is not None
    assert model._weights[0].tolist() == [0.0, 1.0]


class _Recording(Persistence):
    """Persistence that records the history length of every fit."""

    name = "recording"
    fits: list[int] = []

    def _fit_model(self, y: Any) -> None:
        type(self).fits.append(int(y.shape[0]))
        super()._fit_model(y)


def test_the_backtest_refits_the_members_before_each_part_of_the_window() -> None:
    """``cal_folds``: the window's later parts are forecast by members fitted on the
    history before them, not on the history before the whole window."""
    f = _daily_frame(days=4)  # 96 rows, 1 h steps: a 24-row calibration window
    T = f.values.shape[0]
    for folds, fits in ((1, [T - 24, T]), (3, [T - 24, T - 24 + 8, T - 24 + 16, T])):
        _Recording.fits = []
        model = Ensemble(("1h",), members=(Persistence, _Recording), cal_folds=folds).fit(f)
        assert _Recording.fits == fits, folds
        assert model._weights is not None
    import pytest

    from shadowcast.errors import ConfigError

    with pytest.raises(ConfigError, match="cal_folds"):
        Ensemble(("1h",), members=(Persistence,), cal_folds=0)
