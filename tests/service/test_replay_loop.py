"""The living service driven by a replay: the loop closes, and a stopped run resumes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pytest
from ringnet import stop_after

from shadowcast.replay.driver import run_replay
from shadowcast.replay.source import TrafficSource
from shadowcast.store.config import StoreConfig, open_store
from shadowcast.store.shared import SharedStore


def run(settings: Any, source: TrafficSource, tmp: Path, **kw: Any):  # type: ignore[no-untyped-def]
    store = SharedStore(open_store(StoreConfig(data_dir=tmp, path="replay.duckdb")))
    try:
        return run_replay(settings, source, store, tmp / "state", ipfix=False, **kw)
    finally:
        store.close()


def test_acting_halves_the_overload_and_loses_nothing(
    settings: Any, source: TrafficSource, tmp_path: Path
) -> None:
    r = run(settings, source, tmp_path)
    base, act = r.state.baseline.totals, r.state.acting.totals
    assert base.overload_link_minutes_100 > 0
    assert act.overload_link_minutes_100 <= 0.5 * base.overload_link_minutes_100
    assert act.lost_mbit == 0.0
    assert r.actuator.applied >= 1 and r.actuator.path_switches >= 1
    # every applied plan is in the store with its reason, as is every "nothing to do"
    con = duckdb.connect(str(tmp_path / "replay.duckdb"), read_only=True)
    actions = dict(con.sql("select action, count(*) from decisions group by 1").fetchall())
    assert actions.get("applied", 0) == r.actuator.applied
    assert actions.get("none", 0) > 0
    reasons = [
        x[0] for x in con.sql("select reason from decisions where action='applied'").fetchall()
    ]
    assert all("plan" in x and "->" in x for x in reasons)
    # what the service measured is what the acting network carried
    stored = con.execute("select sum(mbps) from od_series where app = ''").fetchone()[0]
    con.close()
    assert stored == pytest.approx(act.carried_mbit / source.step_s, rel=1e-6)


def test_observe_mode_changes_nothing(settings: Any, source: TrafficSource, tmp_path: Path) -> None:
    r = run(settings, source, tmp_path, mode="observe")
    assert r.actuator.applied == 0
    assert r.state.acting.totals.overload_link_minutes_100 == pytest.approx(
        r.state.baseline.totals.overload_link_minutes_100
    )
    assert r.state.alerts, "the service still alerts in observe mode"


def test_stop_then_resume_continues_from_the_store(
    settings: Any, source: TrafficSource, tmp_path: Path
) -> None:
    whole = run(settings, source, tmp_path / "whole")
    stop, progress = stop_after(150)  # past the warm-up (96 steps), between checkpoints

    part = run(settings, source, tmp_path / "split", progress=progress, stop=stop)
    assert part.interrupted and part.state.next_t == 150
    version = part.service.s.forecast.version
    rest = run(settings, source, tmp_path / "split", resume=True)
    assert not rest.interrupted and rest.state.next_t == source.steps
    # the models were loaded, not refitted from scratch on resume
    assert rest.service.s.forecast.version >= version
    assert rest.service.s.forecast.fitted_at_s is not None
    # the resumed run measured exactly what the uninterrupted one did
    a = duckdb.connect(str(tmp_path / "whole" / "replay.duckdb"), read_only=True)
    b = duckdb.connect(str(tmp_path / "split" / "replay.duckdb"), read_only=True)
    q = "select time, src, dst, app, mbps from od_series order by all"
    wa, wb = a.sql(q).fetchall(), b.sql(q).fetchall()
    a.close()
    b.close()
    assert len(wa) == len(wb)
    assert wa == wb
    np.testing.assert_allclose(
        rest.state.util_acting, whole.state.util_acting, rtol=1e-9, equal_nan=True
    )
