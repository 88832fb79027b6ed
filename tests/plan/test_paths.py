from __future__ import annotations

import numpy as np
import pytest

from shadowcast.errors import TopologyError
from shadowcast.plan.paths import candidate_paths, great_circle_km, link_latency_ms
from shadowcast.records import Link, Topology


def test_k_shortest_orders_by_hops_and_chains(square: Topology) -> None:
    ps = candidate_paths(square, [("A", "B")], k=3)
    assert ps.n_paths == 3
    assert list(ps.hops) == [1.0, 2.0, 2.0]
    for p in range(ps.n_paths):
        nodes = ps.nodes_of(p, square)
        assert nodes[0] == "A" and nodes[-1] == "B"
    assert ps.incidence().shape == (len(square.links), 3)
    assert np.allclose(ps.shortest_split(), [1, 0, 0])


def test_disjoint_paths_share_no_link(square: Topology) -> None:
    ps = candidate_paths(square, [("A", "B"), ("C", "D")], k=4, disjoint=True)
    for k in range(2):
        ids = range(ps.od_start[k], ps.od_start[k + 1])
        used = [e for p in ids for e in ps.paths[p]]
        assert len(used) == len(set(used))
    assert ps.od_start[1] - ps.od_start[0] == 3  # A-B, A-C-B, A-D-B


def test_latency_from_coordinates_and_measured(square: Topology) -> None:
    # One degree of longitude on the equator is ~111.2 km -> ~0.556 ms at 2/3 c.
    assert great_circle_km((0, 0), (1, 0)) == pytest.approx(111.19, rel=1e-3)
    lat = link_latency_ms(square)
    assert lat[0] == pytest.approx(111.19 / 200, rel=1e-3)
    lat2 = link_latency_ms(square, {"A->B": 7.5})
    assert lat2[0] == 7.5
    ps = candidate_paths(square, [("A", "B")], k=3, weight="latency")
    assert np.all(np.diff(ps.latency_ms) >= 0)  # ranked by latency: via D is last


def test_unknown_node_and_no_path_are_clear_errors() -> None:
    t = Topology("t", ("A", "B", "C"), (Link("A", "B", 1e9),))
    with pytest.raises(TopologyError, match="Z"):
        candidate_paths(t, [("A", "Z")])
    with pytest.raises(TopologyError, match="no path from B to A"):
        candidate_paths(t, [("B", "A")])
