"""The replay's routers: their addresses, their sites file, and the flow records they export.

Router ``i`` owns the customer prefix ``10.(i>>8).(i&255).0/24`` (its site) and exports
flows from its own loopback address ``127.1.x.y``: each step, one flow record per (OD pair,
traffic kind) entering at the router, sized by what the simulated network carried. The
sites file the profiler gets names every router as a site with its prefix and every
exporter with its router, so flows map to (ingress, egress) routers exactly as an
operator's sites file would map them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shadowcast.profile.where import ExporterSpec, SitesFile, SiteSpec
from shadowcast.records import F64, Topology
from shadowcast.replay.source import KIND_APPS
from shadowcast.store.arrow import dict_array

MEAN_PACKET = 1200
TS = pa.timestamp("ms", tz="UTC")


def exporter_address(i: int) -> str:
    a = i + 1
    return f"127.1.{a >> 8}.{a & 255}"


def router_prefix(i: int) -> str:
    return f"10.{i >> 8}.{i & 255}.0/24"


def sites_for(topology: Topology) -> SitesFile:
    """The replay's sites file: a site per router (its prefix), an exporter per router."""
    return SitesFile(
        sites={n: SiteSpec(prefixes=[router_prefix(i)]) for i, n in enumerate(topology.nodes)},
        exporters={exporter_address(i): ExporterSpec(site=n) for i, n in enumerate(topology.nodes)},
    )


def _addresses(idx: npt.NDArray[np.int64], host: int) -> pa.Array:
    out = np.zeros((len(idx), 16), dtype=np.uint8)
    out[:, 10:12] = 255
    out[:, 12] = 10
    out[:, 13] = (idx >> 8) & 255
    out[:, 14] = idx & 255
    out[:, 15] = host
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), len(idx), [None, pa.py_buffer(np.ascontiguousarray(out).tobytes())]
    )


