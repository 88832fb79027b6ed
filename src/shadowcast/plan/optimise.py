"""The TE linear programme: path-based multi-commodity min-max utilisation through HiGHS.

Variables are split fractions ``x[c, p]`` of class ``c``'s demand of OD ``od(p)`` on
candidate path ``p``, plus the maximum utilisation ``U``. For every demand scenario ``s``
(a forecast quantile, a recent matrix, ...) and link ``e``::

    sum_{c, p ∋ e} d[s, c, od(p)] x[c, p] / cap[e] <= U        (robust over all scenarios)
    sum_{p of od} x[c, p] = 1,  x >= 0,  x[c, p] = 0 where the path is not allowed

Objective: ``U`` + a tiny demand-weighted hop count (prefers short paths among ties)
+ ``churn_weight`` × demand-weighted |x - previous| (optional)
+ ``penalty_weight`` × mean over (s, e) of a convex piecewise penalty on utilisation
(Fortz–Thorup slopes, optional) so that non-bottleneck links are kept low too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.optimize import linprog

from shadowcast.errors import PlanError
from shadowcast.plan.paths import PathSet
from shadowcast.records import F64

log = logging.getLogger(__name__)

# Fortz–Thorup piecewise-linear cost: (slope, breakpoint) segments; cost is convex.
FORTZ_THORUP: tuple[tuple[float, float], ...] = (
    (1.0, 0.0),
    (3.0, 1 / 3),
    (10.0, 2 / 3),
    (70.0, 0.9),
    (500.0, 1.0),
    (5000.0, 1.1),
)


@dataclass(frozen=True, slots=True)
class LPResult:
    """Optimal splits ``[C, n_paths]``, the robust MLU and per-scenario link utilisation."""

    split: F64
    mlu: float
    util: F64  # [S, n_links]
    solve_ms: float
    status: str


def _as_scd(demands: npt.ArrayLike) -> F64:
    d = np.asarray(demands, dtype=np.float64)
    if d.ndim == 1:
        d = d[None, None, :]
    elif d.ndim == 2:
        d = d[:, None, :]
    if d.ndim != 3:
        raise PlanError(f"demands must be [n_od], [S, n_od] or [S, C, n_od]; got {d.shape}")
    if not np.isfinite(d).all():
        raise PlanError("demands contain NaN or inf")
    return np.maximum(d, 0.0)


def utilisation(paths: PathSet, capacity_mbps: F64, demands: npt.ArrayLike, split: F64) -> F64:
    """Link utilisation ``[S, n_links]`` of ``split[C, n_paths]`` under ``demands``."""
    d = _as_scd(demands)
    x = np.atleast_2d(split)
    m = paths.incidence()
    flows = d[:, :, paths.path_od] * x[None, :, :]  # [S, C, P]
    loads = np.asarray(m @ flows.sum(axis=1).T).T  # [S, E]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(capacity_mbps > 0, loads / capacity_mbps, np.where(loads > 0, np.inf, 0.0))
    return np.asarray(u, dtype=np.float64)


def solve_min_mlu(
    paths: PathSet,
    capacity_mbps: F64,
    demands: npt.ArrayLike,
    *,
    allowed: npt.NDArray[np.bool_] | None = None,
    previous: F64 | None = None,
    churn_weight: float = 0.0,
    penalty_weight: float = 0.0,
    tie_break: float = 1e-4,
    fixed: npt.NDArray[np.bool_] | None = None,
) -> LPResult:
    """Solve the robust min-MLU LP over scenarios ``demands[S, C, n_od]`` (Mbit/s).

    ``allowed[C, n_paths]`` masks paths per class (latency bound, failed links);
    ``previous[C, n_paths]`` is the split in force (for the churn term); ``fixed[C, n_od]``
    keeps those (class, OD) splits exactly as in ``previous``.
    Raises PlanError when an OD with demand has no allowed path or HiGHS fails.
    """
    t0 = time.perf_counter()
    d = _as_scd(demands)
    n_s, n_c, n_od = d.shape
    if n_od != len(paths.od_pairs):
        raise PlanError(f"demands have {n_od} OD pairs, paths have {len(paths.od_pairs)}")
    cap = np.asarray(capacity_mbps, dtype=np.float64)
    n_p = paths.n_paths
    allow = np.ones((n_c, n_p), dtype=bool) if allowed is None else np.asarray(allowed, bool)
    allow = allow & np.isin(np.arange(n_p), _paths_on_live_links(paths, cap))[None, :]
    _check_coverage(paths, allow, d)

    nx_ = n_c * n_p
    # Demand weight of each (c, od): its share of total mean demand.
    share = d.mean(axis=0)  # [C, od]
    tot = share.sum()
    share = share / tot if tot > 0 else np.full_like(share, 1.0 / max(share.size, 1))
    w_cp = share[:, paths.path_od].ravel()  # [C*P]

    live = np.flatnonzero(cap > 0)
    n_l = live.size
    inc = paths.incidence()[live].tocoo()
    er, pc = inc.row.astype(np.int64), inc.col.astype(np.int64)
    # Utilisation coefficients: row s*n_l + e, column c*P + p, value d[s,c,od(p)] / cap[e].
    coef = d[:, :, paths.path_od[pc]] / cap[live][er][None, None, :]  # [S, C, nnz]
    u_rows = (np.arange(n_s)[:, None, None] * n_l + er[None, None, :]).repeat(n_c, 1)
    u_cols = (np.arange(n_c)[None, :, None] * n_p + pc[None, None, :]).repeat(n_s, 0)
    keep = coef.ravel() > 0
    u_r, u_c, u_v = u_rows.ravel()[keep], u_cols.ravel()[keep], coef.ravel()[keep]
    n_u = n_s * n_l

    col_u = nx_
    cols = nx_ + 1
    cost: list[F64] = [
        tie_break * (w_cp + 1e-3 / max(n_c * n_od, 1)) * np.tile(paths.hops, n_c),
        np.ones(1),
    ]
    lo: list[F64] = [np.zeros(nx_), np.zeros(1)]
    hi: list[F64] = [np.where(allow.ravel(), 1.0, 0.0), np.full(1, np.inf)]
    if fixed is not None and previous is not None:
        fx = np.asarray(fixed, dtype=bool)[:, paths.path_od].ravel()
        keep = np.atleast_2d(previous).ravel()
        lo[0], hi[0] = np.where(fx, keep, lo[0]), np.where(fx, keep, hi[0])
    # Inequalities: util rows (coef x - U <= 0), then churn rows.
    ir = [u_r, np.arange(n_u)]
    ic = [u_c, np.full(n_u, col_u)]
    iv = [u_v, -np.ones(n_u)]
    ib = [np.zeros(n_u)]
    n_ub = n_u
    if previous is not None and churn_weight > 0:
        prev = np.atleast_2d(previous).ravel()
        t0c = cols
        cols += nx_
        k = np.arange(nx_)
        for sign in (1.0, -1.0):  # sign*x - t <= sign*prev
            ir += [n_ub + k, n_ub + k]
            ic += [k, t0c + k]
            iv += [np.full(nx_, sign), -np.ones(nx_)]
            ib.append(sign * prev)
            n_ub += nx_
        cost.append(churn_weight * w_cp)
        lo.append(np.zeros(nx_))
        hi.append(np.full(nx_, np.inf))
    # Equalities: splits of each (c, od) sum to 1; penalty: util = sum of segment vars.
    er_ = [(np.arange(n_c)[:, None] * n_od + paths.path_od[None, :]).ravel()]
    ec = [np.arange(nx_)]
    ev = [np.ones(nx_)]
    eb = [np.ones(n_c * n_od)]
    n_eq = n_c * n_od
    if penalty_weight > 0:
        segs = len(FORTZ_THORUP)
        y0 = cols
        cols += n_u * segs
        slopes = np.array([s for s, _ in FORTZ_THORUP])
        bps = np.array([b for _, b in FORTZ_THORUP] + [np.inf])
        width = np.diff(bps)
        er_ += [n_eq + u_r, n_eq + np.repeat(np.arange(n_u), segs)]
        ec += [u_c, y0 + np.arange(n_u * segs)]
        ev += [u_v, -np.ones(n_u * segs)]
        eb.append(np.zeros(n_u))
        n_eq += n_u
        cost.append(np.tile(slopes, n_u) * penalty_weight / n_u)
        lo.append(np.zeros(n_u * segs))
        hi.append(np.tile(width, n_u))
    a_ub = sp.csr_matrix(
        (np.concatenate(iv), (np.concatenate(ir), np.concatenate(ic))), shape=(n_ub, cols)
    )
    a_eq = sp.csr_matrix(
        (np.concatenate(ev), (np.concatenate(er_), np.concatenate(ec))), shape=(n_eq, cols)
    )
    res = linprog(
        np.concatenate(cost),
        A_ub=a_ub,
        b_ub=np.concatenate(ib),
        A_eq=a_eq,
        b_eq=np.concatenate(eb),
        bounds=np.column_stack([np.concatenate(lo), np.concatenate(hi)]),
        method="highs",
    )
    if res.status != 0 or res.x is None:
        raise PlanError(f"HiGHS could not solve the TE LP: {res.message}")
    x = np.clip(res.x[:nx_].reshape(n_c, n_p), 0.0, 1.0)
    x = normalise_split(paths, x)
    util = utilisation(paths, cap, d, x)
    ms = (time.perf_counter() - t0) * 1000
    return LPResult(split=x, mlu=float(util.max()), util=util, solve_ms=ms, status="optimal")


def normalise_split(paths: PathSet, split: F64) -> F64:
    """Rescale ``split[C, n_paths]`` so each (class, OD) sums to exactly 1."""
    x = np.atleast_2d(np.asarray(split, dtype=np.float64)).copy()
    sums = np.add.reduceat(x, paths.od_start[:-1], axis=1)  # [C, od]
    empty = sums <= 1e-12
    if empty.any():
        first = np.zeros_like(x)
        first[:, paths.od_start[:-1]] = 1.0
        x = np.where(empty[:, paths.path_od], first, x)
        sums = np.add.reduceat(x, paths.od_start[:-1], axis=1)
    return np.asarray(x / sums[:, paths.path_od], dtype=np.float64)


def _paths_on_live_links(paths: PathSet, cap: F64) -> npt.NDArray[np.int64]:
    dead = np.flatnonzero(cap <= 0)
    if dead.size == 0:
        return np.arange(paths.n_paths)
    return np.flatnonzero(paths.without_links(dead.tolist()))


def _check_coverage(paths: PathSet, allow: npt.NDArray[np.bool_], d: F64) -> None:
    has = np.add.reduceat(allow.astype(np.int64), paths.od_start[:-1], axis=1) > 0  # [C, od]
    need = d.max(axis=0) > 0
    bad = np.argwhere(need & ~has)
    if bad.size:
        c, k = (int(v) for v in bad[0])
        s, t = paths.od_pairs[k]
        raise PlanError(
            f"class #{c} OD {s}->{t} has demand but no allowed path "
            f"({len(bad)} such OD/class pairs); relax the latency bound or add paths"
        )
    # A zero-demand OD with no allowed path keeps its shortest path (its flow is zero).
    fix = ~has
    if fix.any():
        idx = np.argwhere(fix)
        allow[idx[:, 0], paths.od_start[idx[:, 1]]] = True
