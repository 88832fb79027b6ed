"""Sampled frame headers -> 5-tuples, vectorised over a batch (sFlow, IPFIX IE 315).

Ethernet, up to two 802.1Q / 802.1ad tags, IPv4 / IPv6, TCP / UDP ports and TCP flags.
Every byte read is bounds-checked against the row's valid length (zero beyond it).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from shadowcast.collect.columns import v4_to_16

MAX_HEADER = 256


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
    rows = np.arange(n)

    def at(pos: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        ok = pos < lens
        return np.where(ok, buf[rows, np.minimum(pos, width - 1)], 0).astype(np.int64)

    def u16(pos: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        return (at(pos) << 8) | at(pos + 1)

    off = np.full(n, 12, dtype=np.int64)
    etype = u16(off)
    for _ in range(2):
        tagged = (etype == 0x8100) | (etype == 0x88A8)
        off = off + 4 * tagged
        etype = np.where(tagged, u16(off), etype)
    off = off + 2
    v4 = (etype == 0x0800) & (at(off) >> 4 == 4)
    v6 = (etype == 0x86DD) & (at(off) >> 4 == 6)
    proto = np.where(v4, at(off + 9), np.where(v6, at(off + 6), 0))
    tos = np.where(v4, at(off + 1), np.where(v6, ((at(off) & 15) << 4) | (at(off + 1) >> 4), 0))
    frag = np.where(v4, u16(off + 6) & 0x1FFF, 0)
    l4 = off + np.where(v4, (at(off) & 15) * 4, 40)
    has_ports = (v4 | v6) & ((proto == 6) | (proto == 17)) & (frag == 0) & (l4 + 4 <= lens)
    src_port = np.where(has_ports, u16(l4), 0)
    dst_port = np.where(has_ports, u16(l4 + 2), 0)
    flags = np.where(has_ports & (proto == 6), at(l4 + 13), 0)
    addr = np.zeros((n, 2, 16), dtype=np.uint8)
    k4 = np.arange(4)
    k16 = np.arange(16)
    for side, (o4, o6) in enumerate(((12, 8), (16, 24))):
        idx4 = np.minimum(off[:, None] + o4 + k4, width - 1)
        idx6 = np.minimum(off[:, None] + o6 + k16, width - 1)
        a4 = v4_to_16(buf[rows[:, None], idx4].copy().view("V4").reshape(n))
        a6 = buf[rows[:, None], idx6]
        addr[:, side] = np.where(v4[:, None], a4, np.where(v6[:, None], a6, 0))
    return {
        "ip": (v4 | v6),
        "src_addr": addr[:, 0],
        "dst_addr": addr[:, 1],
        "src_port": src_port,
        "dst_port": dst_port,
        "proto": proto,
        "tos": tos,
        "tcp_flags": flags,
    }
