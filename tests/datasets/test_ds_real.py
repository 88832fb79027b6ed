"""Loaders on the real third-party files in shared/data (see SOURCES.md)."""

from __future__ import annotations

import re
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

from shadowcast.datasets import load_demands, load_topology, sndlib, step_totals, totals
from shadowcast.records import DemandSeries

ABILENE_TM = (
    "traffic_matrices/sndlib/directed-abilene-zhang-5min-over-6months-ALL_20040301-20040307.tar.gz"
)
GEANT_TM = (
    "traffic_matrices/sndlib/"
    "directed-geant-uhlig-15min-over-4months-ALL_20050504-1500-20050506-2345.tar.gz"
)
ABILENE_NODES = (
    "ATLAM5 ATLAng CHINng DNVRng HSTNng IPLSng KSCYng LOSAng NYCMng SNVAng STTLng WASHng".split()
)


@pytest.fixture(scope="module")
def abilene(data_dir: Path) -> tuple[DemandSeries, float]:
    """The Abilene week, loaded once against the SNDlib topology, and the seconds it took."""
    topo = load_topology(data_dir / "topologies/sndlib/abilene.xml")
    t0 = time.perf_counter()
    dem = load_demands(data_dir / ABILENE_TM, topology=topo)
    return dem, time.perf_counter() - t0


def test_sndlib_abilene_topology(data_dir: Path) -> None:
    topo = load_topology(data_dir / "topologies/sndlib/abilene.xml")
    assert topo.nodes == tuple(ABILENE_NODES)
    assert len(topo.links) == 30  # 15 undirected links, both directions
    caps = {(lk.src, lk.dst): lk.capacity for lk in topo.links}
    assert caps[("ATLAng", "IPLSng")] == caps[("IPLSng", "ATLAng")] == 2480e6
    assert sorted(set(topo.capacities)) == [2480e6, 9920e6]
    assert (topo.capacities == 9920e6).sum() == 28
    assert topo.coords["STTLng"] == (-122.3, 47.6)


def test_geant_names_from_sndlib_capacities_from_figret(data_dir: Path) -> None:
    """FIGRET numbers GEANT nodes in sorted SNDlib name order; its links match link for link."""
    sndlib_path = data_dir / "topologies/sndlib/geant.xml"
    figret_path = data_dir / "topologies/figret/Data/GEANT/GEANT.json"
    plain = load_topology(sndlib_path)
    assert len(plain.nodes) == 22 and len(plain.links) == 72
    assert sorted(plain.nodes)[0] == "at1.at" and sorted(plain.nodes)[21] == "uk1.uk"
    merged = load_topology(sndlib_path, capacities_from=figret_path)
    assert merged.nodes == plain.nodes and merged.coords == plain.coords
    assert [(lk.src, lk.dst) for lk in merged.links] == [(lk.src, lk.dst) for lk in plain.links]
    caps = merged.capacities
    assert sorted(np.unique(caps)) == [155e6, 2.4e9, 10e9]
    assert [(caps == c).sum() for c in (10e9, 2.4e9, 155e6)] == [32, 32, 8]
    # Independent check of the mapping: FIGRET link i->j is SNDlib link sorted[i]-sorted[j].
    figret = load_topology(figret_path)
    names = sorted(plain.nodes)
    by_pair = {(lk.src, lk.dst): lk.capacity for lk in merged.links}
    for lk in figret.links:
        assert by_pair[(names[int(lk.src)], names[int(lk.dst)])] == lk.capacity
    undirected = {frozenset((names[int(lk.src)], names[int(lk.dst)])) for lk in figret.links}
    assert undirected == {frozenset((lk.src, lk.dst)) for lk in plain.links}
    assert len(undirected) == 36


@pytest.mark.parametrize(
    ("name", "nodes", "links"),
    [("Geant2009", 34, 104), ("Abilene", 11, 28), ("Geant2012", 40, 122)],
)
def test_topology_zoo_graphml(data_dir: Path, name: str, nodes: int, links: int) -> None:
    topo = load_topology(data_dir / f"topologies/topology_zoo/{name}.graphml")
    assert len(topo.nodes) == nodes and len(set(topo.nodes)) == nodes
    assert len(topo.links) == links
    assert (topo.capacities > 0).all()
    assert len(set(topo.link_names())) == len(topo.links)


def test_graphml_capacities_from_linkspeed(data_dir: Path) -> None:
    topo = load_topology(data_dir / "topologies/topology_zoo/Geant2009.graphml")
    assert sorted(np.unique(topo.capacities)) == [45e6, 155e6, 310e6, 2.5e9, 10e9]
    # Abilene (Zoo) has no link speeds: every link gets the documented default.
    zoo = load_topology(
        data_dir / "topologies/topology_zoo/Abilene.graphml", default_capacity_bps=1e9
    )
    assert (zoo.capacities == 1e9).all()
    assert len(zoo.coords) == 11


