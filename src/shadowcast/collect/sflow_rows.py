"""sFlow flow samples of one batch as columns, and the flow table made from them.

Both walks (:mod:`sflow_batch` with numpy, :meth:`sflow.SFlowDecoder.walk` in Python)
produce :class:`FlowRows`; :func:`flow_table` parses the sampled headers of all rows at
once (:func:`frames.parse_frames`) and scales by the sampling rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shadowcast.collect import columns
from shadowcast.collect.frames import MAX_HEADER, parse_frames
from shadowcast.records import FLOW_SCHEMA

if TYPE_CHECKING:
    from shadowcast.collect.sflow import SFlowDecoder

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
BOOL = npt.NDArray[np.bool_]
# sampled IP record: length, protocol, ports, TCP flags, ToS, then the two addresses
IpData = tuple[int, int, int, int, int, int, bytes, bytes]
# ((exporter index, datagram << 16 | sample), rate, in_if, out_if, frame length,
#  sampled header with its Ethernet header, sampled IP record when there is no header)
Sample = tuple[tuple[int, int], int, int, int, int, bytes, IpData | None]
MIN_HEADER = 64  # header matrices are at least this wide (and at most MAX_HEADER)


@dataclass(frozen=True, slots=True)
class FlowRows:
    """One entry per usable flow sample, in any order (``order`` gives arrival)."""

    exporter: I64  # index into the batch's exporters
    order: I64  # datagram << 16 | sample
    rate: I64
    in_if: I64
    out_if: I64
    frame_len: I64
    header: U8  # (n, width): sampled frame (Ethernet first), zero past hdr_len
    hdr_len: I64  # 0: no header
    ip: I64  # (n, 6) length proto src_port dst_port tcp_flags tos; used when no header
    has_ip: BOOL
    src: U8  # (n, 16) of the IP record
    dst: U8

    def __len__(self) -> int:
        return len(self.order)


def header_width(longest: int) -> int:
    return max(MIN_HEADER, min(MAX_HEADER, longest))


def rows_of(samples: list[Sample]) -> FlowRows:
    """Rows from the Python walk's samples."""
    n = len(samples)
    width = header_width(max((len(s[5]) for s in samples), default=0))
    raw = b"".join(s[5][:width].ljust(width, b"\0") for s in samples)
    no_ip = (0, 0, 0, 0, 0, 0, bytes(16), bytes(16))
    ips = [s[6] or no_ip for s in samples]
    meta = np.array([(*s[0], *s[1:5]) for s in samples], dtype=np.int64).reshape(n, 6)
    return FlowRows(
        exporter=meta[:, 0],
        order=meta[:, 1],
        rate=meta[:, 2],
        in_if=meta[:, 3],
        out_if=meta[:, 4],
        frame_len=meta[:, 5],
        header=np.frombuffer(raw, dtype=np.uint8).reshape(n, width),
        hdr_len=np.array([min(len(s[5]), width) for s in samples], dtype=np.int64),
        ip=np.array([ip[:6] for ip in ips], dtype=np.int64).reshape(n, 6),
        has_ip=np.array([s[6] is not None for s in samples], dtype=bool),
        src=np.frombuffer(b"".join(ip[6] for ip in ips), dtype=np.uint8).reshape(n, 16),
        dst=np.frombuffer(b"".join(ip[7] for ip in ips), dtype=np.uint8).reshape(n, 16),
    )


def merge(parts: list[FlowRows]) -> FlowRows:
    """The rows of all ``parts`` (header matrices padded to the widest)."""
    parts = [p for p in parts if len(p)] or parts[:1]
    if len(parts) == 1:
        return parts[0]
    width = max(p.header.shape[1] for p in parts)
    headers = [np.pad(p.header, ((0, 0), (0, width - p.header.shape[1]))) for p in parts]

    def cat(name: str) -> Any:
        return np.concatenate([getattr(p, name) for p in parts])

    return FlowRows(
        exporter=cat("exporter"),
        order=cat("order"),
        rate=cat("rate"),
        in_if=cat("in_if"),
        out_if=cat("out_if"),
        frame_len=cat("frame_len"),
        header=np.concatenate(headers),
        hdr_len=cat("hdr_len"),
        ip=cat("ip"),
        has_ip=cat("has_ip"),
        src=cat("src"),
        dst=cat("dst"),
    )


