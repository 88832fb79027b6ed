"""The TE LP as one dense-in-structure scipy ``linprog`` model (every path a column): the
reference the column-generation solver is checked against, and the objective both solve."""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

from shadowcast.plan.optimise import FORTZ_THORUP, _as_scd, utilisation
from shadowcast.plan.paths import PathSet


def objective(
    paths: PathSet,
    cap: Any,
    demands: Any,
    x: Any,
    *,
    previous: Any = None,
    churn_weight: float = 0.0,
    penalty_weight: float = 0.0,
    tie_break: float = 1e-4,
    robust: bool = True,
) -> float:
    """The LP's objective at the split ``x[C, n_paths]``."""
    d = _as_scd(demands)
    n_s, n_c, n_od = d.shape
    live = cap > 0
    u = utilisation(paths, cap, d, x)[:, live]  # [S, L]
    top = u.max() if robust else u.max(axis=1).mean()
    share = d.mean(axis=0)
    share = share / share.sum() if share.sum() > 0 else np.full_like(share, 1 / share.size)
    w = (share + 1e-3 / (n_c * n_od))[:, paths.path_od]
    out = float(top + tie_break * (w * paths.hops * x).sum())
    if previous is not None and churn_weight > 0:
        out += churn_weight * float((share[:, paths.path_od] * np.abs(x - previous)).sum())
    if penalty_weight > 0:
        pen = np.zeros_like(u)
        for slope, bp in FORTZ_THORUP:  # convex: the sum of hinge segments
            pen += np.maximum(u - bp, 0.0) * (slope - _prev_slope(slope))
        out += penalty_weight * float(pen.mean())
    return out


def _prev_slope(slope: float) -> float:
    slopes = [s for s, _ in FORTZ_THORUP]
    i = slopes.index(slope)
    return slopes[i - 1] if i else 0.0


def reference_split(
    paths: PathSet,
    cap: Any,
    demands: Any,
    *,
    allowed: Any = None,
    previous: Any = None,
    churn_weight: float = 0.0,
    penalty_weight: float = 0.0,
    tie_break: float = 1e-4,
    fixed: Any = None,
    robust: bool = True,
) -> Any:
    """The optimal split of the whole LP at once (every path a column)."""
    d = _as_scd(demands)
    n_s, n_c, n_od = d.shape
    n_p = paths.n_paths
    allow = np.ones((n_c, n_p), bool) if allowed is None else np.asarray(allowed, bool).copy()
    allow &= paths.without_links(np.flatnonzero(cap <= 0))[None, :]
    has = np.add.reduceat(allow.astype(int), paths.od_start[:-1], axis=1) > 0
    idx = np.argwhere(~has)
    allow[idx[:, 0], paths.od_start[idx[:, 1]]] = True
    nx_ = n_c * n_p
    share = d.mean(axis=0)
    share = share / share.sum() if share.sum() > 0 else np.full_like(share, 1 / share.size)
    w = share[:, paths.path_od].ravel()
    live = np.flatnonzero(cap > 0)
    n_l = live.size
    inc = paths.incidence()[live].tocoo()
    rows, cols, vals = [], [], []
    for s in range(n_s):
        for c in range(n_c):
            rows.append(s * n_l + inc.row)
            cols.append(c * n_p + inc.col)
            vals.append(d[s, c, paths.path_od[inc.col]] / cap[live][inc.row])
    n_u = n_s * n_l
    n_top = 1 if robust else n_s
    col_u = nx_
    n_cols = nx_ + n_top
    rows.append(np.arange(n_u))
    cols.append(col_u + (np.zeros(n_u, int) if robust else np.arange(n_u) // n_l))
    vals.append(-np.ones(n_u))
    w_tie = (share + 1e-3 / (n_c * n_od))[:, paths.path_od].ravel()
    cost = [tie_break * w_tie * np.tile(paths.hops, n_c), np.full(n_top, 1.0 / n_top)]
    lo = [np.zeros(nx_), np.zeros(n_top)]
    hi = [np.where(allow.ravel(), 1.0, 0.0), np.full(n_top, np.inf)]
    if fixed is not None and previous is not None:
        fx = np.asarray(fixed, bool)[:, paths.path_od].ravel()
        keep = np.atleast_2d(previous).ravel()
        lo[0], hi[0] = np.where(fx, keep, lo[0]), np.where(fx, keep, hi[0])
    b_ub = [np.zeros(n_u)]
    n_ub = n_u
    if previous is not None and churn_weight > 0:
        prev = np.atleast_2d(previous).ravel()
        t0 = n_cols
        n_cols += nx_
        k = np.arange(nx_)
        for sign in (1.0, -1.0):
            rows += [n_ub + k, n_ub + k]
            cols += [k, t0 + k]
            vals += [np.full(nx_, sign), -np.ones(nx_)]
            b_ub.append(sign * prev)
            n_ub += nx_
        cost.append(churn_weight * w)
        lo.append(np.zeros(nx_))
        hi.append(np.full(nx_, np.inf))
    er = [(np.arange(n_c)[:, None] * n_od + paths.path_od[None, :]).ravel()]
    ec = [np.arange(nx_)]
    ev = [np.ones(nx_)]
    eb = [np.ones(n_c * n_od)]
    n_eq = n_c * n_od
    if penalty_weight > 0:
        segs = len(FORTZ_THORUP)
        y0 = n_cols
        n_cols += n_u * segs
        slopes = np.array([s for s, _ in FORTZ_THORUP])
        width = np.diff(np.array([b for _, b in FORTZ_THORUP] + [np.inf]))
        u_rows = np.concatenate(rows[: n_s * n_c])
        er += [n_eq + u_rows, n_eq + np.repeat(np.arange(n_u), segs)]
        ec += [np.concatenate(cols[: n_s * n_c]), y0 + np.arange(n_u * segs)]
        ev += [np.concatenate(vals[: n_s * n_c]), -np.ones(n_u * segs)]
        eb.append(np.zeros(n_u))
        n_eq += n_u
        cost.append(np.tile(slopes, n_u) * penalty_weight / n_u)
        lo.append(np.zeros(n_u * segs))
        hi.append(np.tile(width, n_u))
    a_ub = sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), (n_ub, n_cols)
    )
    a_eq = sp.csr_matrix(
        (np.concatenate(ev), (np.concatenate(er), np.concatenate(ec))), (n_eq, n_cols)
    )
    res = linprog(
        np.concatenate(cost),
        A_ub=a_ub,
        b_ub=np.concatenate(b_ub),
        A_eq=a_eq,
        b_eq=np.concatenate(eb),
        bounds=np.column_stack([np.concatenate(lo), np.concatenate(hi)]),
        method="highs",
    )
    assert res.status == 0, res.message
    return res.x[:nx_].reshape(n_c, n_p)
