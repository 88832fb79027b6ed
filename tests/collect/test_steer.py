"""An exporter's datagrams reach one worker's socket, chosen by its address alone."""

from __future__ import annotations

import ipaddress
import select
import socket

import pytest

from shadowcast.collect.server import open_udp_sockets
from shadowcast.collect.steer import index_of


def _landing(socks: list[socket.socket], src: str, port: int, dest: str) -> int:
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((src, 0))  # a new source port each time
        s.sendto(b"x", (dest, port))
    ready, _, _ = select.select(socks, [], [], 2.0)
    assert len(ready) == 1, "the datagram did not arrive (or arrived twice)"
    ready[0].recvfrom(16)
    return socks.index(ready[0])


def test_an_exporter_keeps_its_socket_whatever_its_source_port() -> None:
    out = open_udp_sockets("127.0.0.1", [0], 2, 1 << 20)
    ((port, socks),) = out.items()
    try:
        seen: dict[int, set[int]] = {}
        for host in range(11, 19):
            for _ in range(3):
                seen.setdefault(host, set()).add(
                    _landing(socks, f"127.0.0.{host}", port, "127.0.0.1")
                )
        want = {h: {index_of(int(ipaddress.ip_address(f"127.0.0.{h}")), 2)} for h in seen}
        assert seen == want
        # consecutive addresses (routers' loopbacks) are dealt alike: 4 and 4
        assert sorted(sum(1 for v in seen.values() if v == {i}) for i in (0, 1)) == [4, 4]
    finally:
        for s in socks:
            s.close()


def test_dual_stack_sockets_steer_ipv6_and_ipv4_sources() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        out = open_udp_sockets("::", [0], 3, 1 << 20)
    except Exception as exc:  # noqa: BLE001 - a machine without IPv6 loopback
        pytest.skip(f"cannot bind [::]: {exc}")
    ((port, socks),) = out.items()
    try:
        assert _landing(socks, "::1", port, "::1") == index_of(1, 3)
        v4 = int(ipaddress.ip_address("127.0.0.42"))
        assert _landing(socks, "127.0.0.42", port, "127.0.0.1") == index_of(v4, 3)
    finally:
        for s in socks:
            s.close()
