"""Shortest-path routing with per-hop ECMP, as a sparse routing matrix.

``R[e, k]`` is the share of OD pair ``k``'s demand that crosses link ``e``. Loads are
``values @ R.T``. Splits are per hop, as routers do: at each node the traffic towards a
destination divides equally over every next hop (parallel links count separately) that lies
on a shortest path.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from shadowcast.errors import TopologyError
from shadowcast.records import F64, Topology

WEIGHTS = ("hops", "inv_capacity")


def link_weights(topology: Topology, weight: str = "hops") -> F64:
    """IGP metric per link: 1 per hop, or reference bandwidth / capacity (OSPF style)."""
    if weight == "hops":
        return np.ones(len(topology.links))
    if weight == "inv_capacity":
        caps = topology.capacities
        if (caps <= 0).any():
            raise TopologyError("inv_capacity weights need positive capacities on every link")
        return np.asarray(caps.max() / caps, dtype=np.float64)
    raise TopologyError(f"unknown routing weight {weight!r}; expected one of {WEIGHTS}")


def _dist_to(dest: int, n: int, rev: list[list[tuple[int, float]]]) -> F64:
    """Dijkstra on reversed edges: distance from every node to ``dest``."""
    dist = np.full(n, np.inf)
    dist[dest] = 0.0
    heap = [(0.0, dest)]
    while heap:
        d, v = heapq.heappop(heap)
        if d > dist[v]:
            continue
        for u, w in rev[v]:
            nd = d + w
            if nd < dist[u] - 1e-12:
                dist[u] = nd
                heapq.heappush(heap, (nd, u))
    return dist


def routing_matrix(
    topology: Topology,
    od_pairs: Sequence[tuple[str, str]],
    weight: str = "hops",
) -> sp.csr_matrix:
    """Sparse ``[n_links, n_od]`` matrix of ECMP split fractions.

    Raises TopologyError for an OD pair whose endpoint is not in the topology or that
    has no path.
    """
    index = topology.node_index()
    n = len(topology.nodes)
    w = link_weights(topology, weight)
    src = np.array([index[lk.src] for lk in topology.links], dtype=np.int64)
    dst = np.array([index[lk.dst] for lk in topology.links], dtype=np.int64)
    rev: list[list[tuple[int, float]]] = [[] for _ in range(n)]
    for e in range(len(topology.links)):
        rev[int(dst[e])].append((int(src[e]), float(w[e])))

    by_dest: dict[int, list[tuple[int, int]]] = {}
    for k, (s, d) in enumerate(od_pairs):
        if s not in index or d not in index:
            missing = s if s not in index else d
            raise TopologyError(f"OD pair {s}->{d}: node {missing!r} is not in the topology")
        if s != d:
            by_dest.setdefault(index[d], []).append((index[s], k))

    rows: list[npt.NDArray[np.int64]] = []
    cols: list[npt.NDArray[np.int64]] = []
    vals: list[F64] = []
    for dnode, members in by_dest.items():
        dist = _dist_to(dnode, n, rev)
        fin = np.where(np.isfinite(dist), dist, -1e18)  # unreachable nodes: never on the DAG
        on_dag = np.isfinite(dist[src]) & (np.abs(fin[src] - w - fin[dst]) < 1e-9)
        dag_edges = np.flatnonzero(on_dag)
        nexthops = np.bincount(src[dag_edges], minlength=n)
        srcs = np.array([m[0] for m in members], dtype=np.int64)
        ks = np.array([m[1] for m in members], dtype=np.int64)
        unreachable = ~np.isfinite(dist[srcs])
        if unreachable.any():
            bad = members[int(np.flatnonzero(unreachable)[0])]
            raise TopologyError(f"no path from {topology.nodes[bad[0]]} to {topology.nodes[dnode]}")
        # flow[u, j]: share of member j's demand passing through node u.
        flow = np.zeros((n, len(members)))
        flow[srcs, np.arange(len(members))] = 1.0
        order = np.argsort(-dist, kind="stable")
        edges_from: dict[int, list[int]] = {}
        for e in map(int, dag_edges):
            edges_from.setdefault(int(src[e]), []).append(e)
        for u in order:
            if not np.isfinite(dist[u]) or u == dnode:
                continue
            f = flow[u]
            active = np.flatnonzero(f)
            if active.size == 0:
                continue
            share = f[active] / nexthops[u]
            for e in edges_from.get(int(u), ()):
                flow[dst[e], active] += share
                rows.append(np.full(active.size, e, dtype=np.int64))
                cols.append(ks[active])
                vals.append(share)
    if rows:
        r = np.concatenate(rows)
        c = np.concatenate(cols)
        v = np.concatenate(vals)
    else:
        r = c = np.zeros(0, dtype=np.int64)
        v = np.zeros(0)
    return sp.csr_matrix((v, (r, c)), shape=(len(topology.links), len(od_pairs)))


def link_loads(routing: sp.spmatrix | F64, values: npt.ArrayLike) -> F64:
    """Per-link load ``[T, n_links]`` for demands ``values[T, n_od]`` (same units)."""
    vals = np.asarray(values, dtype=np.float64)
    one = vals.ndim == 1
    vals2 = vals[None, :] if one else vals
    out = np.asarray((routing @ vals2.T).T, dtype=np.float64)
    return out[0] if one else out
