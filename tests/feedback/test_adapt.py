"""Recalibration every cycle: per-decile interval widths and level ratios after a drift."""

from __future__ import annotations

import numpy as np
import pytest

from shadowcast.feedback.adapt import Adapter
from shadowcast.forecast.conformal import GroupACI
from shadowcast.records import Forecast

STEP = 300


def _forecast(n: int, H: int, half: np.ndarray) -> Forecast:
    mean = np.full((n, H), 100.0)
    width = np.repeat(half[:, None], H, axis=1)
    return Forecast(mean=mean, lower={80.0: mean - width}, upper={80.0: mean + width}, model="m")


def _coverage_after(adapter: Adapter | None, steps: int, seed: int = 0) -> np.ndarray:
    """Two deciles: the first's intervals too wide (noise sd 5 for a half-width 20), the
    second's too narrow (sd 20 for a half-width 5): coverage per decile in the last steps."""
    rng = np.random.default_rng(seed)
    n, H = 40, 3
    deciles = np.repeat([0, 9], 20)
    sd = np.where(deciles == 0, 5.0, 20.0)
    half = np.where(deciles == 0, 20.0, 5.0)
    inside = np.zeros((steps, n), dtype=bool)
    issued: list[Forecast] = []
    for t in range(steps):
        y = 100.0 + sd * rng.standard_normal(n)
        if len(issued) >= 1:
            prev = issued[-1]
            inside[t] = (y >= prev.lower[80.0][:, 0]) & (y <= prev.upper[80.0][:, 0])
        if adapter is not None:
            adapter.learn(t * STEP, y)
        fc = _forecast(n, H, half)
        issued.append(adapter.correct((t + 1) * STEP, fc, deciles) if adapter else fc)
    last = inside[steps // 2 :]
    return np.array([last[:, deciles == d].mean() for d in (0, 9)])


def test_per_decile_widths_bring_each_decile_to_its_level() -> None:
    raw = _coverage_after(None, 600)
    assert raw[0] > 0.97 and raw[1] < 0.3  # pooled 0.6ish: neither decile is honest
    cov = _coverage_after(Adapter(40, 3, [80.0], STEP, gamma=0.05), 600)
    assert cov == pytest.approx([0.8, 0.8], abs=0.06)


def test_group_aci_moves_only_the_groups_that_miss() -> None:
    aci = GroupACI([80.0], 2, 3, gamma=0.1)
    groups = np.array([0, 0, 1, 1, -1])
    inside = np.array([False, False, True, True, False])
    aci.observe(80.0, 1, groups, inside)
    f = aci.factors(80.0, groups)
    assert f[0, 0] > 1.0 and f[2, 0] < 1.0 and f[4, 0] == 1.0
    assert np.all(f[:, 1] == 1.0)  # another step ahead: untouched
    aci.reset()
    assert np.all(aci.factors(80.0, groups) == 1.0)


def test_adapting_series_absorb_a_level_shift_and_round_trip() -> None:
    n, H = 4, 2
    ad = Adapter(n, H, [80.0], STEP, rate=0.5)
    ad.start(np.array([0, 1]), 0, steps=100)
    half = np.full(n, 5.0)
    for t in range(20):
        ad.correct((t + 1) * STEP, _forecast(n, H, half), np.zeros(n, dtype=np.int64))
        ad.learn((t + 1) * STEP, np.array([160.0, 160.0, 100.0, 100.0]))
    out = ad.correct(30 * STEP, _forecast(n, H, half), np.zeros(n, dtype=np.int64))
    assert out.mean[:2, 0] == pytest.approx([160.0, 160.0], rel=0.02)
    assert out.mean[2:, 0] == pytest.approx([100.0, 100.0])
    other = Adapter(n, H, [80.0], STEP)
    assert other.load_state(ad.state())
    assert np.allclose(other.ratio, ad.ratio)
    ad.reset_ratios()
    assert np.all(ad.ratio == 1.0)


def test_a_new_model_carries_the_adaptation_on_where_series_adapt() -> None:
    """A retrain on drift (a new model version) keeps the adapting series' corrected forecast
    where it was, and drops the ratios elsewhere; before, every ratio went back to 1 and the
    forecast fell back to the old level until the ratios were learnt again."""
    n, H = 4, 3
    ad = Adapter(n, H, [80.0], STEP, rate=0.5)
    ad.start(np.array([0, 1]), 0, steps=100)
    half = np.full(n, 5.0)
    zeros = np.zeros(n, dtype=np.int64)
    for t in range(20):
        ad.correct((t + 1) * STEP, _forecast(n, H, half), zeros)
        ad.learn((t + 1) * STEP, np.array([160.0, 160.0, 100.0, 100.0]))
    ad.ratio[2:] = 1.3  # a calm series with a ratio left over: dropped at the switch
    before = ad.correct(21 * STEP, _forecast(n, H, half), zeros)
    new = _forecast(n, H, half)
    new.mean[:] = 120.0  # the retrained model saw an hour of the new level
    ad.switch_model(22 * STEP, new.mean)
    after = ad.correct(22 * STEP, new, zeros)
    # the same target steps as before the switch (columns shifted by one step)
    assert after.mean[:2, :2] == pytest.approx(before.mean[:2, 1:], rel=0.01)  # eps-smoothed
    assert after.mean[:2, 0] == pytest.approx([160.0, 160.0], rel=0.02)
    assert np.all(ad.ratio[2:] == 1.0) and after.mean[2:, 0] == pytest.approx([120.0, 120.0])
    # no forecast one step before: nothing to carry on from, every ratio goes
    ad.switch_model(40 * STEP, new.mean)
    assert np.all(ad.ratio == 1.0)


@pytest.mark.parametrize(("half", "sd"), [(40.0, 20.0), (8.0, 20.0)])
def test_adapting_series_widths_come_from_their_recent_scores_at_once(half, sd) -> None:  # type: ignore[no-untyped-def]
    """After a drift the adapting series' intervals are too wide (the model's own intervals
    blown up by the change) or too narrow: their coverage is at the level within a few
    steps, not after the many steps an adaptive step up and down would take."""
    rng = np.random.default_rng(3)
    n, H = 300, 2
    ad = Adapter(n, H, [80.0], STEP, rate=0.5)
    ad.start(np.arange(n), 0, steps=100)
    zeros = np.zeros(n, dtype=np.int64)
    issued = []
    inside = []
    for t in range(30):
        y = 100.0 + sd * rng.standard_normal(n)
        if issued:
            prev = issued[-1]
            inside.append(((y >= prev.lower[80.0][:, 0]) & (y <= prev.upper[80.0][:, 0])).mean())
        ad.learn(t * STEP, y)
        issued.append(ad.correct((t + 1) * STEP, _forecast(n, H, np.full(n, half)), zeros))
    cov = np.array(inside)
    assert cov[2:].mean() == pytest.approx(0.8, abs=0.04)
    assert np.all(np.abs(cov[3:] - 0.8) < 0.1)  # every step, from the third on
