"""Which worker reads an exporter's datagrams: chosen by the exporter's address alone.

Without a program, the kernel spreads the SO_REUSEPORT sockets of a port by a hash of the
whole 4-tuple, source port included: an exporter that restarts on another source port may
move to another worker (its templates stay behind, and its data waits for the next
template refresh), and with a few exporters the split depends on the ports they happen to
use (8 exporters over 2 workers: 6/2 or worse about one time in three). A classic BPF
program attached to the group (``SO_ATTACH_REUSEPORT_CBPF``, Linux 4.5) picks the socket
from the source address only, folded (``a ^ a >> 16``, then ``^ >> 8``) and taken modulo
the number of sockets: an exporter keeps its worker whatever its port, and consecutive
addresses (routers' loopbacks) are dealt round-robin.
"""

from __future__ import annotations

import ctypes
import logging
import socket
import struct

log = logging.getLogger(__name__)

SO_ATTACH_REUSEPORT_CBPF = 51
_NET = 0xFFF00000  # SKF_NET_OFF (-0x100000): offsets from the network header


def _insn(code: int, jt: int, jf: int, k: int) -> bytes:
    return struct.pack("HBBI", code, jt, jf, k & 0xFFFFFFFF)


def program(n: int) -> bytes:
    """The filter: socket index = fold(source address) mod ``n`` (IPv4, or the last 32
    bits of an IPv6 source)."""
    return b"".join(
        [
            _insn(0x30, 0, 0, _NET),  # ldb [net + 0]
            _insn(0x74, 0, 0, 4),  # rsh #4: the IP version
            _insn(0x15, 2, 0, 6),  # jeq #6 -> 5, else 3
            _insn(0x20, 0, 0, _NET + 12),  # ld [net + 12]: IPv4 source
            _insn(0x05, 0, 0, 1),  # ja -> 6
            _insn(0x20, 0, 0, _NET + 20),  # ld [net + 20]: IPv6 source, last word
            _insn(0x07, 0, 0, 0),  # tax
            _insn(0x74, 0, 0, 16),  # rsh #16
            _insn(0xAC, 0, 0, 0),  # xor x
            _insn(0x07, 0, 0, 0),  # tax
            _insn(0x74, 0, 0, 8),  # rsh #8
            _insn(0xAC, 0, 0, 0),  # xor x
            _insn(0x94, 0, 0, n),  # mod #n
            _insn(0x16, 0, 0, 0),  # ret a
        ]
    )


def index_of(address: int, n: int) -> int:
    """The socket index the program gives a source address (an IPv4 address as an
    integer, or an IPv6 address's last 32 bits): for tests and for operators."""
    a = address & 0xFFFFFFFF
    a ^= a >> 16
    a ^= a >> 8
    return a % n


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


def steer_by_exporter(socks: list[socket.socket]) -> bool:
    """Attach the program to the reuseport group of ``socks`` (bound, in bind order: the
    i-th is index i). False, and the kernel's own hash stays, where that is refused."""
    if len(socks) < 2:
        return False
    code = program(len(socks))
    buf = ctypes.create_string_buffer(code, len(code))
    fprog = _SockFprog(len(code) // 8, ctypes.addressof(buf))
    try:
        socks[0].setsockopt(socket.SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, bytes(fprog))
    except OSError as exc:
        log.info("exporters are spread by the kernel's hash", extra={"reason": str(exc)})
        return False
    return True
