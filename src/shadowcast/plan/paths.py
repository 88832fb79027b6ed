"""Candidate paths per OD pair and their latency.

A path is a tuple of link indices into ``topology.links``. Candidates are the ``k``
shortest simple paths (Yen, via networkx) or up to ``k`` link-disjoint paths of least
total weight (Suurballe/Bhandari, min-cost flow). Parallel links between the same two nodes are
collapsed to the one with the highest capacity for path enumeration.

Latency: propagation from node coordinates (great-circle distance at 2/3 c, i.e.
~5 µs per km) or measured per-link values (e.g. shadow-path one-way delay) where given.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import networkx as nx
import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from shadowcast.errors import TopologyError
from shadowcast.plan.waypoints import MAX_NODES, WaypointTables
from shadowcast.records import F64, I64, Topology

log = logging.getLogger(__name__)

EARTH_RADIUS_KM = 6371.0
FIBRE_KM_PER_MS = 200.0  # light in fibre: ~2/3 c
DEFAULT_LINK_MS = 1.0  # a link whose ends have no coordinates


def great_circle_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Haversine distance between two (lon, lat) points in km."""
    lon1, lat1, lon2, lat2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def link_latency_ms(topology: Topology, measured: Mapping[str, float] | None = None) -> F64:
    """One-way latency per link in ms: measured (by link name) else propagation."""
    names = topology.link_names()
    out = np.empty(len(topology.links))
    for e, lk in enumerate(topology.links):
        if measured and names[e] in measured:
            out[e] = float(measured[names[e]])
        elif lk.src in topology.coords and lk.dst in topology.coords:
            km = great_circle_km(topology.coords[lk.src], topology.coords[lk.dst])
            out[e] = max(km / FIBRE_KM_PER_MS, 0.01)
        else:
            out[e] = DEFAULT_LINK_MS
    return out


