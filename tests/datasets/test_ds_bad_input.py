"""Bad input: each gives one clear TopologyError/DemandError naming the file (and line/field)."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
from ds_samples import CSV_OK, GRAPHML, link, matrix, sndlib_network

from shadowcast.datasets import load_demands, load_topology, write_csv
from shadowcast.errors import DataError, DemandError, TopologyError
from shadowcast.records import Link, Topology


def write_folder(tmp: Path, docs: dict[str, str], name: str = "tm") -> Path:
    folder = tmp / name
    folder.mkdir()
    for name, text in docs.items():
        (folder / name).write_text(text)
    return folder


TOPO = Topology(
    name="abc",
    nodes=("A", "B", "C"),
    links=(Link("A", "B", 1e9), Link("B", "A", 1e9), Link("B", "C", 1e9), Link("C", "B", 1e9)),
)


def test_folder_and_archive_agree(tmp_path: Path) -> None:
    docs = {
        f"demandMatrix-x-5min-20240101-00{m:02d}.xml": matrix(
            f"20240101-00{m:02d}", [("A", "B", str(1.5 + m)), ("C", "A", "2")]
        )
        for m in (10, 0, 5)  # written out of order on purpose
    }
    folder = write_folder(tmp_path, docs)
    archive = tmp_path / "tm.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name in reversed(sorted(docs)):
            tf.add(folder / name, arcname=f"tm/{name}")
    a = load_demands(folder, topology=TOPO)
    b = load_demands(archive, topology=TOPO)
    for dem in (a, b):
        assert dem.step == 300 and dem.steps == 3
        assert dem.od_pairs == (("A", "B"), ("C", "A"))
        np.testing.assert_array_equal(dem.values[:, 0], [1.5, 6.5, 11.5])
        assert dem.times[0] == np.datetime64("2024-01-01T00:00:00")


def test_truncated_xml(tmp_path: Path) -> None:
    text = matrix("20240101-0000", [("A", "B", "1")])
    folder = write_folder(tmp_path, {"m-20240101-0000.xml": text[: len(text) // 2]})
    with pytest.raises(DemandError, match=r"m-20240101-0000\.xml:\d+:\d+: malformed XML"):
        load_demands(folder)


def test_garbled_xml_in_archive(tmp_path: Path) -> None:
    good = matrix("20240101-0000", [("A", "B", "1")]).encode()
    bad = matrix("20240101-0005", [("A", "B", "1")]).replace("</source>", "</sourc>").encode()
    archive = tmp_path / "tm.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for name, data in (("tm/a-20240101-0000.xml", good), ("tm/a-20240101-0005.xml", bad)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with pytest.raises(
        DemandError, match=r"tm\.tar\.gz!tm/a-20240101-0005\.xml:\d+:\d+: malformed"
    ):
        load_demands(archive)


def test_truncated_archive(tmp_path: Path) -> None:
    docs = {f"m-20240101-00{m:02d}.xml": matrix(f"20240101-00{m:02d}", []) for m in (0, 5)}
    folder = write_folder(tmp_path, docs)
    archive = tmp_path / "tm.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(folder, arcname="tm")
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(DemandError, match=r"tm\.tar\.gz"):
        load_demands(archive)


def test_unknown_node_in_demand_file(tmp_path: Path) -> None:
    docs = {"m-20240101-0000.xml": matrix("20240101-0000", [("A", "Z", "1")], nodes="A B C Z")}
    folder = write_folder(tmp_path, docs)
    with pytest.raises(DemandError, match=r"m-20240101-0000\.xml.*unknown node 'Z'.*'abc'"):
        load_demands(folder, topology=TOPO)
    # A demand naming a node the file itself never declared.
    docs2 = {"m-20240101-0000.xml": matrix("20240101-0000", [("A", "Q", "1")])}
    with pytest.raises(
        DemandError, match=r"m-20240101-0000\.xml: demand A->Q .*undeclared node 'Q'"
    ):
        load_demands(write_folder(tmp_path, docs2, "other"))


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "abc"])
def test_bad_demand_value(tmp_path: Path, value: str) -> None:
    docs = {"m-20240101-0000.xml": matrix("20240101-0000", [("A", "B", value)])}
    with pytest.raises(DemandError, match=rf"m-20240101-0000\.xml: demand A->B: value '{value}'"):
        load_demands(write_folder(tmp_path, docs))


def test_duplicate_and_irregular_times(tmp_path: Path) -> None:
    dup = {
        "a-20240101-0000.xml": matrix("20240101-0000", [("A", "B", "1")]),
        "b-20240101-0000.xml": matrix("20240101-0000", [("A", "B", "2")]),
    }
    with pytest.raises(DemandError, match=r"duplicate time stamp 2024-01-01T00:00:00"):
        load_demands(write_folder(tmp_path, dup, "dup"))
    gap = {
        f"m-20240101-00{m:02d}.xml": matrix(f"20240101-00{m:02d}", [("A", "B", "1")])
        for m in (0, 5, 15)
    }
    folder = write_folder(tmp_path, gap, "gap")
    with pytest.raises(
        DemandError, match=r"gap or irregular step at 2024-01-01T00:05:00 -> .*00:15:00"
    ):
        load_demands(folder)
    filled = load_demands(folder, fill_gaps=True)
    assert filled.steps == 4 and filled.values[2].sum() == 0 and filled.values[3, 0] == 1


def test_csv_roundtrip(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text(CSV_OK + "2024-01-01T01:05:00+01:00,B,C,3\n")
    dem = load_demands(p, topology=TOPO)
    assert dem.step == 300 and dem.od_pairs == (("A", "B"), ("B", "C"))
    np.testing.assert_array_equal(dem.values, [[1.5, 0], [2, 3]])
    back = load_demands(write_csv(dem, tmp_path / "out.csv"))
    np.testing.assert_array_equal(back.values, dem.values)
    assert back.od_pairs == dem.od_pairs and np.array_equal(back.times, dem.times)


@pytest.mark.parametrize(
    ("body", "pattern"),
    [
        ("2024-01-01T00:10:00Z,A", r"d\.csv:4: field 'dst' is empty \(truncated"),
        ("2024-01-01T00:10:00Z,A,B,1,9,9", r"d\.csv: malformed CSV .*line 4"),
        ("2024-01-01T00:10:00Z,A,B,-2", r"d\.csv:4: field 'value' = '-2'"),
        ("2024-01-01T00:10:00Z,A,B,NaN", r"d\.csv:4: field 'value' = 'NaN'"),
        ("yesterday,A,B,1", r"d\.csv:4: field 'time' = 'yesterday' is not ISO-8601"),
        ("2024-01-01T00:10:00Z,A,Z,1", r"d\.csv:4: unknown node 'Z'"),
        ("2024-01-01T00:05:00Z,A,B,7", r"d\.csv:4: duplicate demand .* as .*d\.csv:3"),
        ("2024-01-01T00:07:00Z,A,B,7", r"d\.csv: gap or irregular step"),
        ("2024-01-01T00:10:00Z,,B,1", r"d\.csv:4: field 'src' is empty"),
    ],
)
def test_bad_csv(tmp_path: Path, body: str, pattern: str) -> None:
    p = tmp_path / "d.csv"
    p.write_text(CSV_OK + body + "\n")
    with pytest.raises(DemandError, match=pattern):
        load_demands(p, topology=TOPO)


def test_csv_header_and_empty(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("when,src,dst,value\n2024-01-01T00:00:00Z,A,B,1\n")
    with pytest.raises(DemandError, match=r"d\.csv:1: missing column\(s\) time"):
        load_demands(p)
    p.write_text("")
    with pytest.raises(DemandError, match=r"d\.csv: empty CSV"):
        load_demands(p)
    p.write_bytes(b"time,src,dst,value\n\xff\xfe,A,B,1\n")
    with pytest.raises(DemandError, match=r"d\.csv"):
        load_demands(p)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DemandError, match="nope.csv: no such file"):
        load_demands(tmp_path / "nope.csv")
    with pytest.raises(TopologyError, match="nope.xml: cannot read"):
        load_topology(tmp_path / "nope.xml")


def test_sndlib_parallel_links_and_default(tmp_path: Path) -> None:
    p = tmp_path / "net.xml"
    p.write_text(
        sndlib_network(
            link("L1", "A", "B")
            + link("L2", "A", "B", "40")
            + '<link id="L3"><source>B</source><target>A</target></link>'
        )
    )
    topo = load_topology(p, default_capacity_bps=7e9)
    ab = [lk for lk in topo.links if (lk.src, lk.dst) == ("A", "B")]
    assert sorted(lk.capacity for lk in ab) == [40e6, 100e6, 7e9]
    assert len({lk.key for lk in ab}) == 3
    assert len(topo.links) == 6 and len(set(topo.link_names())) == 6


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            sndlib_network(link("L1", "A", "X")),
            r"net\.xml: link 'L1' refers to undeclared node 'X' \(dangling link\)",
        ),
        (
            sndlib_network(link("L1", "A", "B", "-5")),
            r"net\.xml: link 'L1': capacity '-5' is not > 0",
        ),
        (sndlib_network(link("L1", "A", "B", "NaN")), r"net\.xml: link 'L1': capacity 'NaN'"),
        (sndlib_network(link("L1", "A", "B"))[:300], r"net\.xml:\d+:\d+: malformed XML"),
        ("hello", r"net\.xml: unrecognised topology format"),
        ("<foo/>", r"net\.xml: XML root <foo>"),
    ],
)
def test_bad_sndlib_topology(tmp_path: Path, text: str, pattern: str) -> None:
    p = tmp_path / "net.xml"
    p.write_text(text)
    with pytest.raises(TopologyError, match=pattern):
        load_topology(p)


def test_graphml_rules(tmp_path: Path) -> None:
    p = tmp_path / "zoo.graphml"
    p.write_text(GRAPHML.replace("EXTRA", ""))
    topo = load_topology(p, default_capacity_bps=3e9)
    assert topo.nodes == ("Oslo-0", "Bergen", "Oslo-2")
    assert topo.coords == {"Oslo-0": (10.7, 59.9)}
    caps = sorted((lk.src, lk.dst, lk.key, lk.capacity) for lk in topo.links)
    assert caps == [
        ("Bergen", "Oslo-0", "0", 2.5e9),
        ("Bergen", "Oslo-0", "1", 1e9),
        ("Bergen", "Oslo-2", "", 155e6),
        ("Oslo-0", "Bergen", "0", 2.5e9),
        ("Oslo-0", "Bergen", "1", 1e9),
        ("Oslo-0", "Oslo-2", "", 3e9),
        ("Oslo-2", "Bergen", "", 155e6),
        ("Oslo-2", "Oslo-0", "", 3e9),
    ]


def test_graphml_dangling_and_truncated(tmp_path: Path) -> None:
    p = tmp_path / "zoo.graphml"
    p.write_text(GRAPHML.replace("EXTRA", '<edge source="0" target="9"></edge>'))
    with pytest.raises(
        TopologyError, match=r"zoo\.graphml: edge #4 \(0->9\) refers to undeclared node '9'"
    ):
        load_topology(p)
    p.write_text(GRAPHML[:700])
    with pytest.raises(TopologyError, match=r"zoo\.graphml:\d+:\d+: malformed XML"):
        load_topology(p)


TWO = '{"nodes": [{"id": 0}, {"id": 1}], "links": '


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            '{"nodes": [{"id": 0}], "links": [{"source": 0, "target": 5}]}',
            r"g\.json: links\[0\] \(0->5\) refers to undeclared node '5'",
        ),
        (
            TWO + '[{"source": 0, "target": 1, "capacity": -1}]}',
            r"g\.json: links\[0\]\.capacity = -1",
        ),
        (
            TWO + '[{"source": 0, "target": 1, "capacity": "x"}]}',
            r"g\.json: links\[0\]\.capacity = 'x' is not a number",
        ),
        ('{"nodes": [{"id": 0}], "links": [', r"g\.json:1:\d+: malformed JSON"),
        ('{"nodes": [{"name": 0}], "links": []}', r"g\.json: nodes\[0\] has no 'id'"),
        ('{"links": []}', r"g\.json: node-link JSON needs an object with a 'nodes' list"),
    ],
)
def test_bad_node_link_json(tmp_path: Path, text: str, pattern: str) -> None:
    p = tmp_path / "g.json"
    p.write_text(text)
    with pytest.raises(TopologyError, match=pattern):
        load_topology(p)


def test_node_link_undirected_and_coords(tmp_path: Path) -> None:
    p = tmp_path / "g.json"
    p.write_text(
        '{"directed": false, "graph": {"name": "tiny"}, "nodes": [{"id": "a", "lon": 1.5, '
        '"lat": 2.5}, {"id": "b"}], "edges": [{"source": "a", "target": "b", "capacity": 1e9}]}'
    )
    topo = load_topology(p)
    assert topo.name == "tiny" and topo.coords == {"a": (1.5, 2.5)}
    assert [(lk.src, lk.dst, lk.capacity) for lk in topo.links] == [
        ("a", "b", 1e9),
        ("b", "a", 1e9),
    ]


def test_capacities_from_mismatch(tmp_path: Path) -> None:
    names = tmp_path / "net.xml"
    names.write_text(sndlib_network(link("L1", "A", "B")))
    caps = tmp_path / "caps.json"
    caps.write_text(
        '{"nodes": [{"id": 0}, {"id": 1}], "links": [{"source": 0, "target": 1, "capacity": 5e9}]}'
    )
    with pytest.raises(
        TopologyError, match=r"caps\.json: links do not match .*net\.xml.*1 missing \(B->A\)"
    ):
        load_topology(names, capacities_from=caps)
    caps.write_text(
        '{"nodes": [{"id": 0}, {"id": 1}], "links": [{"source": 0, "target": 1, "capacity": 5e9},'
        '{"source": 1, "target": 0, "capacity": 4e9}]}'
    )
    topo = load_topology(names, capacities_from=caps)
    assert {(lk.src, lk.dst): lk.capacity for lk in topo.links} == {
        ("A", "B"): 5e9,
        ("B", "A"): 4e9,
    }


def test_errors_are_data_errors() -> None:
    assert issubclass(DemandError, DataError) and issubclass(TopologyError, DataError)


def test_unusual_formatting_takes_the_tree_path(tmp_path: Path) -> None:
    """Comments, reordered children and entities are read by ElementTree, with equal results."""
    plain = matrix("20240101-0000", [("A", "B", "1.5"), ("B", "C", "2")])
    odd = plain.replace("<demands>", "<demands><!-- reordered below -->").replace(
        "<source>B</source><target>C</target><demandValue> 2 </demandValue>",
        "<demandValue>2</demandValue><target>C</target><source>B</source>",
    )
    a = load_demands(write_folder(tmp_path, {"m-20240101-0000.xml": plain}, "plain"), step=300)
    b = load_demands(write_folder(tmp_path, {"m-20240101-0000.xml": odd}, "odd"), step=300)
    assert a.od_pairs == b.od_pairs and np.array_equal(a.values, b.values)
