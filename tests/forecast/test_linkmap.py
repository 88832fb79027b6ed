"""Link bounds calibrated on the links: the factor on the half-widths tracks the nominal
share of link-steps above the bound, whichever way the OD intervals are wrong."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import norm

from shadowcast.errors import ConfigError
from shadowcast.forecast.linkmap import LinkMapper
from shadowcast.forecast.links import link_bounds
from shadowcast.records import Forecast

STEP = 300
N_OD, H = 24, 3
MU, SD = 100.0, 10.0


def _forecast(width: float) -> Forecast:
    """Mean MU; intervals ``width`` times the true Gaussian ones (independent OD pairs)."""
    mean = np.full((N_OD, H), MU)
    lower, upper = {}, {}
    for lv in (80.0, 95.0):
        z = norm.ppf(0.5 + lv / 200.0) * SD * width
        lower[lv], upper[lv] = mean - z, mean + z
    return Forecast(mean=mean, lower=lower, upper=upper, model="t")


def _run(width: float, rate: float, steps: int = 1500) -> tuple[LinkMapper, dict[float, float]]:
    """Issue a forecast every step, observe the next; upper coverage at 1 step ahead over
    the second half of the run."""
    rng = np.random.default_rng(11)
    R = sp.csr_matrix((rng.random((6, N_OD)) < 0.4).astype(float))
    lm = LinkMapper(np.full(6, 1e5), ["all"], [1, 3], STEP, window_steps=200, calibrate_rate=rate)
    fc = _forecast(width)
    issued: dict[int, dict[float, np.ndarray]] = {}
    held = {80.0: [], 95.0: []}  # type: dict[float, list[bool]]
    for t in range(steps):
        t_s = t * STEP
        actual = MU + SD * rng.standard_normal(N_OD)
        load = R @ actual
        if t_s in issued and t >= steps // 2:
            for lv, up in issued[t_s].items():
                held[lv].extend(load <= up)
        lm.observe(t_s, actual, load)
        pred = lm.map(t_s + STEP, fc, R)
        issued[t_s + STEP] = {lv: v[:, 0].copy() for lv, v in pred.upper.items()}
        issued.pop(t_s, None)
    return lm, {lv: float(np.mean(v)) for lv, v in held.items()}


@pytest.mark.parametrize("width", [2.0, 0.5])
def test_link_bounds_reach_their_nominal_share(width: float) -> None:
    _, raw = _run(width, 0.0)
    lm, cal = _run(width, 0.1)
    # uncalibrated: OD intervals twice too wide over-cover, half as wide under-cover
    if width > 1:
        assert raw[80.0] > 0.98 and lm.factor(1, 80.0) < 0.7
    else:
        assert raw[80.0] < 0.80 and lm.factor(1, 80.0) > 1.4
    assert cal[80.0] == pytest.approx(0.90, abs=0.02), cal
    assert cal[95.0] == pytest.approx(0.975, abs=0.015), cal
    # the factor is near 1 / width (independent Gaussian pairs: the sum scales with them)
    assert lm.factor(1, 80.0) == pytest.approx(1.0 / width, rel=0.2)
    assert lm.factor(3, 95.0) == pytest.approx(1.0 / width, rel=0.3)


def test_rate_zero_leaves_the_combined_bounds() -> None:
    rng = np.random.default_rng(2)
    R = sp.csr_matrix((rng.random((4, N_OD)) < 0.5).astype(float))
    lm = LinkMapper(np.full(4, 1e5), ["all"], [1, 3], STEP, calibrate_rate=0.0)
    fc = _forecast(1.0)
    for t in range(5):
        lm.observe(t * STEP, MU + 50.0 * rng.standard_normal(N_OD), np.full(4, 1e9))
        pred = lm.map((t + 1) * STEP, fc, R)
    assert lm.factor(1, 80.0) == 1.0
    _, up = link_bounds(fc, R, None, lower=False)
    np.testing.assert_allclose(pred.upper[80.0], up[80.0])


def test_calibration_only_counts_its_own_targets_and_is_bounded() -> None:
    R = sp.csr_matrix(np.ones((1, N_OD)))
    lm = LinkMapper(np.full(1, 1e5), ["all"], [1], STEP, calibrate_rate=1.0)
    fc = _forecast(1.0)
    lm.map(STEP, fc, R, columns=[1])
    lm.observe(0, np.full(N_OD, MU), np.array([1e12]))  # no bound targets step 0
    assert lm.factor(1, 80.0) == 1.0
    for t in range(1, 200):  # every link-step far above: the factor grows, up to its cap
        lm.observe(t * STEP, np.full(N_OD, MU), np.array([1e12]))
        lm.map((t + 1) * STEP, fc, R, columns=[1])
    assert lm.factor(1, 80.0) == pytest.approx(8.0)
    lm.observe(200 * STEP, np.full(N_OD, MU), np.array([np.nan]))  # unmeasured: no change
    assert lm.factor(1, 80.0) == pytest.approx(8.0)


def test_bad_rate_names_the_field() -> None:
    with pytest.raises(ConfigError, match="link_calibration_rate"):
        LinkMapper(np.ones(1), ["all"], [1], STEP, calibrate_rate=1.5)


def test_factors_survive_a_restart_at_the_same_horizons() -> None:
    lm, _ = _run(2.0, 0.1, steps=300)
    st = lm.state()
    again = LinkMapper(np.full(6, 1e5), ["all"], [1, 3], STEP, calibrate_rate=0.1)
    assert again.load_state(st)
    assert again.factors() == pytest.approx(lm.factors()) and again.factor(1, 80.0) < 0.9
    other = LinkMapper(np.full(6, 1e5), ["all"], [1, 6], STEP)  # other horizons: from 1
    assert not other.load_state(st) and other.factors() == {}
    assert not LinkMapper(np.full(6, 1e5), ["all"], [1, 3], 60).load_state(st)
