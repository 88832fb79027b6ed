"""Link-level forecasts from OD forecasts: sampled paths through the routing matrix.

Quantiles do not add: the p95 of a link's load is not the sum of its OD pairs' p95s
(that is the comonotonic worst case) nor the independent sum. We sample joint OD outcomes
with a Gaussian copula whose correlation is a low-rank factor model of the OD pairs'
scale-normalised recent changes (rank-transformed, so heavy tails do not distort it), map
each draw through the OD pairs' marginal predictive quantile functions (piecewise linear
through the forecast's interval bounds and mean), and push the draws through ``R``.
Link intervals, the probability of exceeding a utilisation threshold, and the link mean
then come from the same draws.

``runout``: per link, the date the p95 of the daily peak load crosses a target
utilisation, from a linear trend fitted to daily peaks plus the 95th percentile of the
residuals around it (as Kentik reports per interface).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypeAlias

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.special import ndtr
from scipy.stats import norm, rankdata

from shadowcast.errors import ForecastError
from shadowcast.records import F64, Forecast

Routing: TypeAlias = "sp.spmatrix | sp.sparray | F64"


@dataclass(frozen=True, slots=True)
class LinkForecast:
    """Per-link load forecast: ``mean[n_links, h]`` (demand units, Mbit/s), bounds per
    level, and ``p_exceed[n_links, h]`` = P(load > threshold * capacity)."""

    mean: F64
    lower: dict[float, F64] = field(default_factory=dict)
    upper: dict[float, F64] = field(default_factory=dict)
    p_exceed: F64 | None = None
    threshold: float = 0.9


def copula_loadings(history: F64, k: int = 5, lag: int = 1) -> F64:
    """Factor loadings ``L[n, k']`` of the rank correlation of the series' ``lag``-step
    changes over ``history[T, n]`` (use the last day or so). ``L @ L.T`` approximates the
    correlation; row norms are capped below 1 so every series keeps its own noise."""
    y = np.nan_to_num(np.asarray(history, dtype=np.float64))
    if y.shape[0] <= lag + 2:
        return np.zeros((y.shape[1], 0))
    return sample_loadings(y[lag:] - y[:-lag], k)


def sample_loadings(samples: F64, k: int = 5) -> F64:
    """Factor loadings of the rank correlation of joint draws ``samples[S, n]``, e.g. a
    model's realised forecast errors at one horizon (the correlation the link bounds
    need: what errors share, not what raw changes share)."""
    d = np.nan_to_num(np.asarray(samples, dtype=np.float64))
    k = int(min(k, d.shape[0] - 1, d.shape[1]))
    if k < 1:
        return np.zeros((d.shape[1], 0))
    z = norm.ppf((rankdata(d, axis=0) - 0.5) / d.shape[0])
    z -= z.mean(axis=0)
    sd = z.std(axis=0)
    z = np.where(sd > 0, z / np.where(sd > 0, sd, 1.0), 0.0)
    if z.shape[1] > 2 * z.shape[0]:
        # many series, few samples: the top singular pairs from the small Gram matrix
        # (S x S) instead of an SVD of S x n: the same loadings (up to sign) at a fraction
        w, u = np.linalg.eigh(z @ z.T)
        top = np.argsort(w)[::-1][:k]
        s = np.sqrt(np.maximum(w[top], 0.0))
        vt = (u[:, top].T @ z) / np.where(s > 0, s, 1.0)[:, None]
    else:
        _, s, vt = np.linalg.svd(z, full_matrices=False)
    L = vt[:k].T * (s[:k] / np.sqrt(z.shape[0]))
    norms = np.linalg.norm(L, axis=1)
    cap = np.where(norms > 0.95, 0.95 / np.maximum(norms, 1e-12), 1.0)
    return np.asarray(L * cap[:, None], dtype=np.float64)


def _quantile_knots(fc: Forecast, j: int) -> tuple[F64, F64]:
    """Probabilities ``p[K]`` and values ``v[n, K]`` of the OD marginals at step ``j``."""
    ps = [0.5]
    vs = [fc.mean[:, j]]
    for lv in fc.levels:
        a = 1.0 - lv / 100.0
        ps += [a / 2.0, 1.0 - a / 2.0]
        vs += [fc.lower[lv][:, j], fc.upper[lv][:, j]]
    order = np.argsort(ps)
    p = np.asarray(ps)[order]
    v = np.stack(vs, axis=1)[:, order]
    v = np.maximum.accumulate(v, axis=1)  # monotone
    return p, v


def _sample_marginals(p: F64, v: F64, u: F64) -> F64:
    """Inverse CDF through the knots (linear tails beyond the outermost) -> ``[n, S]``."""
    n = v.shape[0]
    if len(p) == 1:
        return np.repeat(v[:, :1], u.shape[1], axis=1)
    pe = np.concatenate([[0.0], p, [1.0]])
    lo_slope = (v[:, 1] - v[:, 0]) / (p[1] - p[0])
    hi_slope = (v[:, -1] - v[:, -2]) / (p[-1] - p[-2])
    ve = np.concatenate(
        [(v[:, 0] - lo_slope * p[0])[:, None], v, (v[:, -1] + hi_slope * (1 - p[-1]))[:, None]],
        axis=1,
    )
    idx = np.clip(np.searchsorted(pe, u, side="right") - 1, 0, len(pe) - 2)
    w = (u - pe[idx]) / (pe[idx + 1] - pe[idx])
    rows = np.arange(n)[:, None]
    return np.asarray(ve[rows, idx] * (1 - w) + ve[rows, idx + 1] * w, dtype=np.float64)


def link_forecast(
    fc: Forecast,
    routing: Routing,
    *,
    capacity_mbps: F64 | None = None,
    threshold: float = 0.9,
    loadings: F64 | None = None,
    samples: int = 2000,
    seed: int = 0,
    nonneg: bool = True,
) -> LinkForecast:
    """Map an OD forecast through ``routing[n_links, n_od]`` by sampling (see module doc).

    ``capacity_mbps`` (per link, same unit as the demands) enables ``p_exceed``;
    ``loadings`` from :func:`copula_loadings` (None: independent OD pairs).
    """
    R = sp.csr_matrix(routing)
    n_od, h = fc.mean.shape
    if R.shape[1] != n_od:
        raise ForecastError(f"routing has {R.shape[1]} OD columns, forecast has {n_od} series")
    if capacity_mbps is not None and len(capacity_mbps) != R.shape[0]:
        raise ForecastError(f"{len(capacity_mbps)} capacities for {R.shape[0]} links")
    rng = np.random.default_rng(seed)
    L = np.zeros((n_od, 0)) if loadings is None else np.asarray(loadings, dtype=np.float64)
    if L.shape[0] != n_od:
        raise ForecastError(f"loadings have {L.shape[0]} rows, forecast has {n_od} series")
    idio = np.sqrt(np.maximum(1.0 - (L * L).sum(axis=1), 0.0))[:, None]
    mean = np.asarray(R @ fc.mean, dtype=np.float64)
    lower = {lv: np.empty_like(mean) for lv in fc.levels}
    upper = {lv: np.empty_like(mean) for lv in fc.levels}
    p_exc = np.zeros_like(mean) if capacity_mbps is not None else None
    for j in range(h):
        z = L @ rng.standard_normal((L.shape[1], samples)) + idio * rng.standard_normal(
            (n_od, samples)
        )
        u = np.clip(ndtr(z), 1e-6, 1 - 1e-6)
        p, v = _quantile_knots(fc, j)
        od = _sample_marginals(p, v, u)
        if nonneg:
            od = np.maximum(od, 0.0)
        load = np.asarray(R @ od)  # [n_links, S]
        for lv in fc.levels:
            a = 1.0 - lv / 100.0
            q = np.quantile(load, [a / 2.0, 1.0 - a / 2.0], axis=1)
            lower[lv][:, j] = np.minimum(q[0], mean[:, j])
            upper[lv][:, j] = np.maximum(q[1], mean[:, j])
        if p_exc is not None and capacity_mbps is not None:
            p_exc[:, j] = (load > threshold * np.asarray(capacity_mbps)[:, None]).mean(axis=1)
    return LinkForecast(mean=mean, lower=lower, upper=upper, p_exceed=p_exc, threshold=threshold)


def link_bounds(
    fc: Forecast,
    routing: Routing,
    loadings: F64 | Mapping[int, F64] | None,
    *,
    lower: bool = True,
) -> tuple[dict[float, F64], dict[float, F64]]:
    """Per-link interval bounds ``[n_links, h]`` for every level, without sampling.

    Each OD pair's half-widths (``upper - mean`` and ``mean - lower``, per side and level)
    are combined over a link as ``sqrt(hw' C hw)`` with the routing weights and the copula
    correlation ``C = L L' + diag(1 - |L|^2)``: ``C = 1`` gives the comonotone sum of
    half-widths, ``C = I`` the root sum of squares. Exact for Gaussian marginals and cheap
    (``O(nnz(R) k h)``), so the replay uses it every step; :func:`link_forecast` samples
    the full marginals when P(exceed) is wanted.

    ``loadings`` may map a lag in steps to the loadings of that lag's changes
    (:func:`copula_loadings` with ``lag``): step ``j`` ahead then uses the longest lag
    ``<= j`` (errors over longer horizons move together more: a shared daily ramp).
    ``lower=False`` skips the lower bounds (an empty dict) when only the upper are wanted.
    """
    R = sp.csr_matrix(routing)
    n_od, h = fc.mean.shape
    if R.shape[1] != n_od:
        raise ForecastError(f"routing has {R.shape[1]} OD columns, forecast has {n_od} series")
    if loadings is None or not isinstance(loadings, Mapping):
        by_lag = {1: np.zeros((n_od, 0)) if loadings is None else np.asarray(loadings)}
    else:
        by_lag = {int(k): np.asarray(v, dtype=np.float64) for k, v in loadings.items()}
    lags = sorted(by_lag)
    for L in by_lag.values():
        if L.shape[0] != n_od:
            raise ForecastError(f"loadings have {L.shape[0]} rows, forecast has {n_od} series")
    use = np.searchsorted(lags, np.arange(1, h + 1), side="right") - 1
    R2 = R.multiply(R).tocsr()
    mean = np.asarray(R @ fc.mean, dtype=np.float64)

    def spread(hw: F64) -> F64:  # [n_od, h] -> [n_links, h]
        hw = np.maximum(hw, 0.0)
        out = np.empty((R.shape[0], h))
        for u in np.unique(use):
            cols = np.flatnonzero(use == u)
            L = by_lag[lags[max(int(u), 0)]]
            idio2 = np.maximum(1.0 - (L * L).sum(axis=1), 0.0)[:, None]
            w = hw[:, cols]
            var = np.asarray(R2 @ (idio2 * w * w))
            if L.shape[1]:
                f = np.asarray(R @ (w[:, None, :] * L[:, :, None]).reshape(n_od, -1))
                var = var + (f.reshape(R.shape[0], L.shape[1], -1) ** 2).sum(axis=1)
            out[:, cols] = np.sqrt(var)
        return out

    lo = {lv: mean - spread(fc.mean - fc.lower[lv]) for lv in fc.levels} if lower else {}
    up = {lv: mean + spread(fc.upper[lv] - fc.mean) for lv in fc.levels}
    return lo, up


@dataclass(frozen=True, slots=True)
class Runout:
    """Per link: ``date`` the p95 daily peak crosses ``target`` x capacity (NaT: not within
    ``horizon_days`` or no upward trend), ``days`` until then (inf if never), ``slope``
    (Mbit/s per day) and ``p95_now`` (today's p95 daily peak)."""

    date: npt.NDArray[np.datetime64]
    days: F64
    slope: F64
    p95_now: F64


def runout(
    times: npt.NDArray[np.datetime64],
    loads: F64,
    capacity_mbps: F64,
    *,
    target: float = 0.8,
    horizon_days: float = 365.0,
    quantile: float = 95.0,
) -> Runout:
    """Runout per link from ``loads[T, n_links]`` observed at ``times`` (needs >= 2 days)."""
    t = np.asarray(times, dtype="datetime64[s]").astype(np.int64)
    y = np.asarray(loads, dtype=np.float64)
    if y.ndim != 2 or y.shape[0] != t.shape[0]:
        raise ForecastError(f"loads shape {y.shape} does not match {t.shape[0]} times")
    day = t // 86400
    days, inv = np.unique(day, return_inverse=True)
    nl = y.shape[1]
    if len(days) < 2:
        nat = np.full(nl, np.datetime64("NaT"), dtype="datetime64[s]")
        return Runout(nat, np.full(nl, np.inf), np.zeros(nl), np.nanmax(y, axis=0))
    peaks = np.full((len(days), nl), -np.inf)
    np.maximum.at(peaks, inv, np.nan_to_num(y, nan=-np.inf))
    peaks = np.where(np.isfinite(peaks), peaks, np.nan)
    x = (days - days[-1]).astype(np.float64)
    ok = np.isfinite(peaks)
    w = ok.astype(np.float64)
    pk = np.nan_to_num(peaks)
    sw = np.maximum(w.sum(axis=0), 1.0)
    mx = (w * x[:, None]).sum(axis=0) / sw
    my = (w * pk).sum(axis=0) / sw
    vx = (w * (x[:, None] - mx) ** 2).sum(axis=0)
    slope = np.where(
        vx > 0, (w * (x[:, None] - mx) * (pk - my)).sum(axis=0) / np.maximum(vx, 1e-12), 0.0
    )
    icpt = my - slope * mx  # value of the trend today (x = 0)
    resid = np.where(ok, pk - (icpt + slope * x[:, None]), np.nan)
    q = np.nan_to_num(np.nanpercentile(np.where(ok.any(axis=0), resid, 0.0), quantile, axis=0))
    p95_now = icpt + q
    goal = target * np.asarray(capacity_mbps, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(p95_now >= goal, 0.0, np.where(slope > 0, (goal - p95_now) / slope, np.inf))
    d = np.where(d <= horizon_days, d, np.inf)
    last = int(t.max())
    date = np.where(
        np.isfinite(d),
        (last + np.nan_to_num(d, posinf=0.0) * 86400).astype("datetime64[s]"),
        np.datetime64("NaT"),
    ).astype("datetime64[s]")
    return Runout(date=date, days=d, slope=slope, p95_now=p95_now)
