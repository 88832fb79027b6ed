"""Receive UDP datagrams in bursts into one preallocated matrix (``recvmmsg``, Linux).

A :class:`Receiver` owns ``slots`` rows of 64 KiB (any UDP payload fits whole) in an
anonymous mapping without huge pages, so only the pages datagrams touch are resident: a
batch holds at most ``max_bytes`` and the pages past the first of each slot a large
datagram used are given back after it (memory stays near ``max_bytes`` + 4 KiB a slot).
:meth:`Receiver.fill` reads what a socket holds with one ``recvmmsg(MSG_DONTWAIT)`` call per
burst, the kernel writing each datagram and its source address straight into its slot;
:meth:`Receiver.batch` hands the filled slots over as :class:`~datagrams.Datagrams` (the
matrix is reused after :meth:`Receiver.clear`: decode a batch before reading the next).
Where ``recvmmsg`` is missing, ``recvfrom_into`` fills the same slots one at a time.
"""

from __future__ import annotations

import ctypes
import errno
import ipaddress
import mmap
import os
import socket
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from shadowcast.collect.datagrams import Datagrams

SLOT = 65536  # the largest UDP payload (65507 over IPv4, 65527 over IPv6) fits
NAME = 32  # bytes per source address (sockaddr_in6 is 28)
PAGE = mmap.PAGESIZE
MSG_DONTWAIT = 0x40
AF_INET6_WIRE = socket.AF_INET6.value
_HOSTS_MAX = 65536  # source addresses remembered as text (cleared when full)


class _Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


class _Msghdr(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_void_p),
        ("namelen", ctypes.c_uint32),
        ("iov", ctypes.c_void_p),
        ("iovlen", ctypes.c_size_t),
        ("control", ctypes.c_void_p),
        ("controllen", ctypes.c_size_t),
        ("flags", ctypes.c_int),
    ]


class _Mmsghdr(ctypes.Structure):
    _fields_ = [("hdr", _Msghdr), ("len", ctypes.c_uint32)]


def _recvmmsg() -> Any:
    try:
        fn = ctypes.CDLL(None, use_errno=True).recvmmsg
    except (AttributeError, OSError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int, ctypes.c_void_p]
    fn.restype = ctypes.c_int
    return fn


_RECVMMSG = _recvmmsg()