class StepExporter:
    """Builds each step's flow records, grouped by exporting router."""

    def __init__(self, topology: Topology, od_pairs: Sequence[tuple[str, str]], step_s: int):
        index = topology.node_index()
        self.src = np.array([index[s] for s, _ in od_pairs], dtype=np.int64)
        self.dst = np.array([index[d] for _, d in od_pairs], dtype=np.int64)
        self.step_s = int(step_s)
        self.n_routers = len(topology.nodes)
        self.seq = np.zeros(self.n_routers, dtype=np.int64)  # each exporter's IPFIX sequence

    def flows(self, t_s: int, carried: Mapping[str, F64]) -> pa.Table:
        """One record per (OD pair, kind) with traffic in the step starting at ``t_s``;
        ``router`` (int) says which router exports it."""
        kinds = sorted(carried)
        parts_od: list[npt.NDArray[np.int64]] = []
        parts_kind: list[npt.NDArray[np.int64]] = []
        parts_bytes: list[npt.NDArray[np.uint64]] = []
        for k_i, k in enumerate(kinds):
            byts = np.rint(np.asarray(carried[k], np.float64) * self.step_s * 1e6 / 8)
            keep = np.flatnonzero(byts >= 1)
            parts_od.append(keep)
            parts_kind.append(np.full(len(keep), k_i, dtype=np.int64))
            parts_bytes.append(byts[keep].astype(np.uint64))
        od = np.concatenate(parts_od) if parts_od else np.zeros(0, np.int64)
        kind = np.concatenate(parts_kind) if parts_kind else np.zeros(0, np.int64)
        byts = np.concatenate(parts_bytes) if parts_bytes else np.zeros(0, np.uint64)
        n = len(od)
        apps = [KIND_APPS.get(k, (k, 6, 443)) for k in kinds]
        protos = np.array([a[1] for a in apps] or [6], dtype=np.uint8)
        ports = np.array([a[2] for a in apps] or [443], dtype=np.uint16)
        start = np.full(n, t_s * 1000, dtype=np.int64)
        return pa.table(
            {
                "router": pa.array(self.src[od].astype(np.int32)),
                "time_start": pa.array(start, pa.int64()).cast(TS),
                "time_end": pa.array(start + self.step_s * 1000 - 1, pa.int64()).cast(TS),
                "src_addr": _addresses(self.src[od], 1),
                "dst_addr": _addresses(self.dst[od], 1),
                "src_port": pa.array((40000 + od % 20000).astype(np.uint16)),
                "dst_port": pa.array(ports[kind] if n else np.zeros(0, np.uint16)),
                "proto": pa.array(protos[kind] if n else np.zeros(0, np.uint8)),
                "bytes": pa.array(byts),
                "packets": pa.array(byts // MEAN_PACKET + 1),
                "in_if": pa.array(np.ones(n, dtype=np.uint32)),
                "out_if": pa.array(np.full(n, 2, dtype=np.uint32)),
                "app": dict_array(kind, [a[0] for a in apps]),
            }
        )

    def by_router(self, flows: pa.Table) -> list[tuple[int, pa.Table]]:
        """The records of each exporting router (``router`` column dropped)."""
        r = flows.column("router").to_numpy()
        order = np.argsort(r, kind="stable")
        rs = r[order]
        cuts = np.flatnonzero(np.diff(rs)) + 1
        body = flows.drop_columns(["router"]).take(pa.array(order))
        out = []
        for a, b in zip(np.r_[0, cuts], np.r_[cuts, len(rs)], strict=True):
            if b > a:
                out.append((int(rs[a]), body.slice(int(a), int(b - a))))
        return out

    def messages(self, flows: pa.Table) -> list[tuple[int, list[bytes], int]]:
        """Each exporting router's IPFIX messages for ``flows`` (encoded in one pass), with
        its sequence numbers continuing from its earlier messages: (router, messages,
        records)."""
        from shadowcast.collect.synth import ipfix_export_groups

        r = flows.column("router").to_numpy()
        order = np.argsort(r, kind="stable")
        rs = r[order]
        body = flows.drop_columns(["router"]).take(pa.array(order))
        cuts = np.r_[0, np.flatnonzero(np.diff(rs)) + 1, len(rs)]
        bounds = [(int(a), int(b)) for a, b in zip(cuts[:-1], cuts[1:], strict=True) if b > a]
        routers = [int(rs[a]) for a, _ in bounds]
        msgs = ipfix_export_groups(
            body,
            bounds,
            app_mode="id",
            per_packet=30,
            seq_start=[int(self.seq[x]) for x in routers],
        )
        # the sequence counts data records, and the options records (application names)
        # sent with the templates every 20 messages
        apps = len(set(body.column("app").unique().to_pylist()) - {""})
        out = []
        for x, (a, b), m in zip(routers, bounds, msgs, strict=True):
            out.append((x, m, b - a))
            self.seq[x] += (b - a) + apps * ((len(m) + 19) // 20)
        return out


def as_collected(flows: pa.Table) -> pa.Table:
    """What the collector would have decoded from ``flows`` (``FLOW_SCHEMA``; ``--direct``):
    the exporter address of each record's router, sampling 1."""
    from shadowcast.records import FLOW_SCHEMA

    n = flows.num_rows
    routers = flows.column("router").to_numpy()
    names = sorted(set(routers.tolist()))
    codes = np.searchsorted(np.array(names), routers) if n else np.zeros(0, np.int64)
    cols: dict[str, pa.Array] = {}
    for f in FLOW_SCHEMA:
        if f.name in flows.column_names:
            cols[f.name] = flows.column(f.name).cast(f.type)
        elif f.name == "exporter":
            cols[f.name] = dict_array(codes, [exporter_address(i) for i in names]).cast(f.type)
        elif f.name == "sampling_rate":
            cols[f.name] = pa.array(np.ones(n, np.uint32))
        elif f.name == "app_source":
            cols[f.name] = pa.array(["exporter"] * n, f.type)
        elif pa.types.is_string(f.type):
            cols[f.name] = pa.array([""] * n, f.type)
        else:
            cols[f.name] = pa.array(np.zeros(n), pa.float64()).cast(f.type)
    return pa.table(cols, schema=FLOW_SCHEMA)
