"""Predictive TE in the replay: hedge grammar and choice, no look-ahead in the hedged
replay, and the forecaster a backtest on the training part picks."""

from __future__ import annotations

import numpy as np
import pytest
from plan_helpers import bidir

from shadowcast.errors import ConfigError
from shadowcast.plan.config import PlanConfig
from shadowcast.plan.hedge import Hedge, Pass, Replay, choose, parse_hedge, pick_hedge, plan_replay
from shadowcast.plan.optimise import solve_min_mlu
from shadowcast.plan.paths import candidate_paths


def _net():  # type: ignore[no-untyped-def]
    return bidir(
        "sq",
        [("A", "B", 10e6), ("A", "C", 10e6), ("C", "B", 10e6), ("A", "D", 10e6), ("D", "B", 10e6)],
    )


def test_parse_hedge() -> None:
    assert parse_hedge("auto") is None
    assert parse_hedge("mean") == Hedge(0)
    assert parse_hedge("saa:8") == Hedge(8)
    assert parse_hedge("SAA:4:0.3") == Hedge(4, 0.3)
    assert Hedge(8, 0.3).name == "saa:8:0.3" and Hedge(0).name == "mean"
    for bad in ("saa", "saa:x", "saa:100", "saa:4:-1", "p95"):
        with pytest.raises(ConfigError, match="hedge"):
            parse_hedge(bad)


def test_pick_hedge_least_mlu_then_least_churn() -> None:
    scores = {
        "mean": [1.05, 1.20, 0.01],
        "saa:8": [1.01, 1.05, 0.02],
        "saa:8:0.3": [1.011, 1.05, 0.003],
    }
    assert pick_hedge(scores) == "saa:8:0.3"  # as good (within the slack) and moves less
    scores["saa:8:0.3"] = [1.02, 1.08, 0.003]
    assert pick_hedge(scores) == "saa:8"


def _replay(values: np.ndarray, first: int = 0) -> tuple[Replay, Pass]:  # type: ignore[type-arg]
    topo = _net()
    ods = [("A", "B"), ("C", "B"), ("A", "D")]
    paths = candidate_paths(topo, ods, k=3)
    cap = topo.capacities / 1e6
    oracle = {t: solve_min_mlu(paths, cap, values[t]) for t in range(first, values.shape[0])}
    fc = Pass("given", 0)
    rng = np.random.default_rng(0)
    for h in (1, 2):  # fixed forecasts: the truth blurred
        fc.mean[h] = np.maximum(values[h:] * rng.lognormal(0, 0.2, values[h:].shape), 0.0)
        fc.mean[h] = np.vstack([fc.mean[h], np.repeat(fc.mean[h][-1:], h, 0)])
        fc.planned[h] = fc.mean[h]
    return Replay(paths, cap, values, oracle, 1.0), fc


def test_hedged_replay_sees_only_errors_already_known() -> None:
    rng = np.random.default_rng(1)
    values = rng.uniform(2.0, 9.0, (40, 3))
    rp, fc = _replay(values)
    h, cut = 2, 25
    later = values.copy()
    later[cut:] *= rng.uniform(0.2, 3.0, later[cut:].shape)  # the future changes ...
    rp2 = Replay(rp.paths, rp.cap, later, rp.oracle, 1.0)
    a, _ = plan_replay(rp, fc, h, (10, 40), Hedge(8), PlanConfig())
    b, _ = plan_replay(rp2, fc, h, (10, 40), Hedge(8), PlanConfig())
    for i, t in enumerate(range(10, 40)):  # ... so only the splits decided after it may
        if t - h < cut:
            assert np.array_equal(a[i], b[i]), t
    assert any(not np.array_equal(x, y) for x, y in zip(a, b, strict=True))


def test_hedged_replay_scenarios_and_seed() -> None:
    rng = np.random.default_rng(2)
    values = rng.uniform(2.0, 9.0, (30, 3))
    rp, fc = _replay(values)
    mean, _ = plan_replay(rp, fc, 1, (5, 30), Hedge(0), PlanConfig())
    saa, _ = plan_replay(rp, fc, 1, (5, 30), Hedge(4), PlanConfig())
    assert any(not np.allclose(x, y) for x, y in zip(mean, saa, strict=True))
    # Seed errors fill in before the pass's own: the first decision already hedges.
    late = Pass("given", 10, {1: fc.mean[1][10:]}, {1: fc.planned[1][10:]})
    seed = (1, fc.errors(values, 1)[:12])  # targets 1..12, known before the pass's first
    cold, _ = plan_replay(rp, late, 1, (11, 14), Hedge(4), PlanConfig())
    warm, _ = plan_replay(rp, late, 1, (11, 14), Hedge(4), PlanConfig(), seed=seed)
    assert not np.allclose(cold[0], warm[0])


def _seasonal(days: int = 5, seed: int = 0):  # type: ignore[no-untyped-def]
    """15-minute series with a strong daily shape: seasonal naive forecasts it well,
    persistence lags an hour behind."""
    rng = np.random.default_rng(seed)
    t = np.arange(days * 96)
    shape = 1 + 0.8 * np.sin(2 * np.pi * t / 96)[:, None] * np.array([1.0, -1.0, 0.5])
    return np.array([9.0, 4.0, 5.0]) * shape * rng.lognormal(0, 0.02, (t.size, 3))


def test_choose_picks_the_forecaster_that_backtests_best() -> None:
    values = _seasonal(days=4)
    rp, _ = _replay(values, first=120)
    times = np.datetime64("2024-01-01T00:00:00", "s") + np.arange(values.shape[0]) * np.timedelta64(
        900, "s"
    )
    t0 = 192
    ch = choose(
        rp,
        values,
        times,
        900,
        t0,
        [1, 4],
        PlanConfig(),
        candidates=("persistence", "seasonal_naive"),
        hedges=(Hedge(0), Hedge(4, 0.3)),
    )
    assert ch.window == (128, 192)  # the last third of the training part
    for h in (1, 4):
        assert set(ch.nmae[h]) == {"persistence", "seasonal_naive"}
    assert ch.forecaster[4] == "seasonal_naive"  # an hour ahead the daily shape wins
    assert ch.nmae[4]["seasonal_naive"] < ch.nmae[4]["persistence"]
    assert set(ch.hedge_scores[4]) == {"mean", "saa:4:0.3"}
    assert ch.hedge[4] in (Hedge(0), Hedge(4, 0.3))
    first, err = ch.seed[("seasonal_naive", 4)]
    assert first == 128 - 4 + 4 and first + err.shape[0] == t0  # errors known at t0 only


def test_classes_hedge_by_latency_sensitivity() -> None:
    """The planner hedges per class: a high-sensitivity class at its upper quantile (p95:
    the top of the 90 % interval), bulk (low) on the mean, in what it plans and reserves."""
    from shadowcast.plan.planner import ClassForecast, make_plan
    from shadowcast.records import Forecast

    topo = _net()
    ods = [("A", "B"), ("C", "B")]
    paths = candidate_paths(topo, ods, k=3)
    m = np.array([[6.0, 6.0], [2.0, 2.0]])
    f = Forecast(mean=m, lower={90.0: m * 0.5}, upper={90.0: m * 1.5})
    plan = make_plan(
        [ClassForecast("voip", f, "high"), ClassForecast("bulk", f, "low")], paths, topo
    )
    planned = {(s.cls, s.src): s.demand_mbps for s in plan.splits}
    assert planned[("voip", "A")] == pytest.approx(9.0) and planned[("bulk", "A")] == 6.0
    assert {r.quantile for r in plan.reservations} == {"p95"}
