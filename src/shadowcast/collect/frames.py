"""Sampled frame headers -> 5-tuples, vectorised over a batch (sFlow, IPFIX IE 315).

Ethernet, up to two 802.1Q / 802.1ad tags, IPv4 / IPv6, TCP / UDP ports and TCP flags.
Every byte read is checked against the row's valid length (zero beyond it), so what a
row holds past its length does not matter. Each row's network and transport headers are
cut out with one window copy each (no per-field gathers).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

from shadowcast.collect.columns import v4_to_16

MAX_HEADER = 256
_L3 = 40  # bytes of network header read (IPv6 fixed header; IPv4 with both addresses)
_L4 = 14  # bytes of transport header read (ports and TCP flags)
_PAD = 22 + 60 + _L4  # the furthest a read may start past a row's first byte, plus its size

I64 = npt.NDArray[np.int64]


def parse_headers(headers: list[bytes]) -> dict[str, npt.NDArray[np.generic]]:
    """Ethernet frames (truncated) -> 5-tuple columns, all rows at once."""
    n = len(headers)
    width = max(64, min(MAX_HEADER, max((len(h) for h in headers), default=0)))
    buf = np.frombuffer(
        b"".join(h[:width].ljust(width, b"\x00") for h in headers), dtype=np.uint8
    ).reshape(n, width)
    lens = np.array([min(len(h), width) for h in headers], dtype=np.int64)
    return parse_frames(buf, lens)


def parse_frames(
    buf: npt.NDArray[np.uint8], lens: npt.NDArray[np.int64]
) -> dict[str, npt.NDArray[np.generic]]:
    """An (n, width) matrix of Ethernet frame starts (``lens`` valid bytes per row)."""
    n, width = buf.shape
    lens = np.minimum(np.asarray(lens, dtype=np.int64), width)
    flat = np.concatenate([np.ascontiguousarray(buf).reshape(-1), np.zeros(_PAD, np.uint8)])
    base = np.arange(n, dtype=np.int64) * width

    def block(start: I64, size: int) -> npt.NDArray[np.uint8]:
        """``size`` bytes from ``start`` of each row, zero past the row's length."""
        raw: npt.NDArray[np.uint8] = sliding_window_view(flat, size)[
            base + np.minimum(start, width)
        ]
        short = lens - start < size
        if short.any():
            rows = np.flatnonzero(short)
            keep = np.arange(size)[None, :] < (lens - start)[rows, None]
            raw[rows] = np.where(keep, raw[rows], np.uint8(0))
        return raw

    def byte(b: npt.NDArray[np.uint8], col: int) -> I64:
        return b[:, col].astype(np.int64)

    def u16(b: npt.NDArray[np.uint8], col: int) -> I64:
        return (byte(b, col) << 8) | byte(b, col + 1)

    l2 = block(np.zeros(n, dtype=np.int64), 22)
    etype = u16(l2, 12)
    off = np.full(n, 12, dtype=np.int64)
    for k in (16, 20):  # the type after each of up to two tags
        tagged = (etype == 0x8100) | (etype == 0x88A8)
        off = off + 4 * tagged
        etype = np.where(tagged, u16(l2, k), etype)
    off = off + 2
    l3 = block(off, _L3)
    b0 = byte(l3, 0)
    v4 = (etype == 0x0800) & (b0 >> 4 == 4)
    v6 = (etype == 0x86DD) & (b0 >> 4 == 6)
    proto = np.where(v4, byte(l3, 9), np.where(v6, byte(l3, 6), 0))
    tos = np.where(v4, byte(l3, 1), np.where(v6, ((b0 & 15) << 4) | (byte(l3, 1) >> 4), 0))
    frag = np.where(v4, u16(l3, 6) & 0x1FFF, 0)
    l4_at = off + np.where(v4, (b0 & 15) * 4, 40)
    l4 = block(l4_at, _L4)
    has_ports = (v4 | v6) & ((proto == 6) | (proto == 17)) & (frag == 0) & (l4_at + 4 <= lens)
    src_port = np.where(has_ports, u16(l4, 0), 0)
    dst_port = np.where(has_ports, u16(l4, 2), 0)
    flags = np.where(has_ports & (proto == 6), byte(l4, 13), 0)
    addr = []
    all4, any6 = bool(v4.all()), bool(v6.any())
    for o4, o6 in ((12, 8), (16, 24)):
        a4 = v4_to_16(np.ascontiguousarray(l3[:, o4 : o4 + 4]).view("V4").reshape(n))
        if all4:  # the common case: one copy
            addr.append(a4)
            continue
        a6 = l3[:, o6 : o6 + 16] if any6 else np.uint8(0)
        addr.append(np.where(v4[:, None], a4, np.where(v6[:, None], a6, np.uint8(0))))
    return {
        "ip": (v4 | v6),
        "src_addr": addr[0],
        "dst_addr": addr[1],
        "src_port": src_port,
        "dst_port": dst_port,
        "proto": proto,
        "tos": tos,
        "tcp_flags": flags,
    }
