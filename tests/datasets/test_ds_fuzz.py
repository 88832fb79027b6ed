"""Property tests: truncated or corrupted input gives a DataError or a valid result."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from ds_samples import CSV_OK, GRAPHML, link, matrix, sndlib_network
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowcast.datasets import load_demands, load_topology
from shadowcast.errors import DataError

MATRIX = matrix("20240101-0000", [("A", "B", "1.5"), ("B", "C", "2"), ("C", "A", "0.25")]).encode()
NETWORK = sndlib_network(link("L1", "A", "B") + link("L2", "B", "A", "7")).encode()
ZOO = GRAPHML.replace("EXTRA", "").encode()
CSV = (CSV_OK + "2024-01-01T00:10:00Z,B,C,3\n").encode()
FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def corrupt(data: bytes, cut: int, pos: int, byte: int) -> bytes:
    out = bytearray(data[: max(1, cut % (len(data) + 1))])
    if out:
        out[pos % len(out)] = byte
    return bytes(out)


edits = st.tuples(st.integers(0, 10_000), st.integers(0, 10_000), st.integers(0, 255))


@pytest.mark.parametrize(("name", "doc"), [("m-20240101-0000.xml", MATRIX), ("d.csv", CSV)])
@FUZZ
@given(edit=edits)
def test_demand_files_never_crash(
    tmp_path: Path, name: str, doc: bytes, edit: tuple[int, int, int]
) -> None:
    p = tmp_path / name
    p.write_bytes(corrupt(doc, *edit))
    try:
        dem = load_demands(p, step=300)
    except DataError as exc:
        assert str(p) in str(exc)
    else:
        assert dem.values.dtype == np.float32 and np.isfinite(dem.values).all()
        assert (dem.values >= 0).all()


@pytest.mark.parametrize(("name", "doc"), [("net.xml", NETWORK), ("zoo.graphml", ZOO)])
@FUZZ
@given(edit=edits)
def test_topology_files_never_crash(
    tmp_path: Path, name: str, doc: bytes, edit: tuple[int, int, int]
) -> None:
    p = tmp_path / name
    p.write_bytes(corrupt(doc, *edit))
    try:
        topo = load_topology(p)
    except DataError as exc:
        assert str(p) in str(exc)
    else:
        known = set(topo.nodes)
        assert all(lk.src in known and lk.dst in known and lk.capacity > 0 for lk in topo.links)


@FUZZ
@given(data=st.binary(max_size=300))
def test_random_bytes(tmp_path: Path, data: bytes) -> None:
    for name, loader in (("x.csv", load_demands), ("x.json", load_topology)):
        p = tmp_path / name
        p.write_bytes(data)
        try:
            loader(p)
        except DataError as exc:
            assert str(p) in str(exc)
