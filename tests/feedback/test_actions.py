"""Applied actions judged by their effect: predicted post-action link loads against realised."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from shadowcast.feedback.actions import ActionJudge, summarise
from shadowcast.store.schema import ACTION_OUTCOMES_SCHEMA

STEP = 300
T0 = 1_700_000_100
LINKS = ["a->b", "b->a", "a->c"]
CAP = np.array([100.0, 100.0, 50.0])


def test_an_action_is_scored_at_each_horizon_target() -> None:
    judge = ActionJudge(LINKS, CAP, {"15m": 3, "1h": 12}, STEP)
    pred = np.tile(np.array([[80.0], [20.0], [40.0]]), (1, 12))
    pred[:, 2] = [90.0, 10.0, 30.0]
    judge.applied(T0, "p1", pred, routing_version=4)
    assert judge.pending == 2
    judge.observe(T0, np.zeros(3), 4)  # not a target
    assert judge.take_table() is None
    judge.observe(T0 + 2 * STEP, np.array([60.0, 10.0, 45.0]), 4)
    judge.observe(T0 + 11 * STEP, np.array([80.0, 20.0, 40.0]), 5)  # routing changed since
    tab = judge.take_table()
    assert tab is not None and tab.schema == ACTION_OUTCOMES_SCHEMA and tab.num_rows == 6
    assert judge.pending == 0 and judge.judged == 2
    rows = summarise(tab)
    by_h = {r["horizon_s"]: r for r in rows}
    h3 = by_h[3 * STEP]
    assert h3["plan_id"] == "p1" and h3["issued_s"] == T0 and h3["target_s"] == T0 + 2 * STEP
    assert h3["mlu_predicted"] == pytest.approx(0.9)  # 90 / 100
    assert h3["mlu_realised"] == pytest.approx(0.9)  # 45 / 50
    assert h3["mlu_error"] == pytest.approx(0.0)
    assert h3["load_nmae"] == pytest.approx((30 + 0 + 15) / 115, abs=1e-4)
    assert h3["max_util_error"] == pytest.approx(0.3)
    assert not h3["superseded"]
    h12 = by_h[12 * STEP]
    assert h12["superseded"] and h12["load_nmae"] == pytest.approx(0.0)


def test_pending_predictions_survive_a_restart() -> None:
    judge = ActionJudge(LINKS, CAP, {"15m": 3}, STEP)
    judge.applied(T0, "p1", np.ones((3, 4)), routing_version=1)
    again = ActionJudge(LINKS, CAP, {"15m": 3}, STEP)
    assert again.load_state(judge.state()) and again.pending == 1
    assert not ActionJudge(["x"], CAP[:1], {"15m": 3}, STEP).load_state(judge.state())
    judge.applied(T0, "p2", np.ones((2, 4)), routing_version=1)  # wrong shape: ignored
    assert judge.pending == 1


def _ringnet() -> Any:
    path = Path(__file__).parents[1] / "service" / "ringnet.py"
    spec = importlib.util.spec_from_file_location("ringnet_for_actions", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_replay_scores_its_actions_on_the_simulated_networks_loads(tmp_path: Path) -> None:
    from shadowcast.replay.driver import run_replay
    from shadowcast.settings import load_settings
    from shadowcast.store.config import StoreConfig, open_store
    from shadowcast.store.shared import SharedStore

    s = load_settings(None, environ={})
    replay = s.replay.model_copy(update={"warmup": "1d", "checkpoint_every": "6h"})
    settings = s.model_copy(update={"replay": replay})
    source = _ringnet().small_source()
    store = SharedStore(open_store(StoreConfig(data_dir=tmp_path, path="replay.duckdb")))
    try:
        r = run_replay(settings, source, store, tmp_path / "state", ipfix=False)
        tab = store.read("action_outcomes")
    finally:
        store.close()
    assert r.actuator.applied >= 1
    assert tab.num_rows > 0 and tab.schema == ACTION_OUTCOMES_SCHEMA
    links = r.service.link_names
    cap = source.topology.capacities / 1e6
    t0 = source.time_s(0)
    step = source.step_s
    target = tab.column("time").cast("int64").to_numpy() // 1000
    link = np.array([links.index(x) for x in tab.column("link").to_pylist()])
    t_index = (target - t0) // step
    # the realised load of every row is what the simulated (acting) network carried
    sim = r.state.util_acting[t_index, link] * cap[link]
    np.testing.assert_allclose(tab.column("realised_mbps").to_numpy(), sim, rtol=1e-6, atol=1e-6)
    summary = summarise(tab)
    applied = {d["plan_id"] for d in r.state.actions if d["action"] == "applied"}
    assert {x["plan_id"] for x in summary} <= applied
    assert all(np.isfinite(x["mlu_error"]) for x in summary)
    # the service's forecasts are good on this series: the post-action MLU within 0.3
    fresh = [x for x in summary if not x["superseded"]]
    assert fresh and all(abs(x["mlu_error"]) < 0.3 for x in fresh)
