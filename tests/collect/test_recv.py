"""The burst receiver on loopback: payloads whole and in order, sources as text the way
the socket module writes them, IPv4 and IPv6 sockets, recvmmsg and its fallback alike,
bounded bytes per batch and memory given back after large datagrams."""

from __future__ import annotations

import os
import socket

import pytest

from shadowcast.collect.recv import PAGE, SLOT, Receiver
from shadowcast.collect.server import open_udp_sockets

PAYLOADS = [os.urandom(n) for n in (0, 1, 28, 1400, 9000, 65507)] + [b"x" * 300] * 40


def _send(port: int, family: socket.AddressFamily, src: str, dest: str) -> None:
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((src, 0))
        for p in PAYLOADS:
            s.sendto(p, (dest, port))


@pytest.mark.parametrize("use_recvmmsg", [True, False])
def test_datagrams_sources_and_order(use_recvmmsg: bool) -> None:
    socks = open_udp_sockets("::", [0], 1, 4 << 20)
    ((port, (sock,)),) = socks.items()
    sock.setblocking(False)
    try:
        _send(port, socket.AF_INET, "127.0.0.7", "127.0.0.1")
        _send(port, socket.AF_INET6, "::1", "::1")
        rx = Receiver(len(PAYLOADS) * 2, max_bytes=1 << 30, use_recvmmsg=use_recvmmsg)
        while rx.fill(sock):
            pass
        dg = rx.batch()
        assert len(dg) == 2 * len(PAYLOADS)
        assert [dg.payload(i) for i in range(len(dg))] == PAYLOADS * 2
        assert [dg.host(i) for i in range(len(dg))] == ["127.0.0.7"] * len(PAYLOADS) + [
            "::1"
        ] * len(PAYLOADS)
        assert dg.first_seen() == ["127.0.0.7", "::1"]
        assert rx.bytes == 2 * sum(map(len, PAYLOADS))
        assert rx.fill(sock) == 0  # empty: EAGAIN is not an error
    finally:
        sock.close()


def test_a_batch_stops_at_its_byte_bound_and_large_slots_are_released() -> None:
    socks = open_udp_sockets("127.0.0.1", [0], 1, 4 << 20)
    ((port, (sock,)),) = socks.items()
    sock.setblocking(False)
    big = b"\xab" * 60_000
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(20):
                s.sendto(big, ("127.0.0.1", port))
        rx = Receiver(64, max_bytes=5 * 60_000)
        while rx.fill(sock) and not rx.full:
            pass
        assert rx.full and 5 <= rx.count <= 6  # bounded to about max_bytes
        assert rx.batch().payload(0) == big
        rx.clear()  # gives back the pages past the first of each large slot
        assert rx.buf[0, SLOT - 1] == 0 and rx.buf[0, PAGE] == 0
        got = 0
        while n := rx.fill(sock):
            got += n
            if rx.full:
                rx.clear()
        assert got == 20 - 5 or got == 20 - 6
    finally:
        sock.close()
