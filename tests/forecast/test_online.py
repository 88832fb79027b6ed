"""Online adaptation: coverage recovers after a level shift on 10 % of the series."""

from __future__ import annotations

import numpy as np
import pytest

from shadowcast.forecast.registry import make_model
from shadowcast.forecast.synthetic import synthetic_frame
from shadowcast.records import SeriesFrame

from .conftest import opts

SHIFT_AT = 60  # steps into the online part
ROLL = 6  # rolling window (origins) of the coverage


def _rolling_coverage(name: str, factor: float) -> tuple[np.ndarray, np.ndarray]:
    f = synthetic_frame(400, 864 + 120, 300, seed=7)
    v = f.values.copy()
    train = 864
    rng = np.random.default_rng(0)
    shifted = rng.choice(400, 40, replace=False)  # 10 % of the series
    v[train + SHIFT_AT :, shifted] *= factor
    head = SeriesFrame(times=f.times[:train], keys=f.keys, values=v[:train], step=f.step)
    model = make_model(name, **opts(name)).fit(head)
    cov80, cov95 = [], []
    for t in range(train, v.shape[0]):
        fc = model.predict(1, [80, 95])
        y = v[t]
        cov80.append(np.mean((fc.lower[80.0][:, 0] <= y) & (y <= fc.upper[80.0][:, 0])))
        cov95.append(np.mean((fc.lower[95.0][:, 0] <= y) & (y <= fc.upper[95.0][:, 0])))
        model.update(y)
    k = np.ones(ROLL) / ROLL
    return np.convolve(cov80, k, "valid"), np.convolve(cov95, k, "valid")


@pytest.mark.parametrize("name", ["persistence", "profile", "gbm", "theta", "auto"])
@pytest.mark.parametrize("factor", [3.0, 0.3])
def test_level_shift_recovery(name: str, factor: float) -> None:
    c80, c95 = _rolling_coverage(name, factor)
    # window ending at origin j covers origins j-ROLL+1..j; before the shift: calibrated
    pre80 = c80[: SHIFT_AT - ROLL]
    assert abs(pre80.mean() - 0.80) < 0.05, pre80.mean()
    # within 12 steps of the shift, every rolling window is within +-5 points of nominal
    after = slice(SHIFT_AT + 12 - ROLL + 1, None)
    assert (np.abs(c80[after] - 0.80) <= 0.05).all(), c80[SHIFT_AT - 2 :]
    assert (np.abs(c95[after] - 0.95) <= 0.05).all(), c95[SHIFT_AT - 2 :]
