"""The feedback loop across a restart: the ledger's pending forecasts, its totals and the
drift/recalibration state come back with the models."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ringnet import stop_after

from shadowcast.errors import ConfigError
from shadowcast.replay.driver import run_replay
from shadowcast.replay.source import TrafficSource
from shadowcast.service.loop import FEEDBACK_FILE
from shadowcast.store.config import StoreConfig, open_store
from shadowcast.store.shared import SharedStore


def _run(settings: Any, source: TrafficSource, tmp: Path, **kw: Any):  # type: ignore[no-untyped-def]
    store = SharedStore(open_store(StoreConfig(data_dir=tmp, path="replay.duckdb")))
    try:
        r = run_replay(settings, source, store, tmp / "state", ipfix=False, mode="observe", **kw)
        return r, store.count("accuracy_groups"), store.count("drift_events")
    finally:
        store.close()


def test_restart_keeps_the_ledger_and_the_feedback_state(
    settings: Any, source: TrafficSource, tmp_path: Path
) -> None:
    stop, progress = stop_after(150)  # past the warm-up (96 steps), between checkpoints

    part, groups, _ = _run(settings, source, tmp_path, progress=progress, stop=stop)
    assert part.interrupted
    assert groups > 0  # rolling accuracy per class, decile and link reached the store
    ledger = part.service.s.ledger
    assert ledger.pending > 0
    scored = {k: v.n for k, v in ledger.scores.items()}
    assert (tmp_path / "state" / FEEDBACK_FILE).is_file()
    version = part.service.s.forecast.version
    import pickle

    saved = pickle.loads((tmp_path / "state" / FEEDBACK_FILE).read_bytes())["link_bounds"]
    assert saved["logf"] and any(v != 0.0 for v in saved["logf"].values())

    rest, _, drifts = _run(settings, source, tmp_path, resume=True)
    assert rest.service.restored["feedback_loaded"] is True
    assert rest.service.restored["models_loaded"] is True
    assert rest.service.s.forecast.version >= version
    # the link bounds' calibration carried on from the saved factors, not from 1
    fresh = rest.service.s.linkmap.__class__(
        rest.service.s.linkmap.capacity, [], rest.service.s.linkmap.lags, 1
    )
    assert fresh.load_state(saved) is False  # saved at another step: not applied
    after = rest.service.s.ledger.scores
    # the totals carried on from where they stopped, not from zero
    assert all(after[k].n > n for k, n in scored.items())
    fb = rest.service.s.feedback
    assert fb is not None and fb.accuracy.sums
    assert drifts == 0  # a stationary backbone: no drift, before or after the restart


def test_challengers_forecast_in_shadow_and_every_model_event_is_stored(
    settings: Any, source: TrafficSource, tmp_path: Path
) -> None:
    fb = settings.feedback.model_copy(
        update={"challengers": ["seasonal_naive"], "promote_window": "6h"}
    )
    s = settings.model_copy(update={"feedback": fb})
    store = SharedStore(open_store(StoreConfig(data_dir=tmp_path, path="r.duckdb")))
    try:
        r = run_replay(s, source, store, tmp_path / "state", ipfix=False, mode="observe")
        models = set(store.read("accuracy").column("model").to_pylist())
        events = store.read("model_events").to_pylist()
    finally:
        store.close()
    assert {"seasonal_naive", r.service.s.forecast.configured} <= models
    assert events and events[0]["event"] == "fit"
    for e in events:
        if e["event"] == "promote":  # promoted on its figures only
            assert e["challenger_score"] < e["champion_score"]


def test_an_unknown_challenger_is_refused_naming_the_setting(
    settings: Any, source: TrafficSource, tmp_path: Path
) -> None:
    fb = settings.feedback.model_copy(update={"challengers": ["nope"]})
    s = settings.model_copy(update={"feedback": fb})
    store = SharedStore(open_store(StoreConfig(data_dir=tmp_path, path="r.duckdb")))
    try:
        with pytest.raises(ConfigError, match="feedback.challengers: unknown model 'nope'"):
            run_replay(s, source, store, tmp_path / "state", ipfix=False, mode="observe")
    finally:
        store.close()
