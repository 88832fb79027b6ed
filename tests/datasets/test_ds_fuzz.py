"""Property tests: truncated, corrupted or hostile input gives a DataError or a valid result.

Never another exception (issue #11: ``encoding="u-f-8"`` once escaped as ``LookupError``).
Every loader of the datasets stage is covered: SNDlib XML (network and matrices), Topology Zoo
GraphML, node-link JSON, FIGRET-style capacities, long CSV (plain and gzip), tar archives
(gzip and plain) and the independent ``step_totals`` scan.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
from ds_samples import CSV_OK, GRAPHML, link, matrix, sndlib_network
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hostile import EDITS, Edit, mutate, one_clear_line
from shadowcast.datasets import load_demands, load_topology, step_totals
from shadowcast.errors import DataError
from shadowcast.records import DemandSeries, Topology

pytestmark = pytest.mark.fuzz

MATRIX = matrix("20240101-0000", [("A", "B", "1.5"), ("B", "C", "2"), ("C", "A", "0.25")]).encode()
MATRIX2 = matrix("20240101-0005", [("A", "B", "1"), ("C", "B", "4")]).encode()
NETWORK = sndlib_network(link("L1", "A", "B") + link("L2", "B", "A", "7")).encode()
ZOO = GRAPHML.replace("EXTRA", "").encode()
CSV = (CSV_OK + "2024-01-01T00:10:00Z,B,C,3\n").encode()
NODE_LINK = json.dumps(
    {
        "directed": False,
        "graph": {"name": "two"},
        "nodes": [{"id": "A", "lon": 1.5, "lat": 2}, {"id": "B"}],
        "links": [{"source": "A", "target": "B", "capacity": 1e9, "key": "k"}],
    }
).encode()
# FIGRET numbers nodes 0..n-1 in the sorted order of the other file's names.
CAPS = json.dumps(
    {
        "directed": True,
        "nodes": [{"id": 0}, {"id": 1}],
        "links": [
            {"source": 0, "target": 1, "capacity": 2.5e9},
            {"source": 1, "target": 0, "capacity": 2.5e9},
        ],
    }
).encode()
FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _tar(docs: list[tuple[str, bytes]], mode: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:
        for name, data in docs:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


DOCS = [("tm/m-20240101-0000.xml", MATRIX), ("tm/m-20240101-0005.xml", MATRIX2)]
TGZ = _tar(DOCS, "w:gz")
TAR = _tar(DOCS, "w")


def corrupt(data: bytes, cut: int, pos: int, byte: int) -> bytes:
    out = bytearray(data[: max(1, cut % (len(data) + 1))])
    if out:
        out[pos % len(out)] = byte
    return bytes(out)


edits = st.tuples(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 255))


def _check_demands(p: Path) -> None:
    try:
        dem = load_demands(p, step=300)
    except DataError as exc:
        one_clear_line(str(exc), str(p))
    else:
        _valid_demands(dem)


def _valid_demands(dem: DemandSeries) -> None:
    assert dem.values.dtype == np.float32 and np.isfinite(dem.values).all()
    assert (dem.values >= 0).all()


def _check_topology(p: Path, capacities_from: Path | None = None) -> None:
    try:
        topo = load_topology(p, capacities_from=capacities_from)
    except DataError as exc:
        one_clear_line(str(exc), str(capacities_from or p))
    else:
        _valid_topology(topo)


def _valid_topology(topo: Topology) -> None:
    known = set(topo.nodes)
    assert all(lk.src in known and lk.dst in known and lk.capacity > 0 for lk in topo.links)
    assert all(np.isfinite(lk.capacity) for lk in topo.links)


@pytest.mark.parametrize(("name", "doc"), [("m-20240101-0000.xml", MATRIX), ("d.csv", CSV)])
@FUZZ
@given(edit=edits)
def test_demand_files_never_crash(
    tmp_path: Path, name: str, doc: bytes, edit: tuple[int, int, int]
) -> None:
    p = tmp_path / name
    p.write_bytes(corrupt(doc, *edit))
    _check_demands(p)


@pytest.mark.parametrize(("name", "doc"), [("net.xml", NETWORK), ("zoo.graphml", ZOO)])
@FUZZ
@given(edit=edits)
# found by hypothesis on a fresh clone (issue #11): encoding="u-f-8" escaped as LookupError
@example(edit=(10_000, ZOO.index(b"utf-8") + 1, ord("-"))).via("discovered failure")
def test_topology_files_never_crash(
    tmp_path: Path, name: str, doc: bytes, edit: tuple[int, int, int]
) -> None:
    p = tmp_path / name
    p.write_bytes(corrupt(doc, *edit))
    _check_topology(p)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(tmp_path: Path, data: bytes) -> None:
    for name, loader in (("x.csv", load_demands), ("x.json", load_topology)):
        p = tmp_path / name
        p.write_bytes(data)
        try:
            loader(p)
        except DataError as exc:
            one_clear_line(str(exc), str(p))


TOPOLOGIES = [("net.xml", NETWORK), ("zoo.graphml", ZOO), ("t.json", NODE_LINK)]


@pytest.mark.parametrize(("name", "doc"), TOPOLOGIES, ids=[n for n, _ in TOPOLOGIES])
@FUZZ
@given(edits=EDITS)
@example(edits=[("put", ZOO.index(b"utf-8"), 0, b"u-f-8")]).via("discovered failure")
@example(edits=[("put", ZOO.index(b"utf-8"), 0, b"cp932")]).via("discovered failure")
@example(edits=[("ins", 0, 0, b"[" * 1200)]).via("discovered failure")
@example(edits=[("put", NODE_LINK.index(b"1000000000.0"), 0, b"9" * 5000)]).via(
    "discovered failure"
)
def test_topologies_under_hostile_edits(
    tmp_path: Path, name: str, doc: bytes, edits: list[Edit]
) -> None:
    p = tmp_path / name
    p.write_bytes(mutate(doc, edits))
    _check_topology(p)


@FUZZ
@given(edits=EDITS)
@example(edits=[("ins", CAPS.index(b'"source": 0') + 10, 0, b"9" * 5000)]).via("discovered failure")
def test_capacities_file_under_hostile_edits(tmp_path: Path, edits: list[Edit]) -> None:
    net = tmp_path / "net.xml"
    net.write_bytes(NETWORK)
    caps = tmp_path / "caps.json"
    caps.write_bytes(mutate(CAPS, edits))
    _check_topology(net, capacities_from=caps)


DEMANDS = [
    ("m-20240101-0000.xml", MATRIX),
    ("d.csv", CSV),
    ("d.csv.gz", gzip.compress(CSV, mtime=0)),
    ("tm.tar.gz", TGZ),
    ("tm.tar", TAR),
    ("tm.bin", TGZ),  # an archive told by content, not by name
]


@pytest.mark.parametrize(("name", "doc"), DEMANDS, ids=[n for n, _ in DEMANDS])
@FUZZ
@given(edits=EDITS)
@example(edits=[("ins", MATRIX.index(b"?>"), 0, b' encoding="u-f-8"')]).via("discovered failure")
@example(edits=[("ins", MATRIX.index(b"?>"), 0, b' encoding="cp932"')]).via("discovered failure")
@example(edits=[("put", CSV.index(b"1.5"), 0, b"1e39")]).via("discovered failure")
@example(edits=[("cut", 100, 0, b"")]).via("discovered failure")
@example(edits=[("cut", 1, 0, b""), ("put", 0, 0, b"9" * 5000)]).via("discovered failure")
def test_demands_under_hostile_edits(
    tmp_path: Path, name: str, doc: bytes, edits: list[Edit]
) -> None:
    p = tmp_path / name
    p.write_bytes(mutate(doc, edits))
    _check_demands(p)


@pytest.mark.parametrize(("name", "doc"), DEMANDS[:1] + DEMANDS[3:5], ids=["xml", "tgz", "tar"])
@FUZZ
@given(edits=EDITS)
@example(edits=[("put", MATRIX.index(b"1.5"), 0, b"1.\x035")]).via("discovered failure")
@example(edits=[("ins", MATRIX.index(b"1.5"), 0, b"9" * 5000 + b">")]).via("make fuzz")
@example(edits=[("put", MATRIX.index(b"20240101"), 0, b"\xed\xa0\x80")]).via("discovered failure")
def test_step_totals_under_hostile_edits(
    tmp_path: Path, name: str, doc: bytes, edits: list[Edit]
) -> None:
    p = tmp_path / name
    p.write_bytes(mutate(doc, edits))
    try:
        times, sums = step_totals(p)
    except DataError as exc:
        one_clear_line(str(exc), str(p))
    else:
        assert len(times) == len(sums)
