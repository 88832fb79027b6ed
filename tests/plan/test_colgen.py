"""Column generation against the whole LP solved at once: same optimum on random instances
with classes, scenarios, masks, churn (pure and spread splits in force), penalty, fixed
splits and failed links; and the reduced costs it prices with are HiGHS's own."""

from __future__ import annotations

import numpy as np
import pytest
from lp_reference import objective, reference_split
from plan_helpers import bidir

from shadowcast.plan.optimise import normalise_split, solve_min_mlu
from shadowcast.plan.paths import candidate_paths
from shadowcast.records import Topology


def _net() -> Topology:
    return bidir(
        "mesh",
        [
            ("A", "B", 10e6),
            ("B", "C", 6e6),
            ("C", "D", 10e6),
            ("D", "E", 8e6),
            ("E", "F", 10e6),
            ("F", "A", 7e6),
            ("A", "D", 4e6),
            ("B", "E", 5e6),
            ("C", "F", 9e6),
        ],
    )


def _instance(seed: int) -> tuple[object, ...]:
    rng = np.random.default_rng(seed)
    topo = _net()
    nodes = topo.nodes
    ods = [(a, b) for a in nodes for b in nodes if a != b]
    ps = candidate_paths(topo, ods, k=3)
    cap = topo.capacities / 1e6
    n_c, n_s = 1 + seed % 2, 1 + seed % 3
    d = rng.lognormal(0.0, 1.0, (n_s, n_c, len(ods)))
    d[:, :, rng.random(len(ods)) < 0.15] = 0.0  # some pairs without demand
    opts: dict[str, object] = {"robust": seed % 4 != 3}
    if seed % 5 == 1:
        cap[int(rng.integers(len(cap)))] = 0.0  # a failed link
    allowed = rng.random((n_c, ps.n_paths)) < 0.8
    alive = ps.without_links(np.flatnonzero(cap <= 0))
    none = np.add.reduceat((allowed & alive).astype(int), ps.od_start[:-1], axis=1) == 0
    allowed |= none[:, ps.path_od]  # every (class, OD) keeps a path, or carries nothing
    cut = np.add.reduceat(alive.astype(int), ps.od_start[:-1]) == 0
    d[:, :, cut] = 0.0
    opts["allowed"] = allowed
    if seed % 2 == 0:
        prev = rng.random((n_c, ps.n_paths)) ** 4  # spread over several paths
        pure = rng.random((n_c, len(ods))) < 0.6
        one = np.zeros_like(prev)
        one[:, ps.od_start[:-1] + (seed % 2)] = 1.0
        prev = np.where(pure[:, ps.path_od], one, prev)
        opts["previous"] = normalise_split(ps, prev)
        opts["churn_weight"] = [0.02, 0.5][seed % 4 // 2]
        if seed % 3 == 0:
            opts["fixed"] = rng.random((n_c, len(ods))) < 0.4
    if seed % 3 != 1:
        opts["penalty_weight"] = 0.1 * (1 + seed % 4)
    return ps, cap, d, opts


@pytest.mark.parametrize("seed", range(16))
def test_same_optimum_as_the_whole_lp(seed: int) -> None:
    ps, cap, d, opts = _instance(seed)
    res = solve_min_mlu(ps, cap, d, **opts)  # type: ignore[arg-type]
    ref = reference_split(ps, cap, d, **opts)
    obj_kw = {k: v for k, v in opts.items() if k not in ("allowed", "fixed")}
    got = objective(ps, cap, d, res.split, **obj_kw)
    want = objective(ps, cap, d, normalise_split(ps, ref), **obj_kw)
    assert got == pytest.approx(want, rel=1e-6, abs=1e-7)
    x = res.split
    sums = np.add.reduceat(x, ps.od_start[:-1], axis=1)
    assert np.allclose(sums, 1.0)
    allowed = opts["allowed"] & ps.without_links(np.flatnonzero(cap <= 0))[None, :]
    has = np.add.reduceat(allowed.astype(int), ps.od_start[:-1], axis=1) > 0
    assert (x[allowed[:, :] | ~has[:, ps.path_od]] >= 0).all()
    held = np.zeros_like(has) if "fixed" not in opts else opts["fixed"]
    masked = ~allowed & has[:, ps.path_od] & ~held[:, ps.path_od]  # held splits stay as they are
    assert np.abs(x[masked]).max(initial=0.0) < 1e-9
    if "fixed" in opts:
        fx = opts["fixed"][:, ps.path_od]
        assert np.allclose(x[fx], opts["previous"][fx])


def test_warm_start_reaches_the_same_optimum_in_fewer_rounds() -> None:
    ps, cap, d, _ = _instance(1)
    cold = solve_min_mlu(ps, cap, d)
    again = solve_min_mlu(ps, cap, d * 1.01, warm=cold.support)
    fresh = solve_min_mlu(ps, cap, d * 1.01)
    assert again.mlu == pytest.approx(fresh.mlu, rel=1e-9)
    assert again.rounds <= fresh.rounds
    assert cold.columns < ps.n_paths  # it did not need every path


def test_the_solver_prints_nothing_on_stdout() -> None:
    import subprocess
    import sys

    code = "from shadowcast.plan.colgen import new_highs; new_highs(); print('only this')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == "only this\n"
