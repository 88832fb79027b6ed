"""Synthetic FLOW_SCHEMA batches for the profile tests and bench (vectorised)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from shadowcast.records import FLOW_SCHEMA

APPS = ("NetFlix", "Zoom", "BitTorrent", "HTTP", "Steam", "", "DNS", "TLS.YouTube")


def v4_column(values: np.ndarray) -> pa.Array:
    """binary(16) IPv4-mapped addresses from uint32 values."""
    n = len(values)
    b = np.zeros((n, 16), np.uint8)
    b[:, 10:12] = 255
    b[:, 12:16] = np.ascontiguousarray(values.astype(">u4")).view(np.uint8).reshape(n, 4)
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, pa.py_buffer(b.tobytes())])


def make_flows(
    n: int,
    seed: int = 0,
    t0_ms: int = 1_700_000_000_000,
    span_s: int = 3600,
    mean_dur_ms: float = 20_000,
    apps: Sequence[str] = APPS,
    exporters: Sequence[str] = ("192.0.2.1",),
    sampled_share: float = 0.5,
    src_net: int = 0x0A010000,  # 10.1.0.0
    dst_net: int = 0x0A020000,  # 10.2.0.0
) -> pa.Table:
    rng = np.random.default_rng(seed)
    ts = t0_ms + rng.integers(0, span_s * 1000, n)
    dur = rng.exponential(mean_dur_ms, n).astype(np.int64)
    a = np.array(apps, dtype=object)[rng.integers(0, len(apps), n)]
    ex = np.array(exporters, dtype=object)[rng.integers(0, len(exporters), n)]
    tsz = pa.timestamp("ms", tz="UTC")
    cols = {
        "time_start": pa.array(ts).cast(tsz),
        "time_end": pa.array(ts + dur).cast(tsz),
        "exporter": pa.array(ex.tolist(), pa.string()),
        "src_addr": v4_column(src_net + rng.integers(0, 65536, n)),
        "dst_addr": v4_column(dst_net + rng.integers(0, 65536, n)),
        "src_port": pa.array(rng.integers(1024, 65535, n).astype(np.uint16)),
        "dst_port": pa.array(rng.integers(1, 1024, n).astype(np.uint16)),
        "proto": pa.array(np.where(rng.random(n) < 0.7, 6, 17).astype(np.uint8)),
        "tcp_flags": pa.array(np.zeros(n, np.uint8)),
        "tos": pa.array(np.zeros(n, np.uint8)),
        "src_as": pa.array(np.zeros(n, np.uint32)),
        "dst_as": pa.array(np.zeros(n, np.uint32)),
        "bytes": pa.array(rng.integers(40, 10_000_000, n).astype(np.uint64)),
        "packets": pa.array(rng.integers(1, 5000, n).astype(np.uint64)),
        "sampling_rate": pa.array(
            np.where(rng.random(n) < sampled_share, 1000, 1).astype(np.uint32)
        ),
        "in_if": pa.array(rng.integers(1, 5, n).astype(np.uint32)),
        "out_if": pa.array(rng.integers(1, 5, n).astype(np.uint32)),
        "app": pa.array(a.tolist(), pa.string()),
        "category": pa.array([""] * n, pa.string()),
        "app_source": pa.array(np.where(a != "", "exporter", "").tolist(), pa.string()),
        "app_confidence": pa.array(np.zeros(n, np.float32)),
        "src_site": pa.array([""] * n, pa.string()),
        "dst_site": pa.array([""] * n, pa.string()),
    }
    return pa.table([cols[f.name] for f in FLOW_SCHEMA], schema=FLOW_SCHEMA)


def one_flow(**kw: object) -> pa.Table:
    """A one-row flow table; keyword arguments override columns."""
    base: dict[str, object] = {
        "time_start": 1_700_000_000_000,
        "time_end": 1_700_000_001_000,
        "exporter": "192.0.2.1",
        "src_addr": "10.1.0.1",
        "dst_addr": "10.2.0.1",
        "src_port": 40000,
        "dst_port": 443,
        "proto": 6,
        "bytes": 1000,
        "packets": 10,
        "sampling_rate": 1,
        "in_if": 1,
        "out_if": 2,
        "app": "",
        "app_source": "",
    }
    base.update(kw)
    rows = {}
    for f in FLOW_SCHEMA:
        v = base.get(f.name)
        if f.name in ("src_addr", "dst_addr"):
            import ipaddress

            ip = ipaddress.ip_address(str(v))
            packed = (ipaddress.IPv6Address("::ffff:" + str(ip)) if ip.version == 4 else ip).packed
            rows[f.name] = pa.array([packed], f.type)
        elif pa.types.is_timestamp(f.type):
            rows[f.name] = pa.array([v], pa.int64()).cast(f.type)
        elif v is None:
            zero: object = "" if pa.types.is_string(f.type) else 0
            rows[f.name] = pa.array([zero], f.type)
        else:
            rows[f.name] = pa.array([v], f.type)
    return pa.table([rows[f.name] for f in FLOW_SCHEMA], schema=FLOW_SCHEMA)