class Receiver:
    """Up to ``slots`` datagrams from any number of sockets, then :meth:`batch`."""

    def __init__(self, slots: int, max_bytes: int = 8 << 20, use_recvmmsg: bool = True) -> None:
        self.slots = max(1, slots)
        self.max_bytes = max_bytes
        self._map = mmap.mmap(-1, self.slots * SLOT, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        if hasattr(mmap, "MADV_NOHUGEPAGE"):  # one touched byte must not pin 2 MiB
            self._map.madvise(mmap.MADV_NOHUGEPAGE)
        self.buf: npt.NDArray[np.uint8] = np.frombuffer(self._map, dtype=np.uint8).reshape(
            self.slots, SLOT
        )
        self.names = np.zeros((self.slots, NAME), dtype=np.uint8)
        self.lengths = np.zeros(self.slots, dtype=np.int64)
        self.count = 0
        self.bytes = 0
        self._hosts: dict[bytes, str] = {}
        self._call = _RECVMMSG if use_recvmmsg else None
        self._msgs = (_Mmsghdr * self.slots)()
        self._iovs = (_Iovec * self.slots)()
        base, names = self.buf.ctypes.data, self.names.ctypes.data
        for i in range(self.slots):
            self._iovs[i].base = base + i * SLOT
            self._iovs[i].len = SLOT
            hdr = self._msgs[i].hdr
            hdr.iov = ctypes.addressof(self._iovs[i])
            hdr.iovlen = 1
            hdr.name = names + i * NAME
        # numpy views of the fields the kernel writes (message length, address length)
        raw = np.frombuffer(cast(Any, self._msgs), dtype=np.uint8).reshape(self.slots, -1)
        at = _Mmsghdr.len.offset
        self._len = raw[:, at : at + 4].view(np.uint32).reshape(-1)
        at = _Mmsghdr.hdr.offset + _Msghdr.namelen.offset
        self._namelen = raw[:, at : at + 4].view(np.uint32).reshape(-1)

    @property
    def full(self) -> bool:
        return self.count >= self.slots or self.bytes >= self.max_bytes

    def fill(self, sock: socket.socket, limit: int | None = None) -> int:
        """Read what ``sock`` holds (non-blocking) into free slots, at most ``limit``
        datagrams; returns how many were read."""
        room = self.slots - self.count if limit is None else min(limit, self.slots - self.count)
        if room <= 0 or self.bytes >= self.max_bytes:
            return 0
        room = min(room, max(1, (self.max_bytes - self.bytes) // SLOT))  # bytes bounded
        if self._call is None:
            return self._fill_slowly(sock, room)
        start = self.count
        self._namelen[start : start + room] = NAME
        got = self._call(
            sock.fileno(), ctypes.addressof(self._msgs[start]), room, MSG_DONTWAIT, None
        )
        if got < 0:
            err = ctypes.get_errno()
            if err in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return 0
            raise OSError(err, os.strerror(err))
        lens = self._len[start : start + got]
        self.lengths[start : start + got] = lens
        self.count += got
        self.bytes += int(lens.sum())
        return int(got)

    def _fill_slowly(self, sock: socket.socket, room: int) -> int:
        got = 0
        view = self.buf.reshape(-1).data
        while got < room:
            i = self.count
            try:
                n, addr = sock.recvfrom_into(view[i * SLOT : (i + 1) * SLOT], SLOT)
            except (BlockingIOError, InterruptedError):
                break
            self._put_name(i, addr[0])
            self.lengths[i] = n
            self.count += 1
            self.bytes += n
            got += 1
        return got

    def _put_name(self, i: int, host: str) -> None:
        """Write ``host`` into slot ``i``'s address the way the kernel would (sockaddr_in6)."""
        a = ipaddress.ip_address(host.split("%", 1)[0])
        packed = a.packed if a.version == 6 else b"\0" * 10 + b"\xff\xff" + a.packed
        name = AF_INET6_WIRE.to_bytes(2, "little") + b"\0" * 6 + packed + b"\0" * 8
        self.names[i, :NAME] = np.frombuffer(name.ljust(NAME, b"\0"), dtype=np.uint8)

    def clear(self) -> None:
        """Forget the batch; pages beyond the first of the slots it filled past one page
        go back to the kernel."""
        for i in np.flatnonzero(self.lengths[: self.count] > PAGE).tolist():
            self._map.madvise(mmap.MADV_DONTNEED, i * SLOT + PAGE, SLOT - PAGE)
        self.count = 0
        self.bytes = 0

    def batch(self) -> Datagrams:
        """The datagrams read since :meth:`clear`, in the order they were read."""
        n = self.count
        names = self.names[:n]
        family = names[:, 0].astype(np.int64) | (names[:, 1].astype(np.int64) << 8)
        # the source as 16 bytes: IPv4 mapped (::ffff:a.b.c.d) like an IPv6 socket gives it
        addr = np.zeros((n, 16), dtype=np.uint8)
        v6 = family == AF_INET6_WIRE
        addr[v6] = names[v6, 8:24]
        addr[~v6, 10:12] = 0xFF
        addr[~v6, 12:16] = names[~v6, 4:8]
        keys = addr.view("V16").reshape(n)
        uniq, inv = np.unique(keys, return_inverse=True)
        hosts = tuple(self._host(bytes(u)) for u in uniq)
        return Datagrams(
            self.buf,
            np.arange(n, dtype=np.int64),
            self.lengths[:n].copy(),
            inv.astype(np.int32).reshape(-1),
            hosts,
        )

    def _host(self, raw: bytes) -> str:
        host = self._hosts.get(raw)
        if host is None:
            a = ipaddress.IPv6Address(raw)
            host = str(a.ipv4_mapped or a)
            if len(self._hosts) >= _HOSTS_MAX:
                self._hosts.clear()
            self._hosts[raw] = host
        return host
