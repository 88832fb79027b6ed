"""Paris-style path check: TTL-limited UDP probes on the tunnel's own outer 5-tuple.

Every probe keeps (src, dst, UDP, sport, dport) fixed, as Paris traceroute does, so ECMP
hashes it like the tunnel's traffic; the routers' ICMP time-exceeded messages come back
through IP_RECVERR on the same socket and name each hop.
"""

from __future__ import annotations

import select
import socket
import struct
import time

from shadowcast.errors import ProbeError
from shadowcast.shadow.sockets import socket_in_netns

IP_RECVERR = 11
_EE = struct.Struct("=IBBBBII")  # struct sock_extended_err
ICMP_TIME_EXCEEDED = 11
ICMP_DEST_UNREACH = 3


def trace(
    src: str,
    sport: int,
    dst: str,
    dport: int = 4789,
    *,
    netns: str | None = None,
    max_hops: int = 16,
    timeout_s: float = 0.5,
) -> list[str]:
    """Addresses answering at TTL 1, 2, ... ('' when silent) until ``dst`` is reached."""
    sock = socket_in_netns(netns, socket.AF_INET, socket.SOCK_DGRAM)
    hops: list[str] = []
    try:
        sock.setsockopt(socket.SOL_IP, IP_RECVERR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((src, sport))
        sock.setblocking(False)
        payload = bytes(16)  # an all-zero VXLAN header: the far end drops it
        for ttl in range(1, max_hops + 1):
            sock.setsockopt(socket.SOL_IP, socket.IP_TTL, ttl)
            sock.sendto(payload, (dst, dport))
            hop, kind = _wait_error(sock, timeout_s)
            hops.append(hop)
            if hop == dst or kind == ICMP_DEST_UNREACH or (hop == "" and ttl > 1 and kind < 0):
                break
    except OSError as exc:
        raise ProbeError(f"path check {src}:{sport} -> {dst}:{dport}: {exc}") from exc
    finally:
        sock.close()
    return hops


def _wait_error(sock: socket.socket, timeout_s: float) -> tuple[str, int]:
    deadline = time.monotonic() + timeout_s
    while (left := deadline - time.monotonic()) > 0:
        select.select([sock], [], [sock], left)
        try:
            _data, anc, _flags, _addr = sock.recvmsg(512, 512, socket.MSG_ERRQUEUE)
        except BlockingIOError:
            try:  # a normal reply (nobody answers VXLAN, but be safe)
                sock.recv(512)
            except OSError:
                pass
            continue
        for level, kind, raw in anc:
            if level == socket.SOL_IP and kind == IP_RECVERR and len(raw) >= _EE.size + 8:
                _errno, _origin, icmp_type, _code, _pad, _info, _d = _EE.unpack_from(raw)
                offender = socket.inet_ntoa(raw[_EE.size + 4 : _EE.size + 8])
                return offender, icmp_type
    return "", -1
