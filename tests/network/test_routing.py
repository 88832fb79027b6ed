from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowcast.errors import TopologyError
from shadowcast.network.routing import link_loads, routing_matrix
from shadowcast.records import Link, Topology


def both(a: str, b: str, cap: float = 10.0, key: str = "") -> list[Link]:
    return [Link(a, b, cap, key), Link(b, a, cap, key)]


def square() -> Topology:
    links = both("a", "b") + both("b", "c") + both("a", "d") + both("d", "c")
    return Topology("square", ("a", "b", "c", "d"), tuple(links))


def test_ecmp_splits_equally_per_hop() -> None:
    t = square()
    r = routing_matrix(t, [("a", "c"), ("a", "b")]).toarray()
    names = t.link_names()
    col = dict(zip(names, r[:, 0], strict=True))
    assert col["a->b"] == col["a->d"] == col["b->c"] == col["d->c"] == 0.5
    assert r[:, 1].sum() == 1.0 and dict(zip(names, r[:, 1], strict=True))["a->b"] == 1.0


def test_parallel_links_share_traffic() -> None:
    links = both("a", "b", key="1") + both("a", "b", key="2")
    t = Topology("par", ("a", "b"), tuple(links))
    r = routing_matrix(t, [("a", "b")]).toarray()[:, 0]
    assert sorted(r.tolist()) == [0.0, 0.0, 0.5, 0.5]


def test_loads_and_errors() -> None:
    t = square()
    r = routing_matrix(t, [("a", "c")])
    loads = link_loads(r, np.array([[8.0], [2.0]]))
    assert loads.shape == (2, 8) and loads[0].max() == 4.0
    with pytest.raises(TopologyError, match="'z'"):
        routing_matrix(t, [("a", "z")])
    island = Topology("island", ("a", "b", "x"), tuple(both("a", "b")))
    with pytest.raises(TopologyError, match="no path"):
        routing_matrix(island, [("a", "x")])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 9))
def test_flow_conservation_on_random_graphs(seed: int, n: int) -> None:
    g = nx.connected_watts_strogatz_graph(n, 2, 0.5, seed=seed)
    links = [lk for u, v in g.edges for lk in both(str(u), str(v))]
    t = Topology("rnd", tuple(str(i) for i in range(n)), tuple(links))
    pairs = [(str(s), str(d)) for s in range(n) for d in range(n) if s != d]
    r = routing_matrix(t, pairs).toarray()
    hops = dict(nx.all_pairs_shortest_path_length(g))
    for k, (s, d) in enumerate(pairs):
        out_s = sum(r[e, k] for e, lk in enumerate(links) if lk.src == s)
        in_d = sum(r[e, k] for e, lk in enumerate(links) if lk.dst == d)
        assert out_s == pytest.approx(1.0) and in_d == pytest.approx(1.0)
        # every unit of traffic travels exactly the shortest-path hop count
        assert r[:, k].sum() == pytest.approx(hops[int(s)][int(d)])
