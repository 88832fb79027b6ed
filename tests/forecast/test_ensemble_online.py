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
