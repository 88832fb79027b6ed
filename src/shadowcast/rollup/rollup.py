"""Profiled flows -> demand between routers, per step and per traffic kind.

Every flow's bytes are spread over the steps it overlaps (in proportion to the overlap) and
added to its (ingress router, egress router, category) cell of each step. A step is closed
``lateness`` after its end: from then on it is final (its OD rows go to the store and the
forecasters) and records that still arrive for it are counted as late, never silently
added to a later step. Closed steps come out in order, one per step, empty ones included.

A flow is mapped when both its ingress and egress edges are routers of the topology (by
name, or through ``edge_to_node``) and they differ; otherwise it is counted under one
reason: ``ingress_unmapped`` (unknown exporter or interface), ``egress_unmapped`` (the
destination is no site of ours and the exporter named no egress interface), ``local``
(enters and leaves at the same router). Everything is column-wise numpy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute

from shadowcast.records import F64, Topology

pc: Any = pyarrow.compute
I64 = npt.NDArray[np.int64]
REASONS = ("ingress_unmapped", "egress_unmapped", "local")


@dataclass(frozen=True, slots=True)
class RollupBucket:
    """One closed step: ``mbps[kind, od]`` averaged over ``[start_s, start_s + step_s)``."""

    start_s: int
    step_s: int
    kinds: tuple[str, ...]
    od_pairs: tuple[tuple[str, str], ...]
    mbps: F64

    def total(self) -> F64:
        """All kinds together, ``[n_od]``."""
        return np.asarray(self.mbps.sum(axis=0), dtype=np.float64)

    def by_class(self, class_of: Mapping[str, str]) -> dict[str, F64]:
        """Kinds summed into their classes: class -> ``[n_od]``."""
        out: dict[str, F64] = {}
        for i, k in enumerate(self.kinds):
            c = class_of.get(k, k)
            out[c] = out[c] + self.mbps[i] if c in out else self.mbps[i].copy()
        return out


@dataclass
class RollupStats:
    records: int = 0
    bytes: int = 0
    mapped_records: int = 0
    mapped_bytes: int = 0
    late_records: int = 0
    late_bytes: int = 0
    future_records: int = 0
    unmapped_records: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    unmapped_bytes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))
    unmapped_edges: dict[str, int] = field(default_factory=dict)  # edge name -> records
    buckets_closed: int = 0

    def as_dict(self) -> dict[str, Any]:
        top = sorted(self.unmapped_edges.items(), key=lambda kv: -kv[1])[:20]
        return {
            "records": self.records,
            "bytes": self.bytes,
            "mapped_records": self.mapped_records,
            "mapped_bytes": self.mapped_bytes,
            "mapped_share": self.mapped_bytes / self.bytes if self.bytes else 1.0,
            "late_records": self.late_records,
            "late_bytes": self.late_bytes,
            "future_records": self.future_records,
            "unmapped_records": dict(self.unmapped_records),
            "unmapped_bytes": dict(self.unmapped_bytes),
            "unmapped_edges": dict(top),
            "buckets_closed": self.buckets_closed,
        }


def od_universe(topology: Topology) -> tuple[tuple[str, str], ...]:
    """Every ordered pair of distinct routers, source-major."""
    return tuple((a, b) for a in topology.nodes for b in topology.nodes if a != b)


class Rollup:
    """Accumulates profiled flow batches; ``close(now_s)`` hands out the finished steps."""

    MAX_EDGES_TRACKED = 1000

    def __init__(
        self,
        topology: Topology,
        kinds: Sequence[str],
        step_s: int,
        *,
        lateness_s: int = 0,
        edge_to_node: Mapping[str, str] | None = None,
        max_open: int = 48,
        start_s: int | None = None,
    ) -> None:
        if step_s <= 0:
            raise ValueError("rollup step must be positive")
        self.topology = topology
        self.kinds = tuple(kinds)
        self.kind_index = {k: i for i, k in enumerate(self.kinds)}
        self.step_s = int(step_s)
        self.lateness_s = int(lateness_s)
        self.edge_to_node = dict(edge_to_node or {})
        self.max_open = int(max_open)
        self.nodes = tuple(topology.nodes)
        self.node_index = {n: i for i, n in enumerate(self.nodes)}
        self.od_pairs = od_universe(topology)
        n = len(self.nodes)
        # dense square cell -> OD position (diagonal: -1)
        cell = np.full(n * n, -1, dtype=np.int64)
        for k, (a, b) in enumerate(self.od_pairs):
            cell[self.node_index[a] * n + self.node_index[b]] = k
        self._cell_od = cell
        self.stats = RollupStats()
        self._open: dict[int, F64] = {}  # bucket index -> bytes [n_kinds * n * n]
        self._next = None if start_s is None else int(start_s) // self.step_s

    # -- input -------------------------------------------------------------------------------

    def _nodes_of(self, column: pa.ChunkedArray | pa.Array) -> tuple[I64, list[str]]:
        arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if not pa.types.is_dictionary(arr.type):
            arr = pc.dictionary_encode(pc.fill_null(arr.cast(pa.string()), ""))
        names = [str(x) if x is not None else "" for x in arr.dictionary.to_pylist()]
        lut = np.array(
            [self.node_index.get(self.edge_to_node.get(nm, nm), -1) for nm in names] + [-1],
            dtype=np.int64,
        )
        codes = np.asarray(pc.fill_null(arr.indices, len(names)).to_numpy(), dtype=np.int64)
        return lut[codes], names

    def _kinds_of(self, column: pa.ChunkedArray | pa.Array) -> I64:
        arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
        if not pa.types.is_dictionary(arr.type):
            arr = pc.dictionary_encode(pc.fill_null(arr.cast(pa.string()), ""))
        other = self.kind_index.get("unknown", self.kind_index.get("", 0))
        lut = np.array(
            [self.kind_index.get(str(x or ""), other) for x in arr.dictionary.to_pylist()]
            + [other],
            dtype=np.int64,
        )
        dn = len(arr.dictionary)
        return lut[np.asarray(pc.fill_null(arr.indices, dn).to_numpy(), dtype=np.int64)]

    def accept(self, flows: pa.Table) -> None:
        """Add a profiled flow batch (columns time_start, time_end, bytes, category,
        ingress, egress)."""
        m = flows.num_rows
        if m == 0:
            return
        st = self.stats
        byt = np.asarray(pc.fill_null(flows.column("bytes"), 0).to_numpy(), dtype=np.float64)
        st.records += m
        st.bytes += int(byt.sum())
        src, src_names = self._nodes_of(flows.column("ingress"))
        dst, dst_names = self._nodes_of(flows.column("egress"))
        reason = np.full(m, -1, dtype=np.int64)
        reason[src < 0] = 0
        reason[(reason < 0) & (dst < 0)] = 1
        reason[(reason < 0) & (src == dst)] = 2
        for r, name in enumerate(REASONS):
            sel = reason == r
            if sel.any():
                st.unmapped_records[name] += int(sel.sum())
                st.unmapped_bytes[name] += int(byt[sel].sum())
        self._count_edges(flows, reason)
        ok = reason < 0
        if not ok.any():
            return
        n = len(self.nodes)
        kind = self._kinds_of(flows.column("category"))
        ts = pc.cast(flows.column("time_start"), pa.int64()).to_numpy()
        te = pc.cast(flows.column("time_end"), pa.int64()).to_numpy()
        ts, te, b = ts[ok], np.maximum(te[ok], ts[ok]), byt[ok]
        flat = (kind[ok] * n + src[ok]) * n + dst[ok]
        self._spread(ts, te, b, flat)

    def _count_edges(self, flows: pa.Table, reason: I64) -> None:
        bad = np.flatnonzero((reason == 0) | (reason == 1))
        if not bad.size or len(self.stats.unmapped_edges) >= self.MAX_EDGES_TRACKED:
            return
        col = np.where(reason[bad] == 0, 0, 1)
        for which, name in ((0, "ingress"), (1, "egress")):
            rows = bad[col == which]
            if not rows.size:
                continue
            vals = flows.column(name).take(pa.array(rows)).cast(pa.string())
            counts = pc.value_counts(pc.fill_null(vals, "")).to_pylist()
            for item in counts:
                key = f"{name}:{item['values'] or '(none)'}"
                self.stats.unmapped_edges[key] = (
                    self.stats.unmapped_edges.get(key, 0) + item["counts"]
                )

    def _spread(self, ts: I64, te: I64, byt: F64, flat: I64) -> None:
        step_ms = self.step_s * 1000
        b0 = ts // step_ms
        b1 = np.maximum(b0, (te - 1) // step_ms)
        k = (b1 - b0 + 1).astype(np.int64)
        if int(k.max()) > self.max_open:  # absurdly long flow: spread over its last part
            b0 = np.maximum(b0, b1 - self.max_open + 1)
            k = b1 - b0 + 1
        fid = np.repeat(np.arange(len(ts)), k)
        starts = np.cumsum(k) - k
        bucket = b0[fid] + (np.arange(len(fid)) - starts[fid])
        lo = np.maximum(ts[fid], bucket * step_ms)
        hi = np.minimum(te[fid], (bucket + 1) * step_ms)
        length = (te - ts)[fid]
        frac = np.where(length > 0, (hi - lo) / np.maximum(length, 1), (k[fid] == 1) * 1.0)
        part = byt[fid] * frac
        cells = flat[fid]
        if self._next is None:
            self._next = int(bucket.min())
        late = bucket < self._next
        if late.any():
            self.stats.late_records += int(np.unique(fid[late]).size)
            self.stats.late_bytes += int(part[late].sum())
        future = bucket >= self._next + self.max_open
        if future.any():
            self.stats.future_records += int(np.unique(fid[future]).size)
        keep = ~late & ~future
        size = len(self.kinds) * len(self.nodes) ** 2
        for bk in np.unique(bucket[keep]):
            sel = keep & (bucket == bk)
            acc = self._open.get(int(bk))
            add = np.bincount(cells[sel], weights=part[sel], minlength=size).astype(np.float64)
            self._open[int(bk)] = add if acc is None else acc + add
        mapped = np.unique(fid[keep])
        self.stats.mapped_records += int(mapped.size)
        self.stats.mapped_bytes += int(part[keep].sum())

    # -- output ------------------------------------------------------------------------------

    def close(self, now_s: int) -> list[RollupBucket]:
        """Every step that ended at least ``lateness`` before ``now_s`` and was not closed
        yet, in order (empty steps included)."""
        last = (int(now_s) - self.lateness_s) // self.step_s  # buckets < last are final
        if self._next is None:
            if not self._open:
                self._next = last
                return []
            self._next = min(self._open)
        out: list[RollupBucket] = []
        n = len(self.nodes)
        size = len(self.kinds) * n * n
        while self._next < last:
            acc = self._open.pop(self._next, None)
            dense: F64 = np.zeros(size) if acc is None else acc
            cube = dense.reshape(len(self.kinds), n * n)
            keep = self._cell_od >= 0
            per_od = np.zeros((len(self.kinds), len(self.od_pairs)))
            per_od[:, self._cell_od[keep]] = cube[:, keep]
            mbps = per_od * 8.0 / (self.step_s * 1e6)
            out.append(
                RollupBucket(self._next * self.step_s, self.step_s, self.kinds, self.od_pairs, mbps)
            )
            self._next += 1
        self.stats.buckets_closed += len(out)
        return out

    @property
    def next_start_s(self) -> int | None:
        """Start of the first step not closed yet (None before any flow or close)."""
        return None if self._next is None else self._next * self.step_s

    def resume_at(self, start_s: int) -> None:
        """Continue after a restart: steps before ``start_s`` are final already."""
        self._next = int(start_s) // self.step_s
        for b in [b for b in self._open if b < self._next]:
            del self._open[b]
