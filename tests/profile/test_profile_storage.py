"""Series storage tiers: write, merged read, retention; and the pipeline end to end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow.compute as pc
import pytest
from profile_flowgen import make_flows

from shadowcast.profile.config import ProfileConfig
from shadowcast.profile.pipeline import ProfilePipeline
from shadowcast.store.config import StoreConfig, open_store


@pytest.mark.parametrize("backend", ["duckdb", "memory"])
def test_pipeline_store_read_back_and_retain(tmp_path: Path, backend: str) -> None:
    cfg = ProfileConfig(use_model=False)
    store = open_store(StoreConfig(backend=backend, data_dir=tmp_path, path="p.duckdb"))
    pipe = ProfilePipeline(cfg, store=store)
    a = make_flows(3000, seed=1, span_s=1800)
    b = make_flows(3000, seed=2, span_s=1800)  # same keys and minutes: rows must merge
    want = 0
    for t in (a, b):
        res = pipe.process(t)
        want += int(pipe.builder.estimated_bytes(res.flows).sum())
        assert res.flows.num_rows == t.num_rows
    assert pipe.store is not None
    for tier in ("1m", "5m", "1h"):
        s = pipe.store.read(tier)
        app = s.filter(pc.equal(s.column("kind"), "app"))
        assert int(pc.sum(app.column("bytes")).as_py()) == want
        keys = app.select(["time", "app", "category", "src", "dst"]).to_pylist()
        assert len(keys) == len({tuple(k.values()) for k in keys})  # merged, no duplicates
    start = datetime.fromtimestamp(1_700_000_000, tz=UTC)
    part = pipe.store.read("1m", start, start + timedelta(minutes=10), where={"app": "Zoom"})
    assert 0 < part.num_rows and set(part.column("app").to_pylist()) == {"Zoom"}
    assert pipe.store.newest("1h") == datetime.fromtimestamp(1_700_002_800, tz=UTC)  # 23:00
    one_minute = store.count("behaviour")
    deleted = pipe.store.retain(start + timedelta(days=30))  # past 1m's 7 days, not 1h's
    assert deleted["1m"] > 0 and deleted["1h"] == 0 and deleted["5m"] == 0
    assert pipe.store.read("1m").num_rows == 0 and pipe.store.read("1h").num_rows > 0
    assert store.count("behaviour") == one_minute - deleted["1m"]
    store.close()
