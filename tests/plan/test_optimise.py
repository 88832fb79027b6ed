"""The TE LP against instances whose optimum is known or found by brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from plan_helpers import bidir

from shadowcast.errors import PlanError
from shadowcast.plan.optimise import solve_min_mlu
from shadowcast.plan.paths import candidate_paths
from shadowcast.records import Topology


def test_known_optimum_three_parallel_paths(square: Topology) -> None:
    # 24 Mbit/s A->B over three 10 Mbit/s paths: the optimum is 8 each, MLU 0.8.
    ps = candidate_paths(square, [("A", "B")], k=3)
    res = solve_min_mlu(ps, square.capacities / 1e6, np.array([24.0]))
    assert res.mlu == pytest.approx(0.8, abs=1e-7)
    assert np.allclose(res.split[0], [1 / 3, 1 / 3, 1 / 3], atol=1e-6)
    assert res.split.sum() == pytest.approx(1.0)


def test_known_optimum_with_competing_demand(square: Topology) -> None:
    # A->B 20 and C->B 10: C->B's direct link is shared with A-C-B. Optimum: put A->B
    # on A-B (10) and A-D-B (10) -> MLU 1.0; C->B alone on C-B (10) -> 1.0. Any other
    # split raises one link above 1.0, so the optimum is exactly 1.0.
    ps = candidate_paths(square, [("A", "B"), ("C", "B")], k=3)
    res = solve_min_mlu(ps, square.capacities / 1e6, np.array([20.0, 10.0]))
    assert res.mlu == pytest.approx(1.0, abs=1e-7)


def _brute_force(ps, cap, d, grid: int = 30) -> float:  # type: ignore[no-untyped-def]
    """Min over a grid of splits of two OD pairs (vectorised): loads [n1, n2, E]."""
    inc = ps.incidence().toarray()
    per_od = []
    for k in range(len(ps.od_pairs)):
        ids = list(range(ps.od_start[k], ps.od_start[k + 1]))
        combos = [
            [*c, grid - sum(c)]
            for c in itertools.product(range(grid + 1), repeat=len(ids) - 1)
            if sum(c) <= grid
        ]
        x = np.array(combos, dtype=float) / grid  # [n, paths of k]
        per_od.append(d[k] * x @ inc[:, ids].T)  # [n, E]
    assert len(per_od) == 2
    loads = per_od[0][:, None, :] + per_od[1][None, :, :]
    return float((loads / cap).max(axis=2).min())


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_lp_matches_brute_force_on_random_small_instances(seed: int) -> None:
    rng = np.random.default_rng(seed)
    topo = bidir(
        "ring",
        [("A", "B", 10e6), ("B", "C", 5e6), ("C", "D", 10e6), ("D", "A", 7e6), ("A", "C", 4e6)],
    )
    ods = [("A", "C"), ("B", "D")]
    ps = candidate_paths(topo, ods, k=3)
    cap = topo.capacities / 1e6
    d = rng.uniform(1, 12, size=len(ods))
    lp = solve_min_mlu(ps, cap, d).mlu
    bf = _brute_force(ps, cap, d)
    # The LP is never worse than any grid point, and the grid is within its resolution.
    assert lp <= bf + 1e-7
    assert lp >= bf - 2 * 12.0 / 30 / 4.0 - 1e-7


def test_robust_over_scenarios_is_max_of_each(square: Topology) -> None:
    ps = candidate_paths(square, [("A", "B"), ("A", "C")], k=3)
    cap = square.capacities / 1e6
    sc = np.array([[24.0, 0.0], [0.0, 9.0]])
    res = solve_min_mlu(ps, cap, sc)
    assert res.util.shape == (2, len(square.links))
    assert res.mlu == pytest.approx(res.util.max())
    assert res.mlu >= solve_min_mlu(ps, cap, sc[0]).mlu - 1e-9


def test_allowed_mask_and_churn_and_penalty(square: Topology) -> None:
    ps = candidate_paths(square, [("A", "B")], k=3)
    cap = square.capacities / 1e6
    allowed = np.array([[True, True, False]])
    res = solve_min_mlu(ps, cap, np.array([12.0]), allowed=allowed)
    assert res.split[0, 2] == 0.0 and res.mlu == pytest.approx(0.6)
    # A huge churn weight keeps the previous split even though it is worse.
    prev = np.array([[1.0, 0.0, 0.0]])
    stay = solve_min_mlu(ps, cap, np.array([12.0]), previous=prev, churn_weight=100.0)
    assert np.allclose(stay.split, prev) and stay.mlu == pytest.approx(1.2)
    # The penalty keeps the optimum MLU and spreads load.
    pen = solve_min_mlu(ps, cap, np.array([12.0]), penalty_weight=1.0)
    assert pen.mlu == pytest.approx(0.4, abs=1e-6)


def test_infeasible_coverage_and_bad_input(square: Topology) -> None:
    ps = candidate_paths(square, [("A", "B")], k=3)
    cap = square.capacities / 1e6
    with pytest.raises(PlanError, match="no allowed path"):
        solve_min_mlu(ps, cap, np.array([5.0]), allowed=np.zeros((1, 3), dtype=bool))
    with pytest.raises(PlanError, match="NaN"):
        solve_min_mlu(ps, cap, np.array([np.nan]))
    with pytest.raises(PlanError, match="OD pairs"):
        solve_min_mlu(ps, cap, np.array([1.0, 2.0]))


def test_failed_link_is_avoided(square: Topology) -> None:
    ps = candidate_paths(square, [("A", "B")], k=3)
    cap = square.capacities / 1e6
    cap[0] = 0.0  # A->B down
    res = solve_min_mlu(ps, cap, np.array([10.0]))
    assert res.split[0, 0] == 0.0 and res.mlu == pytest.approx(0.5)