def test_abilene_week(abilene: tuple[DemandSeries, float]) -> None:
    dem, seconds = abilene
    assert dem.values.shape == (2016, 132) and dem.values.dtype == np.float32
    assert dem.step == 300
    assert dem.times[0] == np.datetime64("2004-03-01T00:00:00")
    assert dem.times[-1] == np.datetime64("2004-03-07T23:55:00")
    assert (np.diff(dem.times) == np.timedelta64(300, "s")).all()
    assert dem.nodes == tuple(ABILENE_NODES)
    assert dem.od_pairs == tuple(sorted(dem.od_pairs))
    assert len(set(dem.od_pairs)) == 132 and all(s != d for s, d in dem.od_pairs)
    tot = totals(dem)
    assert 1823 < tot.min() < 1825 and 6246 < tot.max() < 6248  # SOURCES.md figures
    assert seconds < 30, f"loading the Abilene week took {seconds:.1f} s"


def test_geant_slice(data_dir: Path) -> None:
    dem = load_demands(data_dir / GEANT_TM)
    assert dem.values.shape == (228, 454)
    assert dem.step == 900
    assert len(dem.nodes) == 22
    assert dem.times[0] == np.datetime64("2005-05-04T15:00:00")
    assert (dem.values[:2] == 0).all() and dem.values[2].sum() > 0  # first two are empty
    trimmed = load_demands(data_dir / GEANT_TM, trim_empty=True)
    assert trimmed.values.shape == (226, 454)
    assert trimmed.times[0] == np.datetime64("2005-05-04T15:30:00")
    full = load_demands(data_dir / GEANT_TM, all_pairs=True)
    assert full.values.shape == (228, 462)
    assert np.allclose(totals(full), totals(dem))


def _independent_sums(archive: Path, picks: set[int]) -> dict[np.datetime64, float]:
    """Parse a few members with ElementTree, by position in the archive."""
    out: dict[np.datetime64, float] = {}
    with tarfile.open(archive) as tf:
        members = sorted(m.name for m in tf.getmembers() if m.isfile())
        for i in sorted(picks):
            fh = tf.extractfile(members[i])
            assert fh is not None
            root = ET.fromstring(fh.read())
            ns = "{http://sndlib.zib.de/network}"
            stamp = re.search(r"(\d{8})-(\d{4})\.xml$", members[i])
            assert stamp is not None
            d, hm = stamp.groups()
            t = np.datetime64(f"{d[:4]}-{d[4:6]}-{d[6:]}T{hm[:2]}:{hm[2:]}:00", "s")
            out[t] = sum(float(v.text or "") for v in root.iter(f"{ns}demandValue"))
    return out


@pytest.mark.parametrize(
    ("path", "picks"), [(ABILENE_TM, {0, 1, 777, 2015}), (GEANT_TM, {0, 2, 100, 227})]
)
def test_step_totals_equal_file_sums(
    data_dir: Path, abilene: tuple[DemandSeries, float], path: str, picks: set[int]
) -> None:
    dem = abilene[0] if path == ABILENE_TM else load_demands(data_dir / path)
    expected = _independent_sums(data_dir / path, picks)
    times, sums = step_totals(data_dir / path)
    assert np.array_equal(times, dem.times)
    np.testing.assert_allclose(totals(dem), sums, rtol=1e-6, atol=1e-3)
    for t, total in expected.items():
        (i,) = np.flatnonzero(dem.times == t)
        assert sums[i] == pytest.approx(total, rel=1e-12, abs=1e-9)
        assert float(dem.values[i].astype(np.float64).sum()) == pytest.approx(total, rel=1e-6)


def test_abilene_equals_yin_zhang_realod(
    data_dir: Path, abilene: tuple[DemandSeries, float]
) -> None:
    """SNDlib Abilene = Yin Zhang's X01 realOD (100 bytes / 5 min) x 8/3/10^6 Mbit/s."""
    raw = np.loadtxt(data_dir / "traffic_matrices/yates_abilene/X01-36")
    assert raw.shape == (36, 720)
    real = raw[:, 0::5] * 8 / 3 / 1e6  # [36, 144]; OD index = src*12 + dst, nodes sorted
    assert len(abilene[0].od_pairs) == 12 * 11  # every ordered pair is present
    dem = abilene[0].slice(0, 36)
    assert dem.times[35] == np.datetime64("2004-03-01T02:55:00")
    idx = {n: i for i, n in enumerate(ABILENE_NODES)}
    cols = [idx[s] * 12 + idx[d] for s, d in dem.od_pairs]
    expected = real[:, cols]
    diff = np.abs(dem.values.astype(np.float64) - expected)
    # SNDlib prints 6 decimals (<= 5e-7 off); float32 adds <= 6e-8 relative.
    assert (diff <= 1e-6 + 1e-7 * expected).all(), diff.max()
    assert diff.max() < 1e-5


@pytest.mark.parametrize("path", [ABILENE_TM, GEANT_TM])
def test_fast_reader_matches_tree_reader(data_dir: Path, path: str) -> None:
    docs = list(sndlib.iter_documents(data_dir / path))
    for where, data in docs[:: max(1, len(docs) // 25)]:
        fast, tree = sndlib._fast_matrix(data, where), sndlib._tree_matrix(data, where)
        assert fast is not None, where
        assert (fast.time, fast.nodes, fast.src, fast.dst) == (
            tree.time,
            tree.nodes,
            tree.src,
            tree.dst,
        )
        assert np.array_equal(fast.values, tree.values) and fast.granularity_s == tree.granularity_s
