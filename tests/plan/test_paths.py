from __future__ import annotations

import itertools

import networkx as nx
import numpy as np
import pytest
from plan_helpers import bidir

from shadowcast.errors import TopologyError
from shadowcast.plan.paths import PathSet, candidate_paths, great_circle_km, link_latency_ms
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


def _cables(ps: PathSet, topo: Topology, od: int) -> list[frozenset[str]]:
    out = []
    for p in range(ps.od_start[od], ps.od_start[od + 1]):
        out += [frozenset((topo.links[e].src, topo.links[e].dst)) for e in ps.paths[p]]
    return out


def test_disjoint_paths_escape_the_trap_topology() -> None:
    # The shortest path s-a-b-d (3 hops) is a trap: removing it (both directions of its
    # links) leaves no second path, and removing only its directions leaves s-q1-q2-b-a-
    # p1-p2-d, 7 hops over cable a-b again. The disjoint pair is s-a-p1-p2-d + s-q1-q2-b-d.
    edges = [("s", "a"), ("a", "b"), ("b", "d"), ("a", "p1"), ("p1", "p2"), ("p2", "d"),
             ("s", "q1"), ("q1", "q2"), ("q2", "b")]  # fmt: skip
    trap = bidir("trap", [(u, v, 1e9) for u, v in edges])
    ps = candidate_paths(trap, [("s", "d")], k=2, disjoint=True)
    assert ps.n_paths == 2
    nodes = {ps.nodes_of(p, trap) for p in range(2)}
    assert nodes == {("s", "a", "p1", "p2", "d"), ("s", "q1", "q2", "b", "d")}
    cables = _cables(ps, trap, 0)
    assert len(cables) == len(set(cables)) == 8
    assert candidate_paths(trap, [("s", "d")], k=1, disjoint=True).hops.tolist() == [3.0]


def _brute_force_pair(g: nx.DiGraph, s: str, d: str) -> float | None:
    """Least total weight of two paths sharing no cable (either direction), by search."""
    paths = list(nx.all_simple_paths(g, s, d))

    def cables(p: list[str]) -> set[frozenset[str]]:
        return {frozenset(e) for e in itertools.pairwise(p)}

    def w(p: list[str]) -> float:
        return sum(g.edges[e]["weight"] for e in itertools.pairwise(p))

    best = None
    for i, p in enumerate(paths):
        for q in paths[i + 1 :]:
            if not cables(p) & cables(q) and (best is None or w(p) + w(q) < best):
                best = w(p) + w(q)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_disjoint_pair_has_the_least_total_weight(seed: int) -> None:
    rng = np.random.default_rng(seed)
    names = [f"n{i}" for i in range(8)]
    links: list[Link] = []
    coords = {n: (float(rng.uniform(0, 20)), float(rng.uniform(0, 20))) for n in names}
    for i, j in itertools.combinations(range(8), 2):
        if rng.random() < 0.4:
            links += [Link(names[i], names[j], 1e9), Link(names[j], names[i], 1e9)]
    topo = Topology(f"rand{seed}", tuple(names), tuple(links), coords)
    lat = link_latency_ms(topo)
    g = nx.DiGraph()
    for e, lk in enumerate(topo.links):
        g.add_edge(lk.src, lk.dst, weight=float(lat[e]))
    if "n0" not in g or "n7" not in g or not nx.has_path(g, "n0", "n7"):
        pytest.skip("this seed's graph does not connect n0 and n7")
    best = _brute_force_pair(g, "n0", "n7")
    ps = candidate_paths(topo, [("n0", "n7")], k=2, disjoint=True, weight="latency")
    if best is None:
        assert ps.n_paths == 1
        return
    assert ps.n_paths == 2
    cables = _cables(ps, topo, 0)
    assert len(cables) == len(set(cables))
    assert ps.latency_ms.sum() == pytest.approx(best, rel=1e-9)
    assert ps.latency_ms[0] <= ps.latency_ms[1]


def _grid(n: int, seed: int) -> Topology:
    """A ``n x n`` grid with a few random chords and random link weights as capacities."""
    rng = np.random.default_rng(seed)
    edges = []
    for i in range(n):
        for j in range(n):
            if i + 1 < n:
                edges.append((f"{i}.{j}", f"{i + 1}.{j}", 1e9))
            if j + 1 < n:
                edges.append((f"{i}.{j}", f"{i}.{j + 1}", 1e9))
    for _ in range(n):
        a, b = rng.integers(0, n, 2), rng.integers(0, n, 2)
        if (a != b).any():
            edges.append((f"{a[0]}.{a[1]}", f"{b[0]}.{b[1]}", 1e9))
    coords = {
        f"{i}.{j}": (float(i), float(j) + 0.1 * float(rng.random()))
        for i in range(n)
        for j in range(n)
    }
    return bidir(f"grid{n}", edges, coords)


@pytest.mark.parametrize(
    ("seed", "weight", "k"), [(0, "hops", 3), (1, "latency", 4), (2, "hops", 2)]
)
def test_waypoints_for_all_pairs_at_once_equal_pair_by_pair(
    seed: int, weight: str, k: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    topo = _grid(6, seed)
    ods = [(a, b) for a in topo.nodes for b in topo.nodes if a != b]
    fast = candidate_paths(topo, ods, k, weight=weight, algorithm="waypoint")
    monkeypatch.setattr("shadowcast.plan.paths.MAX_NODES", 0)  # the per-pair finder
    slow = candidate_paths(topo, ods, k, weight=weight, algorithm="waypoint")
    assert fast.paths == slow.paths
    assert np.array_equal(fast.od_start, slow.od_start)
    assert np.allclose(fast.latency_ms, slow.latency_ms)
    for p in range(0, fast.n_paths, 7):  # every path chains from its source to its sink
        nodes = fast.nodes_of(p, topo)
        assert (nodes[0], nodes[-1]) == ods[int(fast.path_od[p])]
        assert len(set(nodes)) == len(nodes)


def test_flat_layout_helpers(square: Topology) -> None:
    ps = candidate_paths(square, [("A", "B"), ("B", "A")], k=3)
    assert ps.links_of(1) == ps.paths[1]
    inc = ps.incidence().toarray()
    assert (inc == ps.incidence_csc().toarray()).all()
    for e in range(len(square.links)):
        assert np.array_equal(ps.without_links([e]), inc[e] == 0)
    assert ps.without_links([]).all()
