"""Counters and AF_PACKET captures inside lab namespaces (what actually went on the wire)."""

from __future__ import annotations

import json
import socket
import struct
import time
from dataclasses import dataclass

from shadowcast.lab import netns
from shadowcast.shadow.sockets import SO_TIMESTAMPNS

ETH_P_ALL = 0x0003


@dataclass(frozen=True, slots=True)
class UdpFrame:
    src: str
    dst: str
    sport: int
    dport: int
    length: int
    inner: bytes  # UDP payload
    ts: float  # kernel timestamp (Unix seconds)


def link_counters(ns: str) -> dict[str, tuple[int, int]]:
    """``{device: (rx_packets, tx_packets)}`` for every device in ``ns``."""
    out = json.loads(netns.ip(ns, "-s", "-j", "link", "show"))
    return {
        d["ifname"]: (int(d["stats64"]["rx"]["packets"]), int(d["stats64"]["tx"]["packets"]))
        for d in out
        if "stats64" in d
    }


def device_bytes(ns: str) -> dict[str, tuple[int, int]]:
    """``{device: (rx_bytes, tx_bytes)}`` for every device in ``ns``."""
    out = json.loads(netns.ip(ns, "-s", "-j", "link", "show"))
    return {
        d["ifname"]: (int(d["stats64"]["rx"]["bytes"]), int(d["stats64"]["tx"]["bytes"]))
        for d in out
        if "stats64" in d
    }


def qdisc_bytes(ns: str, dev: str) -> int:
    """Bytes the root qdisc of ``dev`` has sent (tc counters: the ground truth of load)."""
    out = json.loads(netns.run(["ip", "netns", "exec", ns, "tc", "-s", "-j", "qdisc", "show",
                                "dev", dev]))  # fmt: skip
    return sum(int(q.get("bytes", 0)) for q in out if q.get("root"))


class Capture:
    """An AF_PACKET socket on one device in a namespace; ``udp()`` parses what arrived."""

    def __init__(self, ns: str, dev: str) -> None:
        self.sock = netns.socket_in_netns(
            ns, socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL)
        )
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.sock.bind((dev, 0))
        self.sock.setblocking(False)

    def udp(self) -> list[UdpFrame]:
        frames: list[UdpFrame] = []
        while True:
            try:
                raw, anc, _f, _a = self.sock.recvmsg(65_535, 64)
            except BlockingIOError:
                return frames
            ts = time.time()
            for level, kind, data in anc:
                if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
                    sec, nsec = struct.unpack_from("=qq", data)
                    ts = sec + nsec * 1e-9
            if len(raw) < 42 or raw[12:14] != b"\x08\x00":
                continue
            ihl = (raw[14] & 0x0F) * 4
            if raw[23] != socket.IPPROTO_UDP or len(raw) < 14 + ihl + 8:
                continue
            u = 14 + ihl
            sport, dport, length = struct.unpack_from(">HHH", raw, u)
            frames.append(
                UdpFrame(
                    socket.inet_ntoa(raw[26:30]),
                    socket.inet_ntoa(raw[30:34]),
                    sport,
                    dport,
                    length,
                    raw[u + 8 :],
                    ts,
                )
            )

    def close(self) -> None:
        self.sock.close()
