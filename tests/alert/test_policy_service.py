"""The probability policy in the living service: p tuned as it runs, shown in health,
kept across a restart."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from shadowcast.alert.policy import ProbabilityRule
from shadowcast.records import DemandSeries, Link, Topology
from shadowcast.replay.driver import run_replay
from shadowcast.replay.source import TrafficSource
from shadowcast.settings import load_settings
from shadowcast.store.config import StoreConfig, open_store
from shadowcast.store.shared import SharedStore

STEP = 900


def _source(days: int = 3) -> TrafficSource:
    """A-B (50 Mbit/s) overloads every afternoon; the way round has room."""
    links = []
    for a, b, cap in (("A", "B", 50e6), ("A", "C", 400e6), ("C", "B", 400e6)):
        links += [Link(a, b, cap), Link(b, a, cap)]
    topo = Topology("tri", ("A", "B", "C"), tuple(links))
    pairs = tuple((a, b) for a in topo.nodes for b in topo.nodes if a != b)
    T = days * 96
    times = np.datetime64("2026-03-02T00:00:00", "s") + np.arange(T) * np.timedelta64(STEP, "s")
    hour = (np.arange(T) % 96) / 4.0
    shape = 0.35 + 0.65 * np.exp(-(((hour - 15.0) / 3.0) ** 2))
    base = np.full(len(pairs), 4.0)
    base[pairs.index(("A", "B"))] = 55.0
    rng = np.random.default_rng(0)
    total = shape[:, None] * base * (1 + 0.05 * rng.standard_normal((T, len(pairs))))
    total = np.clip(total, 0, None).astype(np.float32)
    dem = DemandSeries(times, pairs, total, STEP, topo.nodes, "tri")
    return TrafficSource(topo, dem, {"video": total}, "tri")


def _settings() -> Any:
    s = load_settings(None, environ={})
    replay = s.replay.model_copy(update={"warmup": "1d", "checkpoint_every": "6h"})
    alert = s.alert.model_copy(
        update={"policy": "probability", "tune_every": "6h", "tune_min_alerts": 1,
                "link_classes": {"A->B": "thin", "B->A": "thin"}}
    )  # fmt: skip
    return s.model_copy(update={"replay": replay, "alert": alert})


def _run(tmp: Path, **kw: Any) -> Any:
    store = SharedStore(open_store(StoreConfig(data_dir=tmp, path="replay.duckdb")))
    try:
        return run_replay(_settings(), _source(), store, tmp / "state", ipfix=False,
                          mode="observe", **kw)  # fmt: skip
    finally:
        store.close()


def test_the_service_tunes_p_shows_it_and_keeps_it_across_a_restart(tmp_path: Path) -> None:
    stop = threading.Event()
    seen = [0]

    def progress(n: int) -> None:
        seen[0] += n
        if seen[0] == 200:  # past the warm-up (96 steps) and a few tunings
            stop.set()

    part = _run(tmp_path, progress=progress, stop=stop)
    assert part.interrupted
    svc = part.service
    rule, tuner = svc.s.rule, svc.s.tuner
    assert isinstance(rule, ProbabilityRule) and tuner is not None
    assert rule.classes[:2] == ["thin", "thin"] and rule.classes[2] == "<=1G"
    assert tuner.tuned > 0 and "thin" in tuner.chosen
    assert rule.p["thin"] == tuner.chosen["thin"]
    health = svc.health()["stages"]["alert"]
    assert health["policy"] == "probability" and health["p"]["thin"] == tuner.chosen["thin"]
    assert health["tuner"]["curves"]["thin"] and health["tuner"]["p"] == tuner.chosen
    alerts = [a for a in part.state.alerts if a.name == "LinkCapacityPredicted"]
    assert alerts and all("P(>= 90% within 1h)" in a.message for a in alerts)
    assert {a.subject for a in alerts} <= {"A->B", "B->A"}
    kept = len(tuner.signal)

    rest = _run(tmp_path, resume=True)
    again = rest.service.s.tuner
    assert again is not None and again.tuned > tuner.tuned  # tuned on, not from scratch
    assert len(again.signal) > kept  # the history carried over the restart
