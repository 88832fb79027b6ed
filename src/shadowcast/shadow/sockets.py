"""UDP sockets with kernel receive timestamps (SO_TIMESTAMPNS) for asyncio readers."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from shadowcast.errors import ProbeError

SO_TIMESTAMPNS = 35  # linux/asm-generic/socket.h (SO_TIMESTAMPNS_OLD); also SCM_TIMESTAMPNS
_TS = struct.Struct("=qq")
IP_RECVTTL, IP_TTL = 12, 2  # linux/in.h
IPV6_RECVHOPLIMIT, IPV6_HOPLIMIT = 51, 52  # linux/in6.h
_ANC = socket.CMSG_SPACE(_TS.size) + 2 * socket.CMSG_SPACE(4)
MAX_DATAGRAM = 65_535
CLONE_NEWNET = 0x40000000
NETNS_DIR = "/var/run/netns"
T = TypeVar("T")


def _setns(ns: str) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    fd = os.open(os.path.join(NETNS_DIR, ns), os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({ns}): {os.strerror(err)}")
    finally:
        os.close(fd)


def call_in_netns(ns: str, fn: Callable[[], T]) -> T:
    """``fn()`` run inside namespace ``ns``, in a throw-away thread, so this process's own
    threads keep their namespace; what ``fn`` creates there (sockets) stays in ``ns``
    whichever thread uses it later. Root only; a failure to enter ``ns`` raises ProbeError,
    ``fn``'s own exceptions are re-raised as they are."""
    box: list[tuple[bool, object]] = []

    def worker() -> None:
        try:
            _setns(ns)
        except OSError as exc:
            box.append((False, ProbeError(f"cannot enter netns {ns}: {exc}")))
            return
        try:
            box.append((True, fn()))
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            box.append((False, exc))

    th = threading.Thread(target=worker, name=f"netns-{ns}")
    th.start()
    th.join()
    ok, res = box[0]
    if not ok:
        assert isinstance(res, BaseException)
        raise res
    return res  # type: ignore[return-value]


def socket_in_netns(ns: str | None, family: int, kind: int, proto: int = 0) -> socket.socket:
    """A socket created inside namespace ``ns`` (None: this one); see :func:`call_in_netns`."""
    if ns is None:
        return socket.socket(family, kind, proto)
    try:
        return call_in_netns(ns, lambda: socket.socket(family, kind, proto))
    except OSError as exc:
        raise ProbeError(f"cannot open a socket in netns {ns}: {exc}") from exc


def open_udp(host: str, port: int, netns: str | None = None) -> socket.socket:
    """A non-blocking UDP socket bound to ``(host, port)`` that reports kernel rx times."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket_in_netns(netns, family, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)
        sock.setblocking(False)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def drain(sock: socket.socket) -> Iterator[tuple[bytes, tuple[str, int], float, int]]:
    """Yield ``(payload, peer, kernel_rx_unix_s, ttl)`` for every datagram on ``sock``
    (``ttl`` is the received IP TTL / hop limit, 255 when the kernel did not say)."""
    errors = 0
    while True:
        try:
            data, anc, _flags, peer = sock.recvmsg(MAX_DATAGRAM, _ANC)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            # an ICMP error (ECONNREFUSED, ...) pending on the socket: consumed, go on
            errors += 1
            if errors > 64:
                return
            continue
        rx = time.time()
        ttl = 255
        for level, kind, raw in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(raw) >= _TS.size:
                sec, nsec = _TS.unpack_from(raw)
                rx = sec + nsec * 1e-9
            elif len(raw) >= 4 and (
                (level == socket.IPPROTO_IP and kind == IP_TTL)
                or (level == socket.IPPROTO_IPV6 and kind == IPV6_HOPLIMIT)
            ):
                ttl = int.from_bytes(raw[:4], sys.byteorder)
        yield data, (str(peer[0]), int(peer[1])), rx, ttl