@dataclass(frozen=True, slots=True)
class PathSet:
    """Candidate paths of every OD pair, flattened (no Python object per path).

    Path ``p`` is the links ``link_ids[path_start[p]:path_start[p + 1]]`` in order;
    ``path_od[p]`` its OD index; the paths of OD ``k`` are ``od_start[k]:od_start[k + 1]``
    (the first is the shortest). ``paths`` gives them as tuples (built once, on demand).
    """

    od_pairs: tuple[tuple[str, str], ...]
    link_ids: I64
    path_start: I64
    path_od: I64
    od_start: I64
    latency_ms: F64
    hops: F64
    n_links: int
    cache: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def n_paths(self) -> int:
        return int(self.path_start.size - 1)

    @property
    def paths(self) -> tuple[tuple[int, ...], ...]:
        """Every path as a tuple of link indices (for small sets: one object per path)."""
        if "paths" not in self.cache:
            ids = self.link_ids.tolist()
            st = self.path_start.tolist()
            self.cache["paths"] = tuple(tuple(ids[a:b]) for a, b in itertools.pairwise(st))
        out: tuple[tuple[int, ...], ...] = self.cache["paths"]
        return out

    def links_of(self, p: int) -> tuple[int, ...]:
        """The links of path ``p``, in order."""
        return tuple(self.link_ids[self.path_start[p] : self.path_start[p + 1]].tolist())

    def incidence_csc(self) -> sp.csc_matrix:
        """Sparse ``[n_links, n_paths]`` 0/1 matrix in CSC form (a column per path)."""
        if "csc" not in self.cache:
            self.cache["csc"] = sp.csc_matrix(
                (np.ones(self.link_ids.size), self.link_ids.copy(), self.path_start.copy()),
                shape=(self.n_links, self.n_paths),
            )
        out: sp.csc_matrix = self.cache["csc"]
        return out

    def incidence(self) -> sp.csr_matrix:
        """Sparse ``[n_links, n_paths]`` 0/1 matrix: path ``p`` uses link ``e``."""
        if "csr" not in self.cache:
            self.cache["csr"] = sp.csr_matrix(self.incidence_csc())
        out: sp.csr_matrix = self.cache["csr"]
        return out

    def shortest_split(self) -> F64:
        """Split vector ``[n_paths]`` of IGP routing as the network does it today: every OD
        split equally over its candidate paths of the fewest hops (ECMP); the first
        (shortest) path when it is the only one."""
        starts = self.od_start[:-1]
        fewest = np.minimum.reduceat(self.hops, starts)[self.path_od]
        best = (self.hops == fewest).astype(np.float64)
        count = np.add.reduceat(best, starts)[self.path_od]
        return np.asarray(best / count, dtype=np.float64)

    def nodes_of(self, p: int, topology: Topology) -> tuple[str, ...]:
        links = [topology.links[e] for e in self.links_of(p)]
        return (links[0].src, *[lk.dst for lk in links]) if links else ()

    def without_links(self, failed: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Mask ``[n_paths]``: True where the path avoids every failed link."""
        bad = np.zeros(self.n_links, dtype=bool)
        bad[np.asarray(failed, dtype=np.int64).ravel()] = True
        if not bad.any():
            return np.ones(self.n_paths, dtype=bool)
        hits = np.add.reduceat(bad[self.link_ids].astype(np.int64), self.path_start[:-1])
        hits[np.diff(self.path_start) == 0] = 0
        return np.asarray(hits == 0, dtype=bool)


def _graph(topology: Topology, weights: F64) -> tuple[nx.DiGraph, dict[tuple[str, str], int]]:
    g: nx.DiGraph = nx.DiGraph()
    g.add_nodes_from(topology.nodes)
    best: dict[tuple[str, str], int] = {}
    for e, lk in enumerate(topology.links):
        key = (lk.src, lk.dst)
        if lk.capacity <= 0:
            continue
        if key not in best or lk.capacity > topology.links[best[key]].capacity:
            best[key] = e
    for (u, v), e in best.items():
        g.add_edge(u, v, weight=float(weights[e]), idx=e)
    return g, best


def candidate_paths(
    topology: Topology,
    od_pairs: Sequence[tuple[str, str]],
    k: int = 4,
    *,
    disjoint: bool = False,
    weight: str = "hops",
    measured_ms: Mapping[str, float] | None = None,
    algorithm: str = "auto",
) -> PathSet:
    """The ``k`` shortest (or link-disjoint) paths of every OD pair.

    ``weight`` is ``"hops"`` or ``"latency"``. ``algorithm``: ``"yen"`` (exact k shortest
    simple paths), ``"waypoint"`` (shortest path plus the best paths through one
    intermediate node — segment-routing style, one all-pairs Dijkstra, for large graphs),
    or ``"auto"`` (waypoint above 5,000 OD pairs). Raises TopologyError if an OD pair has
    an unknown endpoint or no path at all.
    """
    if k < 1:
        raise TopologyError(f"k must be >= 1, got {k}")
    lat = link_latency_ms(topology, measured_ms)
    if weight == "hops":
        w = np.ones(len(topology.links))
    elif weight == "latency":
        w = lat
    else:
        raise TopologyError(f"unknown path weight {weight!r}; expected 'hops' or 'latency'")
    g, _ = _graph(topology, w)
    if algorithm not in ("auto", "yen", "waypoint"):
        raise TopologyError(f"unknown path algorithm {algorithm!r}")
    use_waypoint = algorithm == "waypoint" or (algorithm == "auto" and len(od_pairs) > 5000)
    for s, d in od_pairs:
        if s not in g or d not in g:
            raise TopologyError(f"OD pair {s}->{d}: endpoint not in topology {topology.name!r}")
    if use_waypoint and not disjoint and g.number_of_nodes() <= MAX_NODES:
        links, path_start, path_od = _all_waypoints(g, od_pairs, k)
    else:
        links, path_start, path_od = _one_by_one(g, od_pairs, k, disjoint, use_waypoint)
    counts = np.bincount(path_od, minlength=len(od_pairs))
    if (counts == 0).any():
        s, d = od_pairs[int(np.argmax(counts == 0))]
        raise TopologyError(f"no path from {s} to {d} in topology {topology.name!r}")
    lens = np.diff(path_start)
    latency = np.zeros(lens.size)
    np.add.at(latency, np.repeat(np.arange(lens.size), lens), lat[links])
    return PathSet(
        od_pairs=tuple(od_pairs),
        link_ids=links,
        path_start=path_start,
        path_od=path_od,
        od_start=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
        latency_ms=latency,
        hops=lens.astype(np.float64),
        n_links=len(topology.links),
    )


def _all_waypoints(
    g: nx.DiGraph, od_pairs: Sequence[tuple[str, str]], k: int
) -> tuple[I64, I64, I64]:
    """Waypoint paths of every pair at once (:mod:`shadowcast.plan.waypoints`)."""
    nodes = list(g.nodes)
    index = {n: i for i, n in enumerate(nodes)}
    u, v, w, e = [], [], [], []
    for a, b, data in g.edges(data=True):
        u.append(index[a])
        v.append(index[b])
        w.append(float(data["weight"]))
        e.append(int(data["idx"]))
    tables = WaypointTables(
        len(nodes),
        np.array(u, dtype=np.int64),
        np.array(v, dtype=np.int64),
        np.array(w),
        np.array(e, dtype=np.int64),
    )
    src = np.array([index[s] for s, _ in od_pairs], dtype=np.int64)
    dst = np.array([index[d] for _, d in od_pairs], dtype=np.int64)
    return tables.paths(src, dst, k)


def _one_by_one(
    g: nx.DiGraph,
    od_pairs: Sequence[tuple[str, str]],
    k: int,
    disjoint: bool,
    waypoint: bool,
) -> tuple[I64, I64, I64]:
    """Paths pair by pair: Yen, disjoint or (very large graphs) waypoint."""
    finder: _Waypoints | _Disjoint | None = None
    if disjoint:
        finder = _Disjoint(g, k)
    elif waypoint:
        finder = _Waypoints(g, k)
    links: list[int] = []
    starts = [0]
    path_od: list[int] = []
    for i, (s, d) in enumerate(od_pairs):
        found = finder.paths(s, d) if finder is not None else _k_shortest(g, s, d, k)
        for nodes in found:
            links += [int(g.edges[a, b]["idx"]) for a, b in itertools.pairwise(nodes)]
            starts.append(len(links))
            path_od.append(i)
    return (
        np.array(links, dtype=np.int64),
        np.array(starts, dtype=np.int64),
        np.array(path_od, dtype=np.int64),
    )


def _k_shortest(g: nx.DiGraph, s: str, d: str, k: int) -> list[list[str]]:
    try:
        return list(itertools.islice(nx.shortest_simple_paths(g, s, d, weight="weight"), k))
    except nx.NetworkXNoPath:
        return []


class _Disjoint:
    """Up to ``k`` link-disjoint paths of least total weight (Suurballe/Bhandari: a
    min-cost flow of ``k`` units on unit capacities by successive shortest paths, Dijkstra
    on reduced costs). Finds the most disjoint paths there are (at most ``k``), where
    removing each shortest path in turn can miss them (the trap topology). With positive
    weights no two paths use the two directions of one link either: a cable cut takes at
    most one. Cheapest path first."""

    def __init__(self, g: nx.DiGraph, k: int) -> None:
        self.k = k
        self.n = g.number_of_nodes()
        self.cost = {(u, v): max(float(w), 1e-9) for u, v, w in g.edges(data="weight")}
        self.succ: dict[str, list[str]] = {u: list(g.successors(u)) for u in g}
        self.pred: dict[str, list[str]] = {u: list(g.predecessors(u)) for u in g}

    def paths(self, s: str, d: str) -> list[list[str]]:
        flow: set[tuple[str, str]] = set()
        pot: dict[str, float] = {}
        for _ in range(self.k):
            dist, prev = self._dijkstra(flow, pot, s)
            if d not in dist:
                break
            v = d
            while v != s:
                u = prev[v]
                if (v, u) in flow:  # travelled a residual arc: cancel the opposite flow
                    flow.discard((v, u))
                else:
                    flow.add((u, v))
                v = u
            pot = {n: pot.get(n, 0.0) + dist[n] for n in dist}
        out = []
        nxt: dict[str, list[str]] = {}
        for u, v in sorted(flow):
            nxt.setdefault(u, []).append(v)
        while nxt.get(s):
            nodes = [s]
            while nodes[-1] != d and len(nodes) <= self.n:
                nodes.append(nxt[nodes[-1]].pop())
            if nodes[-1] != d:  # cannot happen with positive weights (the flow has no cycle)
                raise TopologyError(f"disjoint paths {s}->{d}: flow decomposition looped")
            out.append(nodes)
        return sorted(out, key=lambda p: (sum(self.cost[e] for e in itertools.pairwise(p)), len(p)))

    def _dijkstra(
        self, flow: set[tuple[str, str]], pot: Mapping[str, float], s: str
    ) -> tuple[dict[str, float], dict[str, str]]:
        """Shortest reduced-cost distances from ``s`` in the residual graph of ``flow``: an
        unused arc at its cost, a used arc backwards at minus its cost (the cheaper of the
        two when both join the same nodes). Node potentials keep reduced costs >= 0; a node
        without one was unreachable before and stays so."""
        cost = self.cost
        dist: dict[str, float] = {s: 0.0}
        prev: dict[str, str] = {}
        done: set[str] = set()
        heap: list[tuple[float, str]] = [(0.0, s)]
        while heap:
            du, u = heapq.heappop(heap)
            if u in done:
                continue
            done.add(u)
            pu = pot.get(u, 0.0)
            arcs = [(v, cost[(u, v)]) for v in self.succ[u] if (u, v) not in flow]
            if flow:
                arcs += [(v, -cost[(v, u)]) for v in self.pred[u] if (v, u) in flow]
            for v, c in arcs:
                if v in done or (pot and v not in pot):
                    continue
                nd = du + max(c + pu - pot.get(v, 0.0), 0.0)  # >= 0 up to rounding
                if nd < dist.get(v, math.inf):
                    dist[v], prev[v] = nd, u
                    heapq.heappush(heap, (nd, v))
        return dist, prev


class _Waypoints:
    """Shortest path plus paths ``s -> m -> d`` through one waypoint ``m`` (loop-free),
    cheapest first; all from one all-pairs Dijkstra (scipy)."""

    def __init__(self, g: nx.DiGraph, k: int) -> None:
        from scipy.sparse.csgraph import dijkstra

        self.k = k
        self.nodes = list(g.nodes)
        self.index = {n: i for i, n in enumerate(self.nodes)}
        n = len(self.nodes)
        rows, cols, w = [], [], []
        for u, v, data in g.edges(data=True):
            rows.append(self.index[u])
            cols.append(self.index[v])
            w.append(float(data["weight"]))
        m = sp.csr_matrix((w, (rows, cols)), shape=(n, n))
        self.dist, self.pred = dijkstra(m, directed=True, return_predecessors=True)

    def _sp(self, s: int, d: int) -> list[int]:
        out = [d]
        while out[-1] != s:
            p = int(self.pred[s, out[-1]])
            if p < 0:
                return []
            out.append(p)
        return out[::-1]

    def paths(self, s: str, d: str) -> list[list[str]]:
        si, di = self.index[s], self.index[d]
        if not np.isfinite(self.dist[si, di]):
            return []
        best = self._sp(si, di)
        found = [best]
        cost = self.dist[si, :] + self.dist[:, di]
        cost[[si, di]] = np.inf
        cost[best] = np.inf
        for m in np.argsort(cost, kind="stable")[: 4 * self.k]:
            if len(found) >= self.k or not np.isfinite(cost[m]):
                break
            cand = self._sp(si, int(m))[:-1] + self._sp(int(m), di)
            if len(set(cand)) == len(cand) and cand not in found:
                found.append(cand)
        return [[self.nodes[i] for i in p] for p in found]
