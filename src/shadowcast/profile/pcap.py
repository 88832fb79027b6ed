"""Flows from a packet capture through nfstream (nDPI), for training and evaluation.

The production pcap ingest lives with the collectors; this reader adds what the
behavioural classifier learns from (direction ratio, packet-size and inter-arrival
statistics) and what operator rules can match (``server_name``) as extra columns beside
:data:`shadowcast.records.FLOW_SCHEMA`.
"""

from __future__ import annotations

import ipaddress
import logging
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa

from shadowcast.errors import DataError
from shadowcast.extras import need
from shadowcast.records import FLOW_SCHEMA

log = logging.getLogger(__name__)

# extra per-flow statistics that only packet-level sources provide
EXTRA_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("server_name", pa.string()),
    ("dir_ratio", pa.float32()),  # src->dst bytes / all bytes
    ("ps_std", pa.float32()),
    ("ps_min", pa.float32()),
    ("ps_max", pa.float32()),
    ("iat_mean_ms", pa.float32()),
    ("iat_std_ms", pa.float32()),
    ("iat_max_ms", pa.float32()),
    ("up_mean_ps", pa.float32()),
    ("down_mean_ps", pa.float32()),
    # each direction alone: what a unidirectional NetFlow/IPFIX record of it would carry
    ("up_bytes", pa.uint64()),
    ("up_packets", pa.uint64()),
    ("up_duration_ms", pa.int64()),
    ("down_bytes", pa.uint64()),
    ("down_packets", pa.uint64()),
    ("down_duration_ms", pa.int64()),
)
PCAP_SCHEMA = pa.schema(list(FLOW_SCHEMA) + [pa.field(n, t) for n, t in EXTRA_FIELDS])

# nfstream application_confidence -> our confidence
_CONF = np.array([0.0, 0.5, 0.8, 0.8, 0.9, 1.0, 1.0, 1.0], dtype=np.float32)


def _packed(addresses: list[str]) -> list[bytes]:
    out = []
    for a in addresses:
        ip = ipaddress.ip_address(a)
        out.append(ipaddress.IPv6Address("::ffff:" + a).packed if ip.version == 4 else ip.packed)
    return out


def flows_from_pcap(
    path: Path, exporter: str = "pcap", idle_timeout: int = 120, active_timeout: int = 1800
) -> pa.Table:
    """All flows of one capture as a :data:`PCAP_SCHEMA` table (``app_source="ndpi"``);
    a flow longer than ``active_timeout`` seconds is cut into records, as exporters do."""
    nfstream = need("nfstream", "reading pcaps")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            df = nfstream.NFStreamer(
                source=str(path),
                statistical_analysis=True,
                n_dissections=20,
                idle_timeout=idle_timeout,
                active_timeout=active_timeout,
            ).to_pandas()
    except Exception as exc:
        raise DataError(f"{path}: nfstream could not read the capture: {exc}") from exc
    if df is None or len(df) == 0:
        return PCAP_SCHEMA.empty_table()
    n = len(df)
    total = df["bidirectional_bytes"].to_numpy(np.float64)
    conf = df["application_confidence"].to_numpy(np.int64).clip(0, len(_CONF) - 1)
    cols: dict[str, pa.Array] = {
        "time_start": pa.array(df["bidirectional_first_seen_ms"].to_numpy(np.int64)),
        "time_end": pa.array(df["bidirectional_last_seen_ms"].to_numpy(np.int64)),
        "exporter": pa.array([exporter] * n, pa.string()),
        "src_addr": pa.array(_packed(df["src_ip"].tolist()), pa.binary(16)),
        "dst_addr": pa.array(_packed(df["dst_ip"].tolist()), pa.binary(16)),
        "src_port": pa.array(df["src_port"].to_numpy(np.uint16)),
        "dst_port": pa.array(df["dst_port"].to_numpy(np.uint16)),
        "proto": pa.array(df["protocol"].to_numpy(np.uint8)),
        "tcp_flags": pa.array(np.zeros(n, np.uint8)),
        "tos": pa.array(np.zeros(n, np.uint8)),
        "src_as": pa.array(np.zeros(n, np.uint32)),
        "dst_as": pa.array(np.zeros(n, np.uint32)),
        "bytes": pa.array(total.astype(np.uint64)),
        "packets": pa.array(df["bidirectional_packets"].to_numpy(np.uint64)),
        "sampling_rate": pa.array(np.ones(n, np.uint32)),
        "in_if": pa.array(np.zeros(n, np.uint32)),
        "out_if": pa.array(np.zeros(n, np.uint32)),
        "app": pa.array(df["application_name"].astype(str).tolist(), pa.string()),
        "category": pa.array([""] * n, pa.string()),
        "app_source": pa.array(["ndpi"] * n, pa.string()),
        "app_confidence": pa.array(_CONF[conf]),
        "src_site": pa.array([""] * n, pa.string()),
        "dst_site": pa.array([""] * n, pa.string()),
        "server_name": pa.array(df["requested_server_name"].fillna("").astype(str).tolist()),
        "dir_ratio": pa.array(
            (df["src2dst_bytes"].to_numpy(np.float64) / np.maximum(total, 1)).astype(np.float32)
        ),
    }
    stats = {
        "ps_std": "bidirectional_stddev_ps",
        "ps_min": "bidirectional_min_ps",
        "ps_max": "bidirectional_max_ps",
        "iat_mean_ms": "bidirectional_mean_piat_ms",
        "iat_std_ms": "bidirectional_stddev_piat_ms",
        "iat_max_ms": "bidirectional_max_piat_ms",
        "up_mean_ps": "src2dst_mean_ps",
        "down_mean_ps": "dst2src_mean_ps",
    }
    for ours, theirs in stats.items():
        cols[ours] = pa.array(df[theirs].to_numpy(np.float32))
    for ours, theirs in (("up", "src2dst"), ("down", "dst2src")):
        cols[f"{ours}_bytes"] = pa.array(df[f"{theirs}_bytes"].to_numpy(np.uint64))
        cols[f"{ours}_packets"] = pa.array(df[f"{theirs}_packets"].to_numpy(np.uint64))
        cols[f"{ours}_duration_ms"] = pa.array(df[f"{theirs}_duration_ms"].to_numpy(np.int64))
    return pa.Table.from_arrays(
        [cols[f.name].cast(f.type) for f in PCAP_SCHEMA], schema=PCAP_SCHEMA
    )