def flow_table(
    dec: SFlowDecoder, exporters: tuple[str, ...], rows: FlowRows, received: float
) -> pa.Table:
    """``FLOW_SCHEMA`` rows: exporters in the order they first sent a sample, each
    exporter's samples in arrival order; sampling rates overridden and counted."""
    n = len(rows)
    if n == 0:
        return FLOW_SCHEMA.empty_table()
    exp = rows.exporter
    first = np.full(len(exporters), np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(first, exp, rows.order)
    rank = np.argsort(np.argsort(first, kind="stable"), kind="stable")
    key = (rank[exp] << 40) | rows.order
    perm: npt.NDArray[np.int64] | slice = slice(None)  # already in order: no copies
    if (key[1:] < key[:-1]).any():
        perm = np.argsort(key, kind="stable")
    exp = exp[perm]
    rate = rows.rate[perm].astype(np.uint64)
    override = np.array([dec.overrides.get(h, 0) for h in exporters], dtype=np.uint64)[exp]
    rate = np.where(override > 0, override, rate)
    unknown = rate == 0
    if unknown.any():
        counts = np.bincount(exp[unknown], minlength=len(exporters))
        for i in np.flatnonzero(counts).tolist():
            dec.stats.of(exporters[i]).unknown_sampling += int(counts[i])
        rate[unknown] = 1
    cols: dict[str, npt.NDArray[np.generic]] = {
        "src_addr": np.zeros((n, 16), np.uint8),
        "dst_addr": np.zeros((n, 16), np.uint8),
    }
    for name in ("src_port", "dst_port", "proto", "tos", "tcp_flags"):
        cols[name] = np.zeros(n, np.uint64)
    frame = rows.frame_len[perm].astype(np.uint64)
    hdr_len = rows.hdr_len[perm]
    has_hdr = hdr_len > 0
    if has_hdr.all():  # the common case: the columns as parsed
        parsed = parse_frames(np.ascontiguousarray(rows.header[perm]), hdr_len)
        cols.update({k: v for k, v in parsed.items() if k != "ip"})
    elif has_hdr.any():
        sel = np.arange(n)[perm][has_hdr]
        parsed = parse_frames(np.ascontiguousarray(rows.header[sel]), hdr_len[has_hdr])
        for name, v in parsed.items():
            if name != "ip":
                cols[name][has_hdr] = v
    ip_rows = rows.has_ip[perm] & ~has_hdr
    if ip_rows.any():
        at = np.arange(n)[perm][ip_rows]
        vals = rows.ip[at].astype(np.uint64)
        frame[ip_rows] = vals[:, 0]
        masks = (0xFF, 0xFFFF, 0xFFFF, 0xFF, 0xFF)
        for k, name in enumerate(("proto", "src_port", "dst_port", "tcp_flags", "tos")):
            cols[name][ip_rows] = vals[:, k + 1] & np.uint64(masks[k])
        cols["src_addr"][ip_rows] = rows.src[at]
        cols["dst_addr"][ip_rows] = rows.dst[at]
    ms = np.full(n, int(received * 1000), dtype=np.int64)
    cols.update(
        time_start=ms,
        time_end=ms,
        bytes=frame * rate,
        packets=rate,
        sampling_rate=rate,
        in_if=rows.in_if[perm],
        out_if=rows.out_if[perm],
    )
    names = columns.dict_str(list(exporters), exp.astype(np.int32))
    return columns.flow_table(n, cols, names)
