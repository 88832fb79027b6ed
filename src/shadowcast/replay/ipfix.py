"""Send a replayed demand series through the real collection path.

Each step's per-application OD demand becomes one IPFIX flow record per (OD pair,
application) — 5-tuple on the OD pair's router addresses, applicationId with the NBAR2-style
options mapping, ingress/egress interface = source/destination router — sent over loopback
UDP to a running ``CollectServer`` that decodes and stores it like any exporter's traffic.
The demand series the replay then works on is read back from the stored flows, so what the
report shows is what crossed the collector (and any loss is counted, not hidden).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shadowcast.collect.loopback import LoopbackCollector
from shadowcast.collect.synth import ipfix_export
from shadowcast.errors import ShadowcastError
from shadowcast.records import F32, DemandSeries, Topology
from shadowcast.store.arrow import dict_array
from shadowcast.store.base import AggQuery, Store

# A plausible 5-tuple per application: (protocol, destination port).
APP_PORTS: Mapping[str, tuple[int, int]] = {
    "video": (6, 443),
    "web": (6, 443),
    "bulk": (6, 873),
    "voip": (17, 3478),
    "interactive": (17, 3074),
}
MEAN_PACKET = 1200


@dataclass
class FeedResult:
    records_sent: int
    packets_sent: int
    bytes_sent: int
    records_stored: int
    bytes_stored: int
    decode_errors: int
    socket_drops: int
    seconds: float
    demands: DemandSeries
    by_app: dict[str, F32]

    @property
    def stored_share(self) -> float:
        return self.bytes_stored / self.bytes_sent if self.bytes_sent else 1.0


def router_address(i: npt.NDArray[np.integer]) -> npt.NDArray[np.uint8]:
    """IPv4-mapped 10.x.y.1 per router index, as rows of 16 bytes."""
    out = np.zeros((len(i), 16), dtype=np.uint8)
    out[:, 10:12] = 255
    out[:, 12] = 10
    out[:, 13] = (np.asarray(i) >> 8) & 255
    out[:, 14] = np.asarray(i) & 255
    out[:, 15] = 1
    return out


def _fixed16(rows: npt.NDArray[np.uint8]) -> pa.Array:
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), len(rows), [None, pa.py_buffer(np.ascontiguousarray(rows).tobytes())]
    )


def flows_for(
    demands: DemandSeries,
    by_app: Mapping[str, F32],
    src: npt.NDArray[np.int32],
    dst: npt.NDArray[np.int32],
    t0: int,
    t1: int,
) -> pa.Table:
    """Flow records (FLOW_SCHEMA columns) for steps ``t0..t1``: one per OD pair and app."""
    apps = sorted(by_app)
    n_t, n_od, n_a = t1 - t0, len(src), len(apps)
    mbps = np.stack([by_app[a][t0:t1] for a in apps], axis=2)  # [t, od, app]
    byts = np.rint(mbps.astype(np.float64) * demands.step * 1e6 / 8).astype(np.uint64).reshape(-1)
    t_idx = np.repeat(np.arange(t0, t1), n_od * n_a)
    od_idx = np.tile(np.repeat(np.arange(n_od), n_a), n_t)
    app_idx = np.tile(np.arange(n_a), n_t * n_od)
    keep = byts > 0
    t_idx, od_idx, app_idx, byts = t_idx[keep], od_idx[keep], app_idx[keep], byts[keep]
    start_ms = demands.times.astype("datetime64[ms]").astype(np.int64)[t_idx]
    protos = np.array([APP_PORTS.get(a, (6, 443))[0] for a in apps], dtype=np.uint8)
    ports = np.array([APP_PORTS.get(a, (6, 443))[1] for a in apps], dtype=np.uint16)
    s, d = src[od_idx], dst[od_idx]
    ts = pa.array(start_ms, type=pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    te = pa.array(start_ms + demands.step * 1000 - 1, type=pa.int64()).cast(
        pa.timestamp("ms", tz="UTC")
    )
    return pa.table(
        {
            "time_start": ts,
            "time_end": te,
            "src_addr": _fixed16(router_address(s)),
            "dst_addr": _fixed16(router_address(d)),
            "src_port": pa.array((40000 + od_idx % 20000).astype(np.uint16)),
            "dst_port": pa.array(ports[app_idx]),
            "proto": pa.array(protos[app_idx]),
            "bytes": pa.array(byts),
            "packets": pa.array(byts // MEAN_PACKET + 1),
            "in_if": pa.array((s + 1).astype(np.uint32)),
            "out_if": pa.array((d + 1).astype(np.uint32)),
            "app": dict_array(app_idx, apps),
        }
    )


def feed_via_ipfix(
    topology: Topology,
    demands: DemandSeries,
    by_app: Mapping[str, F32],
    store: Store,
    *,
    records_per_s: float = 400_000,
    chunk_steps: int = 96,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
    drain_timeout_s: float = 60.0,
) -> FeedResult:
    """Export ``by_app`` as IPFIX to a collector on 127.0.0.1; rebuild the series it stored."""
    t_start = time.perf_counter()
    index = topology.node_index()
    src = np.array([index[s] for s, _ in demands.od_pairs], dtype=np.int32)
    dst = np.array([index[d] for _, d in demands.od_pairs], dtype=np.int32)
    sent_records = sent_packets = sent_bytes = 0
    with LoopbackCollector(store, workers=workers, records_per_s=records_per_s) as lc:
        for c0 in range(0, demands.steps, chunk_steps):
            c1 = min(demands.steps, c0 + chunk_steps)
            table = flows_for(demands, by_app, src, dst, c0, c1)
            packets = ipfix_export(table, app_mode="id", per_packet=30)
            lc.send(packets, table.num_rows)
            sent_records += table.num_rows
            sent_packets += len(packets)
            sent_bytes += int(table.column("bytes").to_numpy().sum())
            if progress is not None:
                progress(c1 - c0)
        lc.wait_stored(sent_records, idle_timeout_s=drain_timeout_s)
    snap = lc.snapshot()
    if lc.server.failures:
        raise ShadowcastError(f"the collector failed: {'; '.join(lc.server.failures)}")
    observed, observed_apps, stored_bytes = _read_back(store, topology, demands)
    return FeedResult(
        records_sent=sent_records,
        packets_sent=sent_packets,
        bytes_sent=sent_bytes,
        records_stored=snap.rows_stored,
        bytes_stored=stored_bytes,
        decode_errors=sum(e.decode_errors for e in snap.exporters.values()),
        socket_drops=sum(snap.socket_drops.values()),
        seconds=time.perf_counter() - t_start,
        demands=observed,
        by_app=observed_apps,
    )


def _read_back(
    store: Store, topology: Topology, demands: DemandSeries
) -> tuple[DemandSeries, dict[str, F32], int]:
    """Per-step, per-OD, per-application Mbit/s from the stored flow records."""
    agg = store.aggregate(
        AggQuery(
            table="flows", step_s=demands.step, by=("in_if", "out_if", "app"), values=("bytes",)
        )
    )
    t0 = demands.times[0].astype("datetime64[ms]").astype(np.int64)
    bucket = agg.column("bucket").cast(pa.int64()).to_numpy()
    row = (bucket - t0) // (demands.step * 1000)
    index = topology.node_index()
    n = len(topology.nodes)
    lut = np.full((n + 1, n + 1), -1, dtype=np.int64)
    for k, (s, d) in enumerate(demands.od_pairs):
        lut[index[s] + 1, index[d] + 1] = k
    ins = agg.column("in_if").to_numpy().astype(np.int64)
    outs = agg.column("out_if").to_numpy().astype(np.int64)
    inside = (ins <= n) & (outs <= n)
    col = np.where(inside, lut[np.minimum(ins, n), np.minimum(outs, n)], -1)
    enc = agg.column("app").combine_chunks().dictionary_encode()
    codes = enc.indices.to_numpy(zero_copy_only=False)
    names = [str(a) for a in enc.dictionary.to_pylist()]
    byts = agg.column("bytes").to_numpy().astype(np.float64)
    mbps = (byts * 8 / (demands.step * 1e6)).astype(np.float32)
    ok = (row >= 0) & (row < demands.steps) & (col >= 0)
    by_app = {}
    for code, a in enumerate(names):
        sel = ok & (codes == code)
        arr = np.zeros_like(demands.values)
        np.add.at(arr, (row[sel], col[sel]), mbps[sel])
        by_app[a] = arr
    total = np.zeros_like(demands.values)
    for arr in by_app.values():
        total += arr
    observed = DemandSeries(
        times=demands.times,
        od_pairs=demands.od_pairs,
        values=total,
        step=demands.step,
        nodes=demands.nodes,
        source=f"{demands.source} via IPFIX",
    )
    return observed, by_app, int(byts.sum())
