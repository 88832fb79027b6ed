"""Small frames shared by the forecast tests."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import Any

import numpy as np
import pytest

from shadowcast.forecast.synthetic import synthetic_frame
from shadowcast.records import SeriesFrame

# Small options so the LightGBM-based and neural models stay fast in the contract suite.
FAST_GBM = {"rounds": 20, "max_rows": 20_000}
FAST_NEURAL = {"epochs": 3, "hidden": 16, "max_samples": 4000, "batch": 256, "threads": 1}
FAST = {
    "gbm": FAST_GBM,
    "neural": FAST_NEURAL,
    "auto": {"member_options": {"gbm": FAST_GBM, "neural": FAST_NEURAL}},
}
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(
    not HAS_TORCH, reason="torch not installed (the optional neural extra)"
)


def model_names(names: Iterable[str]) -> list[Any]:
    """Model names as pytest params, the neural one skipped without torch."""
    return [pytest.param(n, marks=needs_torch) if n == "neural" else n for n in names]


def opts(name: str) -> dict[str, object]:
    return dict(FAST.get(name, {}))


@pytest.fixture(scope="session")
def frame() -> SeriesFrame:
    return synthetic_frame(24, 864, 300, seed=3)  # 3 days of 5-min data


@pytest.fixture(scope="session")
def bad_frame() -> SeriesFrame:
    """Gaps, zeros, a constant series, NaN/inf, a series starting mid-history, all-NaN."""
    f = synthetic_frame(12, 864, 300, seed=4)
    v = f.values.copy()
    v[100:140, 0] = np.nan  # gap
    v[:, 1] = 0.0  # all zeros
    v[:, 2] = 42.0  # constant
    v[::7, 3] = np.inf
    v[5::11, 3] = -np.inf
    v[:500, 4] = np.nan  # starts mid-history
    v[:, 5] = np.nan  # never observed
    v[-3:, 6] = np.nan  # ends in a gap
    v[200:300, 7] = 0.0  # zeros inside
    return SeriesFrame(times=f.times, keys=f.keys, values=v, step=f.step)


def check_forecast(fc_mean: np.ndarray, lower: dict, upper: dict, n: int, h: int) -> None:
    """Shapes, finiteness, lower <= mean <= upper, nested 80/95 % intervals."""
    assert fc_mean.shape == (n, h)
    assert np.isfinite(fc_mean).all()
    for lv in (80.0, 95.0):
        lo, hi = lower[lv], upper[lv]
        assert lo.shape == hi.shape == (n, h)
        assert np.isfinite(lo).all() and np.isfinite(hi).all()
        assert (lo <= fc_mean).all() and (fc_mean <= hi).all()
    assert (lower[95.0] <= lower[80.0] + 1e-9).all()
    assert (upper[80.0] <= upper[95.0] + 1e-9).all()
