"""What a replay leaves in the store, and the collector path it takes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pytest

from shadowcast.forecast.stored import read_od_forecast
from shadowcast.replay.driver import run_replay
from shadowcast.replay.source import TrafficSource
from shadowcast.store.config import StoreConfig, open_store
from shadowcast.store.shared import SharedStore


def test_store_holds_every_stage_output(
    settings: Any, source: TrafficSource, tmp_path: Path
) -> None:
    store = SharedStore(open_store(StoreConfig(data_dir=tmp_path, path="r.duckdb")))
    try:
        r = run_replay(settings, source, store, tmp_path / "state", ipfix=False, mode="observe")
        steps, n_od = source.steps, 12  # the ring's 4 routers: 12 ordered pairs
        od = store.read("od_series", where={"app": ""})
        assert od.num_rows == steps * n_od  # every pair, every step, zeros included
        assert store.count("link_series") == steps * len(source.topology.links)
        assert store.count("alerts") == len(r.state.alerts) > 0
        assert store.count("decisions") == r.service.steps - r.service.s.forecast.warmup_steps + 1
        assert store.count("accuracy") > 0 and store.count("forecasts") > 0
        # behaviour series of the profiler, in the same store, per application and site pair
        beh = store.read("behaviour")
        apps = set(beh.filter(pc.equal(beh.column("kind"), "app")).column("app").to_pylist())
        assert apps == {"NetFlix", "RSYNC", "Zoom"}
        stored = read_od_forecast(store)
        fc = stored.forecast
        assert stored.step == source.step_s and fc.mean.shape[0] == n_od
        for lv in (80.0, 95.0):
            assert (fc.lower[lv] <= fc.mean + 1e-9).all()
            assert (fc.mean <= fc.upper[lv] + 1e-9).all()
    finally:
        store.close()


@pytest.mark.integration
def test_traffic_crosses_the_collector_intact(
    settings: Any, source: TrafficSource, tmp_path: Path
) -> None:
    short = TrafficSource(source.topology, source.demands.slice(0, 40),
                          {k: v[:40] for k, v in source.by_kind.items()}, "ring, 10 h")  # fmt: skip
    store = SharedStore(open_store(StoreConfig(data_dir=tmp_path, path="r.duckdb")))
    try:
        r = run_replay(settings, short, store, tmp_path / "state", ipfix=True, mode="observe")
        c = r.collector
        assert c is not None
        assert c["records_stored"] == c["records_sent"] == store.count("flows") > 0
        assert c["decode_errors"] == 0 and c["exporters"] == 4  # one per router
        assert r.state.feed.waits_timed_out == 0
        # what the rollup measured is what the routers exported (to a byte per record)
        od = store.read("od_series", where={"app": ""})
        got = float(np.asarray(od.column("mbps")).sum())
        want = float(short.demands.values.astype(np.float64).sum())
        assert got == pytest.approx(want, rel=1e-6)
    finally:
        store.close()
