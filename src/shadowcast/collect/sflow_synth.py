"""Deterministic sFlow v5 datagrams (flow samples with raw Ethernet/IPv4 headers)."""

from __future__ import annotations

import struct
from collections.abc import Mapping

import numpy as np
import numpy.typing as npt


def _frame(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    proto: int,
    tos: int,
    vlan: int | None,
    size: int,
) -> bytes:
    eth = b"\x00\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb"
    if vlan is not None:
        eth += struct.pack("!HH", 0x8100, vlan)
    eth += b"\x08\x00"
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, tos, size - 14, 0, 0x4000, 64, proto, 0, src, dst)
    if proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 1, 0x50, 0x18, 1024, 0, 0)
    else:
        l4 = struct.pack("!HHHH", sport, dport, max(8, size - 34), 0)
    return (eth + ip + l4 + b"\x00" * 64)[:128]


def flow_sample(
    seq: int,
    rate: int,
    in_if: int,
    out_if: int,
    frame_len: int,
    header: bytes,
    expanded: bool = False,
) -> bytes:
    pad = (-len(header)) % 4
    raw = struct.pack("!IIII", 1, frame_len, 4, len(header)) + header + b"\x00" * pad
    rec = struct.pack("!II", 1, len(raw)) + raw
    if expanded:
        body = struct.pack(
            "!IIIIIIIIIII", seq, 0, in_if, rate, seq * rate, 0, 0, in_if, 0, out_if, 1
        )
        return struct.pack("!II", 3, len(body) + len(rec)) + body + rec
    body = struct.pack("!IIIIIIII", seq, in_if, rate, seq * rate, 0, in_if, out_if, 1)
    return struct.pack("!II", 1, len(body) + len(rec)) + body + rec


def counter_sample(
    seq: int, if_index: int, speed: int, in_oct: int, out_oct: int, in_pkts: int, out_pkts: int
) -> bytes:
    c = struct.pack(
        "!IIQIIQIIIIIIQIIIIII",
        if_index,
        6,
        speed,
        1,
        3,
        in_oct,
        in_pkts,
        0,
        0,
        0,
        0,
        0,
        out_oct,
        out_pkts,
        0,
        0,
        0,
        0,
        0,
    )
    rec = struct.pack("!II", 1, len(c)) + c
    body = struct.pack("!III", seq, if_index, 1) + rec
    return struct.pack("!II", 2, len(body)) + body


def datagram(agent: bytes, seq: int, uptime: int, samples: list[bytes]) -> bytes:
    return struct.pack("!II4sIIII", 5, 1, agent, 0, seq, uptime, len(samples)) + b"".join(samples)


def build_sflow(
    cols: Mapping[int, npt.NDArray[np.generic]],
    per_packet: int = 10,
    seed: int = 0,
    rate: int = 1000,
) -> list[bytes]:
    """One flow sample per flow (its first packet), counter samples every 10 datagrams."""
    rng = np.random.default_rng(seed)
    n = len(cols[8])
    src = np.asarray(cols[8]).tobytes()
    dst = np.asarray(cols[12]).tobytes()
    sport = np.asarray(cols[7]).tolist()
    dport = np.asarray(cols[11]).tolist()
    proto = np.asarray(cols[4]).tolist()
    tos = np.asarray(cols[5]).tolist()
    in_if = np.asarray(cols[10]).tolist()
    out_if = np.asarray(cols[14]).tolist()
    sizes = rng.integers(64, 1500, n).tolist()
    vlans = rng.integers(0, 4, n).tolist()
    agent = bytes([192, 0, 2, 1])
    out = []
    seq = 0
    for k, a in enumerate(range(0, n, per_packet)):
        samples = []
        for i in range(a, min(n, a + per_packet)):
            hdr = _frame(
                src[4 * i : 4 * i + 4],
                dst[4 * i : 4 * i + 4],
                sport[i],
                dport[i],
                proto[i],
                tos[i],
                100 + vlans[i] if vlans[i] else None,
                sizes[i],
            )
            seq += 1
            samples.append(flow_sample(seq, rate, in_if[i], out_if[i], sizes[i], hdr, i % 2 == 1))
        if k % 10 == 0:
            samples.append(counter_sample(k, 1 + k % 8, 10**10, k * 10**6, k * 2 * 10**6, k, 2 * k))
        out.append(datagram(agent, k + 1, 1000 * k, samples))
    return out
