from __future__ import annotations

from datetime import UTC, datetime

import pytest

from shadowcast.errors import ProbeError
from shadowcast.profile.events import AppPathEvent
from shadowcast.records import Link, Topology
from shadowcast.shadow.events import PathResolver


def topo() -> Topology:
    links = []
    for a, b in [("A", "B"), ("B", "D"), ("A", "C"), ("C", "D"), ("D", "E")]:
        links += [Link(a, b, 1e9), Link(b, a, 1e9)]
    return Topology("t", ("A", "B", "C", "D", "E"), tuple(links))


def ev(app: str, cat: str, i: str, e: str) -> AppPathEvent:
    return AppPathEvent(app, cat, i, e, datetime(2026, 1, 1, tzinfo=UTC))


def test_resolves_deterministic_shortest_path_and_class() -> None:
    r = PathResolver(topo())
    out = r.resolve(ev("zoom", "voip", "A", "E"), sport=40000)
    assert out.path == ("A", "B", "D", "E")  # ECMP: the sorted-first of A-B-D / A-C-D
    assert out.traffic_class == "high" and out.sport == 40000
    assert r.resolve(ev("backup", "bulk", "E", "C")).traffic_class == "low"


def test_edges_map_to_routers_and_unknowns_are_counted() -> None:
    r = PathResolver(topo(), edge_to_node={"pop-paris": "C"})
    assert r.resolve(ev("web", "web", "pop-paris", "A")).path == ("C", "A")
    with pytest.raises(ProbeError, match="exporter:x"):
        r.resolve(ev("web", "web", "exporter:x", "A"))
    got = r.resolve_all([ev("a", "web", "A", "E"), ev("b", "web", "nowhere", "E")])
    assert len(got) == 1 and r.unresolved == 1
