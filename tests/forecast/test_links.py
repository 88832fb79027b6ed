"""Link-level forecasts: quantiles do not add; exceedance probability; runout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.stats import norm

from shadowcast.errors import ForecastError
from shadowcast.forecast.links import copula_loadings, link_bounds, link_forecast, runout
from shadowcast.records import Forecast


def _gauss_forecast(n: int, mu: float, sd: float, h: int = 2) -> Forecast:
    mean = np.full((n, h), mu)
    lower, upper = {}, {}
    for lv in (80.0, 95.0):
        z = norm.ppf(0.5 + lv / 200.0)
        lower[lv], upper[lv] = mean - z * sd, mean + z * sd
    return Forecast(mean=mean, lower=lower, upper=upper, model="t")


def test_quantiles_do_not_add() -> None:
    n = 20
    fc = _gauss_forecast(n, 100.0, 10.0)
    R = sp.csr_matrix(np.ones((1, n)))  # one link carrying all OD pairs
    z95 = norm.ppf(0.975) * 10.0
    ind = link_forecast(fc, R, samples=20000, seed=1)
    np.testing.assert_allclose(ind.mean, 2000.0)
    half_ind = ind.upper[95.0][0, 0] - ind.mean[0, 0]
    # independent: sd of the sum is sqrt(n) * sd, not n * sd
    assert half_ind == pytest.approx(np.sqrt(n) * z95, rel=0.1)
    # strongly correlated OD pairs (one common factor): close to the comonotonic sum
    L = np.full((n, 1), 0.95)
    cor = link_forecast(fc, R, loadings=L, samples=20000, seed=1)
    half_cor = cor.upper[95.0][0, 0] - cor.mean[0, 0]
    expected = z95 * np.sqrt(n + n * (n - 1) * 0.95**2)
    assert half_cor == pytest.approx(expected, rel=0.1)
    assert half_cor > 3 * half_ind
    assert (cor.lower[95.0] <= cor.mean).all() and (cor.mean <= cor.upper[95.0]).all()


def test_link_bounds_combine_half_widths_with_the_correlation() -> None:
    n = 12
    rng = np.random.default_rng(3)
    fc = _gauss_forecast(n, 100.0, 10.0, h=3)
    # asymmetric: a wider upper side on half the pairs
    fc.upper[95.0][: n // 2] += 15.0
    R = sp.csr_matrix(np.vstack([np.ones(n), np.r_[np.full(n // 2, 0.5), np.zeros(n // 2)]]))
    hw_up = fc.upper[95.0] - fc.mean
    lo, up = link_bounds(fc, R, None)  # independent: root sum of squares
    np.testing.assert_allclose(up[95.0] - R @ fc.mean, np.sqrt(R.multiply(R) @ hw_up**2))
    one = np.ones((n, 1))  # one common factor, |L| = 1: the comonotone sum
    lo1, up1 = link_bounds(fc, R, one)
    np.testing.assert_allclose(up1[95.0], R @ fc.upper[95.0])
    np.testing.assert_allclose(lo1[80.0], R @ fc.lower[80.0])
    # in between: agrees with sampling the same Gaussian copula (symmetric marginals)
    sym = _gauss_forecast(n, 100.0, 10.0)
    L = copula_loadings(rng.standard_normal((400, 1)) + 0.7 * rng.standard_normal((400, n)))
    _, upL = link_bounds(sym, R, L)
    mc = link_forecast(sym, R, loadings=L, samples=40000, seed=4)
    np.testing.assert_allclose(upL[95.0], mc.upper[95.0], rtol=0.02)
    assert (lo[95.0] <= R @ fc.mean).all() and (up[95.0] >= R @ fc.mean).all()
    with pytest.raises(ForecastError, match="loadings"):
        link_bounds(fc, R, np.ones((n + 1, 1)))
    # per-lag loadings: steps 1-2 independent, step 3 on (lag 3) fully correlated
    _, upm = link_bounds(fc, R, {1: np.zeros((n, 0)), 3: one})
    np.testing.assert_allclose(upm[95.0][:, :2], up[95.0][:, :2])
    np.testing.assert_allclose(upm[95.0][:, 2], up1[95.0][:, 2])


def test_sample_loadings_follow_the_samples_correlation() -> None:
    from shadowcast.forecast.links import sample_loadings

    rng = np.random.default_rng(7)
    common = rng.standard_normal((3000, 1))
    n = 40  # the principal-component loadings overstate by about (1 - rho) / n: conservative
    draws = 0.8 * common + 0.6 * rng.standard_normal((3000, n))  # correlation 0.64
    L = sample_loadings(draws, k=1)
    off = (L @ L.T)[~np.eye(n, dtype=bool)]
    assert off.mean() == pytest.approx(0.64, abs=0.03) and off.min() > 0.55
    Li = sample_loadings(rng.standard_normal((3000, n)), k=3)  # independent draws
    assert np.abs((Li @ Li.T)[~np.eye(n, dtype=bool)]).mean() < 0.05


def test_exceedance_probability() -> None:
    fc = _gauss_forecast(4, 100.0, 10.0)
    R = sp.csr_matrix(np.array([[1.0, 1.0, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]]))
    cap = np.array([200.0 / 0.9, 1000.0])  # link 0 threshold at exactly its mean
    lf = link_forecast(fc, R, capacity_mbps=cap, threshold=0.9, samples=20000, seed=2)
    assert lf.p_exceed is not None
    assert lf.p_exceed[0, 0] == pytest.approx(0.5, abs=0.03)
    assert lf.p_exceed[1, 0] == 0.0
    with pytest.raises(ForecastError, match="capacities"):
        link_forecast(fc, R, capacity_mbps=np.ones(3))
    with pytest.raises(ForecastError, match="OD columns"):
        link_forecast(fc, sp.csr_matrix(np.ones((1, 3))))


def test_copula_loadings_recover_correlation() -> None:
    rng = np.random.default_rng(0)
    common = rng.standard_normal(2000)
    x = np.cumsum(common[:, None] * 0.9 + 0.436 * rng.standard_normal((2000, 6)), axis=0)
    L = copula_loadings(x, k=2)
    c = L @ L.T
    off = c[~np.eye(6, dtype=bool)]
    assert np.all(np.abs(off - 0.81) < 0.1)


def test_runout_linear_growth() -> None:
    days = 30
    t = np.datetime64("2024-01-01T00:00:00") + np.arange(days * 288) * np.timedelta64(300, "s")
    tod = np.sin(2 * np.pi * np.arange(days * 288) / 288)
    growth = 10.0 * np.arange(days * 288) / 288  # +10 Mbit/s per day
    loads = np.stack([500 + 100 * tod + growth, 100 + 0 * tod], axis=1)
    r = runout(t, loads, np.array([1000.0, 1000.0]), target=0.8)
    # daily peak today ~ 600 + 290 = 890 -> 800 already crossed? peak = 500+100+10*29.99
    assert r.slope[0] == pytest.approx(10.0, rel=0.02)
    assert r.days[0] == 0.0  # 892 Mbit/s already over 0.8 x 1000
    assert r.days[1] == np.inf and np.isnat(r.date[1])
    peak_now = 600 + 10 * (days - 1 + 0.25)  # sine peaks a quarter into the day
    assert r.p95_now[0] == pytest.approx(peak_now, abs=3)
    r2 = runout(t, loads, np.array([2000.0, 1000.0]), target=0.8)
    assert r2.days[0] == pytest.approx((1600 - peak_now) / 10.0, rel=0.02)
    assert not np.isnat(r2.date[0])


def test_abilene_routing_end_to_end(data_dir: Path) -> None:
    from shadowcast.datasets import load_topology
    from shadowcast.forecast.baselines import Persistence
    from shadowcast.forecast.synthetic import synthetic_frame
    from shadowcast.network.routing import routing_matrix

    topo = load_topology(data_dir / "topologies" / "sndlib" / "abilene.xml")
    pairs = [(a, b) for a in topo.nodes for b in topo.nodes if a != b]
    R = routing_matrix(topo, pairs)
    f = synthetic_frame(len(pairs), 600, 300, seed=2)
    fc = Persistence().fit(f).predict(12, [80, 95])
    lf = link_forecast(
        fc,
        R,
        capacity_mbps=topo.capacities / 1e6,
        loadings=copula_loadings(f.values[-288:]),
        samples=500,
    )
    assert lf.mean.shape == (len(topo.links), 12)
    assert lf.p_exceed is not None and ((lf.p_exceed >= 0) & (lf.p_exceed <= 1)).all()
    assert (lf.lower[95.0] <= lf.upper[95.0]).all()
