"""Group-conditional (Mondrian) conformal intervals: coverage per volume decile, not only
pooled, on a synthetic set whose small series are heavy-tailed and big ones Gaussian."""

from __future__ import annotations

import numpy as np
import pytest

from shadowcast.errors import ForecastError
from shadowcast.forecast.baselines import Persistence
from shadowcast.forecast.conformal import Calibrator, volume_groups
from shadowcast.forecast.evaluate import evaluate
from shadowcast.records import SeriesFrame


def heteroscedastic(n: int = 100, steps: int = 600, seed: int = 0) -> SeriesFrame:
    """Volumes over three orders of magnitude; the smaller half has Student-t (df 1.5)
    noise, the larger half near-Gaussian: the same scale-normalised score quantile cannot
    serve both."""
    rng = np.random.default_rng(seed)
    vol = np.geomspace(1.0, 1000.0, n)
    df = np.where(np.arange(n) < n // 2, 1.5, 50.0)
    noise = np.clip(rng.standard_t(df[None, :], size=(steps, n)), -9.0, None)
    t0 = np.datetime64("2024-03-04T00:00:00", "s")
    times = t0 + np.arange(steps) * np.timedelta64(300, "s")
    keys = tuple(f"s{i}" for i in range(n))
    return SeriesFrame(times=times, keys=keys, values=vol * (10.0 + noise), step=300)


def _worst_gap(groups: int) -> tuple[float, float]:
    rows = evaluate(heteroscedastic(), None, [1, 3], [Persistence(("5m", "15m"),
                    conformal_groups=groups)])  # fmt: skip
    gap_dec, gap_all = 0.0, 0.0
    for r in rows:
        for lv in (80, 95):
            by = np.asarray(r[f"coverage_{lv}_by_decile"])
            gap_dec = max(gap_dec, float(np.abs(by - lv / 100).max()))
            gap_all = max(gap_all, abs(r[f"coverage_{lv}"] - lv / 100))
    return gap_dec, gap_all


def test_per_decile_coverage_needs_groups() -> None:
    pooled_dec, pooled_all = _worst_gap(1)
    dec, overall = _worst_gap(10)
    assert pooled_all <= 0.01  # pooled conformal: right on average...
    assert pooled_dec >= 0.015  # ...but wrong per decile (heavy tails under-covered)
    assert dec <= 0.01, dec  # Mondrian by volume decile: right in every decile
    assert overall <= 0.01


def test_volume_groups_ranks() -> None:
    g = volume_groups(np.array([5.0, 1.0, 3.0, 2.0, 4.0, 0.0]), 3)
    assert g.tolist() == [2, 0, 1, 1, 2, 0]
    assert volume_groups(np.array([1.0, 2.0]), 10).tolist() == [0, 1]  # at most one a series


def test_thin_group_uses_pooled_scores() -> None:
    grid = np.array([1], dtype=np.int64)
    groups = np.array([0] * 50 + [1] * 2, dtype=np.int64)
    cal = Calibrator(grid, groups=groups, min_group=200)
    rng = np.random.default_rng(0)
    s = rng.standard_normal((40, 52))
    s[:, 50:] *= 100.0  # group 1: 80 scores, too few for its own quantiles
    cal.fit([s])
    lo, hi = cal.quantiles(80.0)
    one = Calibrator(grid)  # a single pooled set over the same scores
    one.fit([s.ravel()])
    plo, phi = one.quantiles(80.0)
    assert (lo[0, 1], hi[0, 1]) == (plo[0, 0], phi[0, 0])  # thin group 1: pooled
    assert -2.0 < lo[0, 0] < 0 < hi[0, 0] < 2.0  # group 0: its own N(0, 1) scores
    assert cal.per_series(hi, 52).shape == (52, 1)


def test_group_aci_moves_only_the_missing_group() -> None:
    grid = np.array([1], dtype=np.int64)
    groups = np.repeat(np.arange(2), 100)
    cal = Calibrator(grid, gamma=0.2, groups=groups, min_group=20)
    cal.fit([np.random.default_rng(1).standard_normal((50, 200))])
    a0 = cal.alpha(80.0).copy()
    lo, hi = cal.quantiles(80.0)
    scores = np.zeros(200)
    scores[100:] = 10.0  # group 1 misses every time, group 0 never
    cal.observe(0, scores, {80.0: (lo[0], hi[0])}, 200)
    a = cal.alpha(80.0)
    assert a[0, 0] > a0[0, 0] and a[0, 1] < a0[0, 1]  # narrower for 0, wider for 1


def test_bad_group_count() -> None:
    with pytest.raises(ForecastError, match="conformal_groups"):
        Persistence(conformal_groups=0)
