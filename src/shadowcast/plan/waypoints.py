"""Waypoint candidate paths for every OD pair at once (numpy), for large graphs.

For an OD pair ``(s, t)``: the shortest path, then the paths ``s -> m -> t`` through one
waypoint ``m`` (segment routing with one node segment), cheapest first (ties by node
order), among the ``4 k`` cheapest waypoints off the shortest path, keeping those that are
simple and new, until ``k`` paths. All of it comes from one all-pairs Dijkstra: ``s -> m``
is read from the shortest-path tree of ``s``, ``m -> t`` from the tree of ``m``.

Per pair of (root, node), three tables are built once by tree level: the depth, an edge-set
hash (a wrapping sum of random 64-bit words per link: two simple ``s -> t`` paths with the
same links are the same path) and a bit set of the nodes on the tree path. A walk
``s -> m -> t`` is simple when its two halves share only ``m`` (one AND of two bit sets).
The OD pairs are processed in batches; no Python object is made per path.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.csgraph import dijkstra

from shadowcast.records import F64, I64

MAX_NODES = 1500  # the bit sets take n^3 / 8 bytes (1500 nodes: 420 MB)
BATCH = 2048  # OD pairs per batch
_POP = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


class WaypointTables:
    """Shortest-path trees of every root and the per-(root, node) tables above."""

    def __init__(self, n: int, u: I64, v: I64, w: F64, link: I64, seed: int = 0) -> None:
        self.n = n
        m = sp.csr_matrix((w, (u, v)), shape=(n, n))
        self.dist, pred = dijkstra(m, directed=True, return_predecessors=True)
        self.edge = np.full((n, n), -1, dtype=np.int64)
        self.edge[u, v] = link
        rows = np.arange(n)[:, None]
        reach = pred >= 0
        parent = np.where(reach, pred, np.arange(n)[None, :])  # a root is its own parent
        self.parent = parent
        top = np.iinfo(np.uint64).max
        rng = np.random.default_rng(seed)
        words = rng.integers(0, top, size=int(link.max()) + 2, dtype=np.uint64, endpoint=True)
        words[-1] = 0  # "no link" (a root's own entry)
        first = np.where(reach, self.edge[parent, np.arange(n)[None, :]], -1)
        depth = reach.astype(np.int64)
        hsum = words[first]
        anc = parent.copy()
        while True:  # pointer jumping: sums along the tree paths
            nxt = anc[rows, anc]
            if np.array_equal(nxt, anc):
                break
            depth = depth + depth[rows, anc]
            hsum = hsum + hsum[rows, anc]
            anc = nxt
        self.depth = depth
        self.hash = hsum
        self.on = self._bitsets()

    def _bitsets(self) -> npt.NDArray[np.uint8]:
        """``on[r, t]``: packed bits of the nodes on the tree path ``r -> t`` (both ends)."""
        n = self.n
        nb = (n + 7) // 8
        on = np.zeros((n, n, nb), dtype=np.uint8)
        byte = np.arange(n) // 8
        bit = (128 >> (np.arange(n) % 8)).astype(np.uint8)
        r_all, t_all = np.nonzero(np.isfinite(self.dist))
        level = self.depth[r_all, t_all]
        order = np.argsort(level, kind="stable")
        r_all, t_all, level = r_all[order], t_all[order], level[order]
        cuts = np.searchsorted(level, np.arange(level.max() + 2))
        for lv in range(level.max() + 1):
            r, t = r_all[cuts[lv] : cuts[lv + 1]], t_all[cuts[lv] : cuts[lv + 1]]
            if lv:
                on[r, t] = on[r, self.parent[r, t]]
            on[r, t, byte[t]] |= bit[t]
        return on

    def paths(self, src: I64, dst: I64, k: int) -> tuple[I64, I64, I64]:
        """Candidate paths of the pairs ``(src[i], dst[i])``: ``(links, path_start,
        path_od)`` with the links of each path in order; pairs without a path get none."""
        segs: list[tuple[I64, I64, I64, I64]] = []  # (od, rank, root, end) per half path
        ok = np.isfinite(self.dist[src, dst])
        ods = np.flatnonzero(ok)
        segs.append((ods, np.zeros_like(ods), src[ods], dst[ods]))
        for a in range(0, ods.size, BATCH):
            od = ods[a : a + BATCH]
            if k > 1:
                segs += self._waypoints(od, src[od], dst[od], k)
        if ods.size == 0:
            return np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64)
        od_a = np.concatenate([s[0] for s in segs])
        rank = np.concatenate([s[1] for s in segs])
        root = np.concatenate([s[2] for s in segs])
        end = np.concatenate([s[3] for s in segs])
        order = np.lexsort((rank, od_a))  # rank encodes (path, half)
        od_a, rank, root, end = od_a[order], rank[order], root[order], end[order]
        links, lens = self._walk(root, end)
        new = (od_a[1:] != od_a[:-1]) | (rank[1:] // 2 != rank[:-1] // 2)
        path_id = np.concatenate([[True], new])
        first_seg = np.flatnonzero(path_id)
        path_len = np.add.reduceat(lens, first_seg)
        path_start = np.concatenate([[0], np.cumsum(path_len)])
        return links, path_start.astype(np.int64), od_a[first_seg]

    def _waypoints(self, od: I64, s: I64, t: I64, k: int) -> list[tuple[I64, I64, I64, I64]]:
        n = self.n
        kk = min(4 * k, n)
        cost = self.dist[s] + self.dist[:, t].T  # [B, n]
        on_sp = np.unpackbits(self.on[s, t], axis=1, count=n).astype(bool)
        cost[on_sp] = np.inf  # s, t and the shortest path's nodes
        thr = np.partition(cost, kk - 1, axis=1)[:, kk - 1 : kk]
        r, m = np.nonzero((cost <= thr) & np.isfinite(cost))
        order = np.lexsort((m, cost[r, m], r))
        r, m = r[order], m[order]
        start = np.searchsorted(r, np.arange(od.size))
        pos = np.arange(r.size) - start[r]
        r, m = r[pos < kk], m[pos < kk]
        simple = _POP[self.on[s[r], m] & self.on[m, t[r]]].sum(axis=1, dtype=np.int64) == 1
        r, m = r[simple], m[simple]
        h = self.hash[s[r], m] + self.hash[m, t[r]]
        # keep the first of equal paths (by rank) per pair, then the first k - 1
        rank0 = np.arange(r.size)
        by = np.lexsort((rank0, h, r))
        dup = np.zeros(r.size, dtype=bool)
        dup[by[1:]] = (r[by[1:]] == r[by[:-1]]) & (h[by[1:]] == h[by[:-1]])
        r, m = r[~dup], m[~dup]
        start = np.searchsorted(r, np.arange(od.size))
        pos = np.arange(r.size) - start[r]
        keep = pos < k - 1
        r, m, pos = r[keep], m[keep], pos[keep]
        rank = 2 * (pos + 1)
        return [(od[r], rank, s[r], m), (od[r], rank + 1, m, t[r])]

    def _walk(self, root: I64, end: I64) -> tuple[I64, I64]:
        """Links of the tree paths ``root -> end``, concatenated in order, and their counts."""
        lens = self.depth[root, end]
        start = np.concatenate([[0], np.cumsum(lens)])
        out = np.empty(int(start[-1]), dtype=np.int64)
        pos = start[1:] - 1
        cur = end.copy()
        live = np.flatnonzero(lens > 0)
        while live.size:
            p = self.parent[root[live], cur[live]]
            out[pos[live]] = self.edge[p, cur[live]]
            pos[live] -= 1
            cur[live] = p
            live = live[cur[live] != root[live]]
        return out, lens
