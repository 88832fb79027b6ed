from __future__ import annotations

from pathlib import Path

import numpy as np

from shadowcast.datasets.synthetic import synthetic_dataset
from shadowcast.replay.ipfix import feed_via_ipfix
from shadowcast.store.duckdb import DuckDBStore


def test_replayed_traffic_crosses_the_collector_intact(tmp_path: Path) -> None:
    syn = synthetic_dataset(weeks=0.05, seed=2)
    store = DuckDBStore(str(tmp_path / "feed.duckdb"))
    try:
        feed = feed_via_ipfix(syn.topology, syn.demands, syn.by_app, store)
        assert store.count("flows") == feed.records_stored == feed.records_sent > 0
    finally:
        store.close()
    assert feed.decode_errors == 0 and feed.stored_share == 1.0
    assert feed.packets_sent * 30 >= feed.records_sent
    # bytes are rounded to whole bytes per record: Mbit/s agree to well under a byte/step
    tol = 8 / (syn.demands.step * 1e6) * 2
    np.testing.assert_allclose(feed.demands.values, syn.demands.values, atol=tol + 1e-4)
    assert sorted(feed.by_app) == sorted(syn.by_app)
    for app, series in syn.by_app.items():
        np.testing.assert_allclose(feed.by_app[app], series, atol=tol + 1e-5)
