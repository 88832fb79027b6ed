"""Predictive TE in the replay keeps the plan in force unless a new one pays: a forecast
wobble that gains less than ``plan.hysteresis`` moves nothing, a real change does move."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
from plan_helpers import bidir

from shadowcast.plan.churn import keep_in_force
from shadowcast.plan.config import PlanConfig
from shadowcast.plan.hedge import Hedge, Pass, Replay, plan_replay, planned_mlu
from shadowcast.plan.optimise import solve_min_mlu
from shadowcast.plan.paths import candidate_paths

F = np.ndarray  # type: ignore[type-arg]


def _rp(values: F) -> tuple[Replay, Pass]:
    """A square with a direct A-B link; the forecast for ``t`` is the truth at ``t``."""
    topo = bidir(
        "sq",
        [("A", "B", 10e6), ("A", "C", 10e6), ("C", "B", 10e6), ("A", "D", 10e6), ("D", "B", 10e6)],
    )
    paths = candidate_paths(topo, [("A", "B"), ("C", "B"), ("A", "D")], k=3)
    cap = topo.capacities / 1e6
    oracle = {t: solve_min_mlu(paths, cap, values[t]) for t in range(values.shape[0])}
    fc = Pass("truth", 0)
    fc.mean[1] = np.vstack([values[1:], values[-1:]])
    fc.planned[1] = fc.mean[1]
    return Replay(paths, cap, values, oracle, 1.0), fc


def _wobble(n: int = 30) -> F:
    """Three ODs at a steady level, each wobbling by +-1 % from step to step."""
    rng = np.random.default_rng(0)
    return np.array([12.0, 5.0, 6.0]) * (1 + 0.01 * rng.uniform(-1, 1, (n, 3)))


def _changes(splits: list[F]) -> int:
    return sum(not np.allclose(a, b, atol=1e-6) for a, b in pairwise(splits))


def test_keep_in_force_margin_and_threshold() -> None:
    cfg = PlanConfig(hysteresis=0.02, target_utilisation=0.9)
    assert keep_in_force(0.70, 0.69, cfg)  # gains 0.01 < 0.02: keep
    assert not keep_in_force(0.70, 0.67, cfg)  # gains 0.03: change
    assert not keep_in_force(0.91, 0.899, cfg)  # back under the target: change
    assert keep_in_force(1.60, 1.59, cfg)  # over it and staying over: the margin holds
    assert not keep_in_force(1.60, 1.55, cfg)
    assert not keep_in_force(0.70, 0.69, cfg.model_copy(update={"hysteresis": 0.0}))


def test_forecast_wobble_below_the_margin_moves_nothing() -> None:
    values = _wobble()
    rp, fc = _rp(values)
    free, _ = plan_replay(rp, fc, 1, (2, 30), Hedge(0), PlanConfig(hysteresis=0.0))
    assert _changes(free) >= 5  # without hysteresis the plan follows every wobble
    held, _ = plan_replay(rp, fc, 1, (2, 30), Hedge(0), PlanConfig(hysteresis=0.02))
    assert _changes(held) == 0
    # ... and the plan kept stays within the margin of the best plan for each forecast.
    for t, x in zip(range(2, 30), held, strict=True):
        scen = fc.planned[1][t - 1][None, :]
        best = solve_min_mlu(rp.paths, rp.cap, scen, penalty_weight=0.1).mlu
        assert planned_mlu(rp, scen, x) < best + 0.02 + 1e-9


def test_a_change_that_pays_is_made() -> None:
    values = _wobble()
    values[15:, 1] *= 1.6  # C->B grows by 60 %: the old plan would run hot
    rp, fc = _rp(values)
    held, _ = plan_replay(rp, fc, 1, (2, 30), Hedge(0), PlanConfig(hysteresis=0.02))
    assert 1 <= _changes(held) <= 3
    assert not np.allclose(held[12], held[-1], atol=1e-6)
    scen = fc.planned[1][28][None, :]
    best = solve_min_mlu(rp.paths, rp.cap, scen, penalty_weight=0.1).mlu
    assert planned_mlu(rp, scen, held[-1]) < best + 0.02 + 1e-9
