"""Bounded churn: which (class, OD) splits a plan may change, and how many.

A split moves only to relieve a link predicted over ``plan.move_above`` utilisation under
the state in force ("hot"): the LP may re-route a (class, OD) only if its current split
puts traffic on a hot link, every other split is kept exactly (``solve_min_mlu(fixed=)``),
and a change that does not lower the (class, OD)'s traffic on any hot link is undone (the
LP solved again with it fixed). Without a hot link nothing moves, however the convex
penalty would like to spread the load. At most ``max_changes`` changes are kept, the
largest first.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from shadowcast.plan.config import PlanConfig
from shadowcast.plan.optimise import solve_min_mlu, utilisation
from shadowcast.plan.paths import PathSet
from shadowcast.records import F64

B = npt.NDArray[np.bool_]
TOL = 1e-3  # a share of an OD's traffic below this is no change
ROUNDS = 4  # LP solves at most, undoing changes that relieve nothing


def _od_traffic(paths: PathSet, links: B, split: F64) -> F64:
    """``[C, n_links_selected, n_od]``: share of each (class, OD) on each selected link."""
    inc = paths.incidence()[np.flatnonzero(links)]
    group = sp.csr_matrix(
        (np.ones(paths.n_paths), (np.arange(paths.n_paths), paths.path_od)),
        shape=(paths.n_paths, len(paths.od_pairs)),
    )
    out = [np.asarray((inc.multiply(x[None, :]) @ group).todense()) for x in split]
    return np.stack(out) if out else np.zeros((0, int(links.sum()), len(paths.od_pairs)))


def changed(paths: PathSet, cur: F64, new: F64) -> B:
    """``[C, n_od]``: the (class, OD) splits that differ by more than TOL."""
    moved = 0.5 * np.add.reduceat(np.abs(new - cur), paths.od_start[:-1], axis=1)
    return np.asarray(moved > TOL, dtype=bool)


def rebalance(
    paths: PathSet,
    cap: F64,
    peak: F64,
    cur: F64,
    allowed: B,
    cfg: PlanConfig,
    hot: B,
    notes: list[str],
) -> tuple[F64, float, B]:
    """The LP's split when only (class, OD)s on ``hot`` links may move, and only to
    relieve one: ``(split, planned MLU, movable[C, n_od])``."""
    on_hot = _od_traffic(paths, hot, cur)  # [C, H, od]
    movable = (on_hot > TOL).any(axis=1) & (peak > 0)
    if not movable.any():
        notes.append(f"no link predicted over {cfg.move_above:.0%}: no split moves")
        return cur, cur_mlu(paths, cap, peak, cur), movable
    new, mlu = cur, cur_mlu(paths, cap, peak, cur)
    for _ in range(ROUNDS):
        res = solve_min_mlu(
            paths,
            cap,
            peak[None],
            allowed=allowed,
            previous=cur,
            churn_weight=cfg.churn_weight,
            penalty_weight=cfg.penalty_weight,
            fixed=~movable,
        )
        lowers = (_od_traffic(paths, hot, res.split) < on_hot - TOL).any(axis=1)
        idle = changed(paths, cur, res.split) & ~lowers
        new, mlu = res.split, res.mlu
        if not idle.any():
            break
        movable &= ~idle
        if not movable.any():
            new, mlu = cur, cur_mlu(paths, cap, peak, cur)
            break
    else:  # still a change that relieves nothing: undo it
        keep = np.repeat(changed(paths, cur, new) & ~lowers, np.diff(paths.od_start), axis=1)
        new = np.where(keep, cur, new)
    return new, mlu, movable


def cur_mlu(paths: PathSet, cap: F64, peak: F64, split: F64) -> float:
    """Max utilisation of ``split`` under the planned demand ``peak[C, n_od]``."""
    return float(utilisation(paths, cap, peak[None], split)[0].max())


def keep_in_force(cur: float, new: float, cfg: PlanConfig) -> bool:
    """Hysteresis: keep the plan in force (planned MLU ``cur``) rather than adopt a new one
    (``new``) unless the new one lowers the planned MLU by ``plan.hysteresis``, or brings a
    plan in force over ``plan.target_utilisation`` under it. Over the target the margin
    still applies: every forecast wobble gains something there, and GEANT's matrices on
    FIGRET's capacities sit at an MLU of about 1.6 throughout."""
    if cur > cfg.target_utilisation >= new:
        return False
    return cur - new < cfg.hysteresis


def cap_changes(paths: PathSet, cur: F64, new: F64, peak: F64, cap_n: int, notes: list[str]) -> F64:
    """Keep at most ``cap_n`` (class, OD) changes, the largest (share moved x demand)."""
    moved = 0.5 * np.abs(np.add.reduceat(np.abs(new - cur), paths.od_start[:-1], axis=1))
    changed_ = np.argwhere(moved > TOL)
    if len(changed_) <= cap_n:
        return new
    weight = moved[changed_[:, 0], changed_[:, 1]] * peak[changed_[:, 0], changed_[:, 1]]
    drop = changed_[np.argsort(-weight)[cap_n:]]
    out = new.copy()
    for c, k in drop:
        sl = slice(int(paths.od_start[k]), int(paths.od_start[k + 1]))
        out[c, sl] = cur[c, sl]
    notes.append(f"max_changes: kept the {cap_n} largest of {len(changed_)} changes")
    return out
