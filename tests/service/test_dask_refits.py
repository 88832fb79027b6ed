"""``forecast.dask_scheduler`` reaches the living service: its fits and refits run on the
scheduler's workers (one model per chunk of series) and forecast exactly what the same
chunked models fitted in the service's own process forecast."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ringnet import small_source

from shadowcast.forecast.chunked import ChunkedForecaster
from shadowcast.replay.driver import run_replay
from shadowcast.replay.source import TrafficSource
from shadowcast.store.config import StoreConfig, open_store
from shadowcast.store.shared import SharedStore

distributed = pytest.importorskip("dask.distributed")
pytestmark = pytest.mark.slow


def _run(settings: Any, source: TrafficSource, tmp: Path, **forecast: Any) -> Any:
    fc = settings.forecast.model_copy(update={"model": "theta", "chunk_series": 7, **forecast})
    svc = settings.service.model_copy(update={"retrain_every": "6h"})
    s = settings.model_copy(update={"forecast": fc, "service": svc})
    store = SharedStore(open_store(StoreConfig(data_dir=tmp, path="replay.duckdb")))
    try:
        return run_replay(s, source, store, tmp / "state", ipfix=False, mode="observe")
    finally:
        store.close()


def test_service_refits_on_a_dask_scheduler(settings: Any, tmp_path: Path) -> None:
    source = small_source(days=2)  # warm-up 1 d, then a refit every 6 h
    local = _run(settings, source, tmp_path / "local")
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        remote = _run(settings, source, tmp_path / "dask", dask_scheduler=cluster.scheduler_address)
    for r in (local, remote):
        model = r.service.s.forecast.models["stacked"]
        assert isinstance(model, ChunkedForecaster) and len(model.parts) > 1
    assert remote.service.s.forecast.models["stacked"].scheduler is not None
    assert remote.service.s.forecast.version == local.service.s.forecast.version >= 2
    a, b = local.state.pred_util, remote.state.pred_util
    for h in a:
        np.testing.assert_array_equal(a[h], b[h])
