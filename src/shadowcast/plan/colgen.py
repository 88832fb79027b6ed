"""The TE LP by column generation on HiGHS (highspy): exact over the whole path set.

Every (class, OD) that can move keeps a *base* path (the path it is on, else its first
allowed one) and the LP only holds *shift* columns ``δ[c, p]``: the share of the
(class, OD) moved from its base to path ``p`` (``x[base] = 1 - Σ δ``, ``Σ δ <= 1``). The
loads of the base paths, of the fixed (class, OD)s and of nothing else are constants on
the right-hand side, so the LP starts with no path column at all. Each round prices every
path left out with the duals of the link rows (``inc.T @ duals``: one sparse product) and
adds those with a negative reduced cost; when none is left, the restricted optimum is the
optimum over the whole path set (the left-out columns sit at their bound 0 with a
reduced cost >= 0). HiGHS re-solves from the previous basis after each addition.

Churn ``Σ_p |x_p - prev_p|`` equals ``2 Σ_p (x_p - prev_p)^+`` when both splits sum to one:
with the base on the path in force a shift column simply costs ``2 w churn_weight``; only
a (class, OD) whose split in force spreads over several allowed paths needs auxiliary
variables (one row each), and it enters the LP whole from the start.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

import highspy
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from shadowcast.errors import PlanError
from shadowcast.records import F64, I64

log = logging.getLogger(__name__)
B = npt.NDArray[np.bool_]
INF = highspy.kHighsInf
RC_TOL = 1e-7  # HiGHS's dual feasibility tolerance: a reduced cost above -this is not worth it
MAX_ROUNDS = 10_000  # a safety net: every round adds a column, and there are finitely many
MIN_PER_ROUND = 2000  # columns added per round at most: max(this, 2 x link rows)

_make_highs: Callable[[], highspy.Highs] = highspy.Highs  # (its __init__ is untyped)
_banner_lock = threading.Lock()
_banner_done = False


def new_highs() -> highspy.Highs:
    """A quiet HiGHS instance. HiGHS prints a banner on stdout the first time one is made
    in a process, before any option can be set; stdout is pointed at /dev/null for that
    once (a ``--json`` command's stdout must stay parseable)."""
    global _banner_done
    with _banner_lock:
        if _banner_done:
            h = _make_highs()
        else:
            sys.stdout.flush()
            saved = os.dup(1)
            try:
                with open(os.devnull, "wb") as null:
                    os.dup2(null.fileno(), 1)
                    h = _make_highs()
            finally:
                os.dup2(saved, 1)
                os.close(saved)
            _banner_done = True
    h.setOptionValue("output_flag", False)
    h.setOptionValue("simplex_strategy", 4)  # primal: the basis stays feasible as columns join
    return h


@dataclass(frozen=True, slots=True)
class Problem:
    """The LP's data, already checked: see :func:`shadowcast.plan.optimise.solve_min_mlu`."""

    incs: sp.csc_matrix  # [L live links, P] incidence scaled by 1 / capacity
    path_od: I64
    od_start: I64
    d: F64  # [S, C, n_od]
    allow: B  # [C, P]
    cost: F64  # [C, P] objective of x (tie-break), before churn
    free: B  # [C, n_od] may move
    base: I64  # [C, n_od] the base path of every (class, OD)
    const_x: F64  # [C, P] the split of what does not move (fixed, zero demand), 0 elsewhere
    prev: F64 | None  # [C, P] the split in force (for churn)
    churn: F64  # [C, n_od] cost of moving all of a (class, OD), 0 without churn
    penalty: tuple[F64, F64, float]  # (slopes, widths, weight); weight 0: none
    robust: bool  # one U over all scenarios (else the mean of one U per scenario)


@dataclass(frozen=True, slots=True)
class Solution:
    x: F64  # [C, P]
    objective: float
    rounds: int
    columns: int


class ColumnLP:
    """The restricted LP and its growth; see the module docstring."""

    def __init__(self, pb: Problem, start: B) -> None:
        self.pb = pb
        n_s, n_c, n_od = pb.d.shape
        self.L = pb.incs.shape[0]
        self.n_s = n_s
        n_p = pb.path_od.size
        # Shift column costs: tie-break relative to the base, plus churn (see docstring).
        od_c = np.arange(n_c)[:, None]
        base_p = pb.base[od_c, pb.path_od[None, :]]  # [C, P]
        self.base_p = base_p
        self.shift_cost = pb.cost - np.take_along_axis(pb.cost, base_p, axis=1)
        self.complex = np.zeros((n_c, n_od), dtype=bool)
        if pb.prev is not None and pb.churn.any():
            pa = np.where(pb.allow, pb.prev, 0.0)
            n_pos = np.add.reduceat((pa > 1e-12).astype(np.int64), pb.od_start[:-1], axis=1)
            pb_base = np.take_along_axis(pa, pb.base, axis=1)
            self.complex = pb.free & ((n_pos >= 2) | ((pb_base > 1e-12) & (pb_base < 1 - 1e-9)))
            on_base = pb_base >= 1 - 1e-9  # moving off the base is churn; else it is not
            simple_c = np.where(on_base, pb.churn, 0.0)[od_c, pb.path_od[None, :]]
            cx = self.complex[od_c, pb.path_od[None, :]]
            direct = np.where(cx & (pa <= 1e-12), pb.churn[od_c, pb.path_od[None, :]], 0.0)
            self.shift_cost = self.shift_cost + np.where(cx, direct, simple_c)
        movable = pb.free[od_c, pb.path_od[None, :]] & pb.allow
        self.candidate = movable & (np.arange(n_p)[None, :] != base_p)
        self.active = np.zeros((n_c, n_p), dtype=bool)
        self.cols: list[tuple[I64, I64]] = []  # (flat c * P + p, HiGHS column) per addition
        self.aux_row = np.full((n_c, n_p), -1, dtype=np.int64)  # (c, p) -> its churn row
        self.aux_base = np.full((n_c, n_od), -1, dtype=np.int64)  # (c, od) -> the base's
        self.od_row = np.full((n_c, n_od), -1, dtype=np.int64)
        self.n_in = np.zeros((n_c, n_od), dtype=np.int64)  # shift columns in the LP
        self.lp_col = np.full((n_c, n_p), -1, dtype=np.int64)  # HiGHS column of each
        self.h = new_highs()
        self._build()
        first = (start | self.complex[od_c, pb.path_od[None, :]]) & self.candidate
        self._add(np.flatnonzero(first.ravel()))

    # -- model ---------------------------------------------------------------------------
    def _base_load(self) -> F64:
        """Constant utilisation ``[S, L]`` of the base paths and the fixed splits."""
        pb = self.pb
        xb = pb.const_x.copy()
        cc, oo = np.nonzero(pb.free)
        xb[cc, pb.base[cc, oo]] += 1.0
        flows = (pb.d[:, :, pb.path_od] * xb[None]).sum(axis=1)  # [S, P]
        return np.asarray(pb.incs @ flows.T).T

    def _build(self) -> None:
        pb, L, S = self.pb, self.L, self.n_s
        h = self.h
        load0 = self._base_load()
        n_u = S * L
        n_U = 1 if pb.robust else S
        h.addVars(n_U, np.zeros(n_U), np.full(n_U, INF))
        h.changeColsCost(n_U, np.arange(n_U, dtype=np.int32), np.full(n_U, 1.0 / n_U))
        rows_u = np.arange(n_u)
        u_col = np.zeros(n_u, dtype=np.int64) if pb.robust else rows_u // L
        slopes, widths, weight = pb.penalty
        ent_r, ent_c, ent_v = [rows_u], [u_col], [-np.ones(n_u)]
        lo = [np.full(n_u, -INF)]
        hi = [-load0.ravel()]
        self.n_rows_fixed = n_u
        if weight > 0:
            k = slopes.size
            y0 = h.getNumCol()
            h.addVars(n_u * k, np.zeros(n_u * k), np.tile(widths, n_u))
            h.changeColsCost(
                n_u * k,
                np.arange(y0, y0 + n_u * k, dtype=np.int32),
                np.tile(slopes, n_u) * weight / n_u,
            )
            ent_r.append(n_u + np.repeat(rows_u, k))
            ent_c.append(y0 + np.arange(n_u * k))
            ent_v.append(-np.ones(n_u * k))
            lo.append(-load0.ravel())
            hi.append(-load0.ravel())
            self.n_rows_fixed += n_u
        rows = sp.csr_matrix(
            (np.concatenate(ent_v), (np.concatenate(ent_r), np.concatenate(ent_c))),
            shape=(self.n_rows_fixed, h.getNumCol()),
        )
        self._add_rows(np.concatenate(lo), np.concatenate(hi), rows)

    def _add_rows(self, lo: F64, hi: F64, rows: sp.csr_matrix) -> None:
        rows.sort_indices()
        self.h.addRows(
            lo.size,
            lo,
            hi,
            rows.nnz,
            rows.indptr[:-1].astype(np.int32),
            rows.indices.astype(np.int32),
            rows.data.astype(np.float64),
        )

    def _add(self, flat: npt.NDArray[np.int64]) -> None:
        """Add the shift columns ``flat`` (c * P + p) with their (class, OD) rows."""
        if flat.size == 0:
            return
        pb, h, L, S = self.pb, self.h, self.L, self.n_s
        n_p = pb.path_od.size
        c, p = flat // n_p, flat % n_p
        od = pb.path_od[p]
        # A "Σ δ <= 1" row once a (class, OD) has two shift columns (one column: its bound
        # is enough) or is complex; churn rows when a complex one enters.
        n_key = len(pb.od_start)
        key = c * n_key + od
        uk, nk = np.unique(key, return_counts=True)
        kc, ko = uk // n_key, uk % n_key
        total = self.n_in[kc, ko] + nk
        need = ((total >= 2) | self.complex[kc, ko]) & (self.od_row[kc, ko] < 0)
        kc, ko = kc[need], ko[need]
        if kc.size:
            wants = np.zeros_like(self.od_row, dtype=bool)
            wants[kc, ko] = True
            r0 = h.getNumRow()
            self.od_row[kc, ko] = r0 + np.arange(kc.size)
            ec, ep = np.nonzero(self.lp_col >= 0)
            mine = wants[ec, pb.path_od[ep]]
            ec, ep = ec[mine], ep[mine]
            rows = sp.csr_matrix(
                (np.ones(ec.size), (self.od_row[ec, pb.path_od[ep]] - r0, self.lp_col[ec, ep])),
                shape=(kc.size, h.getNumCol()),
            )
            self._add_rows(np.full(kc.size, -INF), np.ones(kc.size), rows)
        enter = self.complex[uk // n_key, uk % n_key] & (self.n_in[uk // n_key, uk % n_key] == 0)
        self._churn_rows(uk[enter] // n_key, uk[enter] % n_key)
        self.n_in[uk // n_key, uk % n_key] += nk
        # Coefficients: (scaled incidence of p - of the base) x demand, per scenario.
        diff = pb.incs[:, p] - pb.incs[:, self.base_p[c, p]]
        diff = sp.csc_matrix(diff)
        diff.eliminate_zeros()
        blocks = [diff @ sp.diags(pb.d[s, c, od]) for s in range(S)]
        parts = [sp.vstack(blocks, format="csc")]
        n_fix = S * L
        if self.n_rows_fixed > n_fix:
            parts.append(parts[0])
        top = sp.vstack(parts, format="csc") if len(parts) > 1 else parts[0]
        n_rows = h.getNumRow()
        has_row = self.od_row[c, od] >= 0
        extra_r = [self.od_row[c, od][has_row]]
        extra_c = [np.flatnonzero(has_row)]
        extra_v = [np.ones(int(has_row.sum()))]
        for rows, v in ((self.aux_row[c, p], 1.0), (self.aux_base[c, od], -1.0)):
            j = np.flatnonzero(rows >= 0)
            extra_r.append(rows[j])
            extra_c.append(j)
            extra_v.append(np.full(j.size, v))
        low = sp.csc_matrix(
            (np.concatenate(extra_v), (np.concatenate(extra_r), np.concatenate(extra_c))),
            shape=(n_rows, flat.size),
        )
        top = sp.vstack([top, sp.csc_matrix((n_rows - top.shape[0], flat.size))], format="csc")
        m = sp.csc_matrix(top + low)
        m.eliminate_zeros()
        m.sort_indices()
        first = h.getNumCol()
        h.addCols(
            flat.size,
            self.shift_cost[c, p],
            np.zeros(flat.size),
            np.ones(flat.size),
            m.nnz,
            m.indptr[:-1].astype(np.int32),
            m.indices.astype(np.int32),
            m.data.astype(np.float64),
        )
        self.active[c, p] = True
        self.lp_col[c, p] = first + np.arange(flat.size)
        self.cols.append((flat, first + np.arange(flat.size)))

    def _churn_rows(self, cs: I64, ods: I64) -> None:
        """Auxiliary churn variables and rows of the complex (class, OD)s among ``cs, ods``:
        ``δ_p - t_p <= prev_p`` for the other paths in force, ``-Σ δ - t_b <= prev_b - 1``."""
        pb, h = self.pb, self.h
        if pb.prev is None or cs.size == 0:
            return
        n_c, n_od = self.od_row.shape
        enter = np.zeros((n_c, n_od), dtype=bool)
        enter[cs, ods] = True
        pa = np.where(pb.allow, pb.prev, 0.0)
        on = enter[:, pb.path_od]
        is_base = np.arange(pb.path_od.size)[None, :] == self.base_p
        other = on & ~is_base & (pa > 1e-12)
        base = on & is_base & (pa < 1 - 1e-9)
        oc, op = np.nonzero(other)
        bc, bp = np.nonzero(base)
        rhs = np.concatenate([pa[oc, op], pa[bc, bp] - 1.0])
        n = rhs.size
        if n == 0:
            return
        t0, r0 = h.getNumCol(), h.getNumRow()
        cost = np.concatenate([pb.churn[oc, pb.path_od[op]], pb.churn[bc, pb.path_od[bp]]])
        h.addVars(n, np.zeros(n), np.full(n, INF))
        h.changeColsCost(n, np.arange(t0, t0 + n, dtype=np.int32), cost)
        rows = sp.csr_matrix((-np.ones(n), (np.arange(n), t0 + np.arange(n))), (n, t0 + n))
        self._add_rows(np.full(n, -INF), rhs, rows)
        self.aux_row[oc, op] = r0 + np.arange(oc.size)
        self.aux_base[bc, pb.path_od[bp]] = r0 + oc.size + np.arange(bc.size)

    # -- solve ---------------------------------------------------------------------------
    def _retry(self) -> highspy.HighsModelStatus:
        """Solve again from scratch with the dual simplex once: primal simplex from the
        last basis can stop with an 'Unknown' status (seen on GEANT in eval te's
        predictive replay) on an LP that is feasible and bounded."""
        h = self.h
        log.warning(
            "HiGHS stopped with %s: solving again from scratch",
            h.modelStatusToString(h.getModelStatus()),
        )
        h.clearSolver()
        h.setOptionValue("simplex_strategy", 1)
        h.run()
        h.setOptionValue("simplex_strategy", 4)
        return h.getModelStatus()

    def solve(self) -> Solution:
        pb, h = self.pb, self.h
        n_c = pb.d.shape[1]
        n_p = pb.path_od.size
        rounds = 0
        while True:
            h.run()
            status = h.getModelStatus()
            if status != highspy.HighsModelStatus.kOptimal:
                status = self._retry()
            if status != highspy.HighsModelStatus.kOptimal:
                raise PlanError(f"HiGHS could not solve the TE LP: {h.modelStatusToString(status)}")
            rounds += 1
            add = self._price()
            if add.size == 0:
                break
            if rounds >= MAX_ROUNDS:  # feasible, not proven optimal
                log.warning("column generation stopped", extra={"rounds": rounds})
                break
            self._add(add)
        sol = h.getSolution()
        val = np.asarray(sol.col_value)
        x = pb.const_x.copy()
        if self.cols:
            delta = np.zeros(n_c * n_p)
            for flat, at in self.cols:
                delta[flat] = np.clip(val[at], 0.0, 1.0)
            x = x + delta.reshape(n_c, n_p)
        moved = np.add.reduceat(x * pb.free[:, pb.path_od], pb.od_start[:-1], axis=1)
        cc, oo = np.nonzero(pb.free)
        x[cc, pb.base[cc, oo]] += np.maximum(1.0 - moved[cc, oo], 0.0)
        n_cols = sum(f.size for f, _ in self.cols)
        return Solution(x, float(h.getInfo().objective_function_value), rounds, n_cols)

    def _price(self) -> npt.NDArray[np.int64]:
        """Shift columns left out whose reduced cost is negative (flat c * P + p)."""
        pb, h, L, S = self.pb, self.h, self.L, self.n_s
        rd = np.asarray(h.getSolution().row_dual)
        mu = rd[: S * L].reshape(S, L)
        if self.n_rows_fixed > S * L:
            mu = mu + rd[S * L : 2 * S * L].reshape(S, L)
        q = np.asarray(pb.incs.T @ mu.T).T  # [S, P]
        n_c = pb.d.shape[1]
        rc = self.shift_cost.copy()
        for c in range(n_c):
            dq = q - q[:, self.base_p[c]]
            rc[c] -= (pb.d[:, c, pb.path_od] * dq).sum(axis=0)
        rows = self.od_row[:, pb.path_od]
        rho = np.where(rows >= 0, rd[np.maximum(rows, 0)], 0.0)
        rc -= rho
        want = np.flatnonzero((self.candidate & ~self.active & (rc < -RC_TOL)).ravel())
        limit = max(MIN_PER_ROUND, 2 * S * L)
        if want.size > limit:  # the most negative first: a smaller LP re-solves faster
            want = want[np.argpartition(rc.ravel()[want], limit)[:limit]]
        return want
