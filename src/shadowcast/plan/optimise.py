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

from shadowcast.errors import PlanError
from shadowcast.plan.colgen import ColumnLP, Problem
from shadowcast.plan.paths import PathSet
from shadowcast.records import F64, I64

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
    support: npt.NDArray[np.bool_] | None = None  # [C, n_paths] paths carrying traffic
    rounds: int = 1  # LP solves (column generation rounds)
    columns: int = 0  # path columns the LP held at the end


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
    m = paths.incidence_csc()
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
    robust: bool = True,
    warm: npt.NDArray[np.bool_] | None = None,
) -> LPResult:
    """Solve the min-MLU LP over scenarios ``demands[S, C, n_od]`` (Mbit/s).

    ``allowed[C, n_paths]`` masks paths per class (latency bound, failed links);
    ``previous[C, n_paths]`` is the split in force (for the churn term); ``fixed[C, n_od]``
    keeps those (class, OD) splits exactly as in ``previous``. ``robust``: one MLU over
    every scenario (else the mean over scenarios of each one's MLU). ``warm[C, n_paths]``:
    paths to start the column generation with (a previous result's ``support``).
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
    allow = allow & paths.without_links(np.flatnonzero(cap <= 0))[None, :]
    _check_coverage(paths, allow, d)
    starts = paths.od_start[:-1]
    share = d.mean(axis=0)  # [C, od]: each (class, OD)'s share of the mean demand
    tot = share.sum()
    share = share / tot if tot > 0 else np.full_like(share, 1.0 / max(share.size, 1))
    cost = tie_break * (share + 1e-3 / max(n_c * n_od, 1))[:, paths.path_od] * paths.hops
    prev = None if previous is None else np.atleast_2d(np.asarray(previous, np.float64))
    hold = np.zeros((n_c, n_od), dtype=bool)
    if fixed is not None and prev is not None:
        hold = np.asarray(fixed, dtype=bool)
    need = d.max(axis=0) > 0
    free = need & ~hold
    const_x = np.zeros((n_c, n_p))
    if prev is not None:
        const_x = np.where(hold[:, paths.path_od], prev, 0.0)
    # A (class, OD) without demand takes its allowed path of the fewest hops.
    idle = ~need & ~hold
    if idle.any():
        hop_key = np.where(allow, paths.hops[None, :], np.inf)
        best = seg_argmin(hop_key, paths.od_start)
        cc, oo = np.nonzero(idle)
        const_x[cc, best[cc, oo]] = 1.0
    in_force = np.where(allow, prev, 0.0) if prev is not None else np.zeros((n_c, n_p))
    first_allowed = seg_argmin(np.where(allow, 0.0, 1.0), paths.od_start)
    heaviest = seg_argmin(-in_force, paths.od_start)
    has_prev = np.maximum.reduceat(in_force, starts, axis=1) > 1e-12
    base = np.where(has_prev, heaviest, first_allowed)
    churn = np.zeros((n_c, n_od))
    if prev is not None and churn_weight > 0:
        churn = 2.0 * churn_weight * share
    live = cap > 0
    incs = paths.incidence_csc().copy()
    incs.data = 1.0 / np.where(live, cap, 1.0)[incs.indices]  # utilisation per Mbit/s
    if not live.all():
        incs = sp.csc_matrix(incs[np.flatnonzero(live)])
    slopes = np.array([s for s, _ in FORTZ_THORUP])
    widths = np.diff(np.array([b for _, b in FORTZ_THORUP] + [np.inf]))
    pb = Problem(
        incs=incs,
        path_od=paths.path_od,
        od_start=paths.od_start,
        d=d,
        allow=allow,
        cost=cost,
        free=free,
        base=base,
        const_x=const_x,
        prev=prev,
        churn=churn,
        penalty=(slopes, widths, float(penalty_weight)),
        robust=robust,
    )
    start = np.zeros((n_c, n_p), dtype=bool) if warm is None else np.asarray(warm, dtype=bool)
    sol = ColumnLP(pb, start).solve()
    x = normalise_split(paths, sol.x)
    util = utilisation(paths, cap, d, x)
    ms = (time.perf_counter() - t0) * 1000
    return LPResult(
        split=x,
        mlu=float(util.max()),
        util=util,
        solve_ms=ms,
        status="optimal",
        support=x > 1e-9,
        rounds=sol.rounds,
        columns=sol.columns,
    )


def seg_argmin(values: F64, od_start: I64) -> I64:
    """``[C, n_od]``: per (class, OD) the path index of the least value (the first of ties)."""
    starts = od_start[:-1]
    m = np.minimum.reduceat(values, starts, axis=1)
    n_p = values.shape[1]
    seg = np.repeat(np.arange(starts.size), np.diff(od_start))
    idx = np.where(values <= m[:, seg], np.arange(n_p)[None, :], n_p)
    return np.asarray(np.minimum.reduceat(idx, starts, axis=1), dtype=np.int64)


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
