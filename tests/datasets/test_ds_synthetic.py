"""The synthetic generator: deterministic, apps sum to the total, profiles, sized to alert."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from shadowcast.datasets import load_topology
from shadowcast.datasets.synthetic import APPS, SyntheticDataset, synthetic_dataset
from shadowcast.network.routing import link_loads, routing_matrix
from shadowcast.records import CATEGORIES


@pytest.fixture(scope="module")
def week() -> SyntheticDataset:
    return synthetic_dataset(weeks=1, step_s=300, seed=0)


def test_shape_and_metadata(week: SyntheticDataset) -> None:
    dem = week.demands
    assert week.topology.name == "Geant2001" and len(week.topology.nodes) == 27
    assert dem.values.shape == (2016, 27 * 26) and dem.values.dtype == np.float32
    assert dem.step == 300 and dem.times[0] == np.datetime64("2024-01-01T00:00:00")
    assert (np.diff(dem.times) == np.timedelta64(300, "s")).all()
    assert dem.od_pairs == tuple(sorted(dem.od_pairs))
    assert set(dem.nodes) == set(week.topology.nodes)
    assert "synthetic" in dem.source
    assert (dem.values > 0).all() and np.isfinite(dem.values).all()


def test_deterministic_and_seeded() -> None:
    a = synthetic_dataset(weeks=0.5, step_s=900, seed=7)
    b = synthetic_dataset(weeks=0.5, step_s=900, seed=7)
    c = synthetic_dataset(weeks=0.5, step_s=900, seed=8)
    assert np.array_equal(a.demands.values, b.demands.values)
    for app in APPS:
        assert np.array_equal(a.by_app[app], b.by_app[app])
    assert not np.array_equal(a.demands.values, c.demands.values)
    assert a.demands.steps == 336


def test_apps_sum_to_total(week: SyntheticDataset) -> None:
    assert tuple(week.by_app) == APPS and set(APPS) <= set(CATEGORIES)
    stacked = np.sum([week.by_app[a].astype(np.float64) for a in APPS], axis=0)
    np.testing.assert_allclose(stacked, week.demands.values, rtol=1e-6)
    for app in APPS:
        assert week.by_app[app].shape == week.demands.values.shape
        assert week.by_app[app].dtype == np.float32


def _by_hour(series: np.ndarray, times: np.ndarray, weekdays: bool = True) -> np.ndarray:
    hours = (times.astype("datetime64[h]").astype(np.int64)) % 24
    day = ((times.astype("datetime64[D]").astype(np.int64)) + 3) % 7  # 0 = Monday
    sel = day < 5 if weekdays else day >= 5
    total = series.astype(np.float64).sum(axis=1)
    return np.array([total[sel & (hours == h)].mean() for h in range(24)])


def test_daily_and_weekly_profiles(week: SyntheticDataset) -> None:
    t = week.demands.times
    peak = {app: int(np.argmax(_by_hour(week.by_app[app], t))) for app in APPS}
    # Europe: local time is UTC+0..2, so peaks sit at these UTC hours.
    assert 17 <= peak["video"] <= 22, peak
    assert 22 <= peak["bulk"] or peak["bulk"] <= 4, peak
    assert 6 <= peak["voip"] <= 15, peak
    assert 7 <= peak["web"] <= 17, peak
    assert 17 <= peak["interactive"] <= 23, peak
    weekday = {a: _by_hour(week.by_app[a], t).mean() for a in APPS}
    weekend = {a: _by_hour(week.by_app[a], t, weekdays=False).mean() for a in APPS}
    assert weekend["voip"] < 0.5 * weekday["voip"]
    assert weekend["video"] > weekday["video"]
    # Growth: the last day carries more than the first.
    daily = week.demands.values.astype(np.float64).reshape(7, 288, -1).sum(axis=(1, 2))
    assert daily[4] > daily[0] and daily[6] > daily[5]


def test_sized_to_raise_alerts(week: SyntheticDataset) -> None:
    topo, dem = week.topology, week.demands
    util = link_loads(routing_matrix(topo, dem.od_pairs), dem.values) / (topo.capacities / 1e6)
    peak = util.max(axis=0)
    assert 3 <= (peak > 0.9).sum() <= 10, np.sort(peak)[::-1][:12]
    assert np.median(peak) < 0.4
    assert np.sort(peak)[::-1][2] == pytest.approx(0.95, rel=1e-3)


def test_other_topology_and_scale(data_dir: Path) -> None:
    topo = load_topology(data_dir / "topologies/sndlib/abilene.xml")
    one = synthetic_dataset(weeks=1 / 7, step_s=900, topology=topo, seed=3)
    two = synthetic_dataset(weeks=1 / 7, step_s=900, topology=topo, seed=3, scale=2.0)
    assert one.demands.values.shape == (96, 132)
    np.testing.assert_allclose(two.demands.values, 2 * one.demands.values, rtol=1e-5)


def test_vendored_graph_is_attributed() -> None:
    data = resources.files("shadowcast.datasets") / "data"
    notice = (data / "NOTICE").read_text()
    assert "CC BY 4.0" in notice and "Knight" in notice and "mroughan/InternetTopologyZoo" in notice
    assert "Attribution 4.0" in (data / "LICENSE-CC-BY-4.0").read_text()
