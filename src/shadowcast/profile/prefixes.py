"""Vectorised longest-prefix match of binary(16) addresses (IPv6 or IPv4-mapped).

Addresses become two uint64 halves; a table keeps one sorted array of networks per prefix
length, and a lookup is one ``searchsorted`` per distinct length (longest first).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

_V4_MAPPED_HI = np.uint64(0)
_V4_MAPPED_LO_TAG = np.uint64(0xFFFF) << np.uint64(32)


def split_addresses(col: pa.Array | pa.ChunkedArray) -> tuple[U64, U64]:
    """``(hi, lo)`` big-endian halves of a binary(16) column (null -> ::)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    n = len(arr)
    if n == 0:
        return np.zeros(0, np.uint64), np.zeros(0, np.uint64)
    if arr.null_count:
        arr = arr.fill_null(b"\x00" * 16)
    buf = arr.buffers()[1]
    assert buf is not None
    raw = np.frombuffer(buf, dtype=">u8", count=2 * (arr.offset + n))[2 * arr.offset :]
    pairs = raw.reshape(n, 2).astype(np.uint64)
    return pairs[:, 0].copy(), pairs[:, 1].copy()


def _mask(bits: int) -> np.uint64:
    if bits <= 0:
        return np.uint64(0)
    return np.uint64(((1 << 64) - 1) ^ ((1 << (64 - bits)) - 1))


def parse_prefix(text: str) -> tuple[int, int, int]:
    """``(hi, lo, length)`` of a v4 or v6 prefix in the 128-bit (v4-mapped) space."""
    net = ipaddress.ip_network(text, strict=False)
    if net.version == 4:
        value = (0xFFFF << 32) | int(net.network_address)
        length = 96 + net.prefixlen
    else:
        value = int(net.network_address)
        length = net.prefixlen
    return value >> 64, value & ((1 << 64) - 1), length


class PrefixTable:
    """Longest-prefix match from prefixes to integer values (-1 = no match)."""

    def __init__(self, prefixes: Sequence[tuple[str, int]]) -> None:
        by_len: dict[int, dict[tuple[int, int], int]] = {}
        for text, value in prefixes:
            hi, lo, length = parse_prefix(text)
            by_len.setdefault(length, {})[(hi, lo)] = value
        self._levels: list[tuple[int, U64, U64, I64]] = []
        for length in sorted(by_len, reverse=True):
            items = sorted(by_len[length].items())
            his = np.array([k[0] for k, _ in items], dtype=np.uint64)
            los = np.array([k[1] for k, _ in items], dtype=np.uint64)
            vals = np.array([v for _, v in items], dtype=np.int64)
            self._levels.append((length, his, los, vals))

    def __len__(self) -> int:
        return sum(len(v) for _, _, _, v in self._levels)

    def lookup(self, hi: U64, lo: U64) -> I64:
        out = np.full(hi.shape, -1, dtype=np.int64)
        todo = np.ones(hi.shape, dtype=bool)
        for length, his, los, vals in self._levels:
            if not todo.any():
                break
            mhi = hi & _mask(min(length, 64))
            mlo = lo & _mask(max(length - 64, 0))
            if length <= 64:
                # every network at this length has lo == 0: search on hi alone
                pos = np.searchsorted(his, mhi)
                pos = np.minimum(pos, len(his) - 1)
                hit = todo & (his[pos] == mhi)
            else:
                key = np.empty(len(his), dtype=[("h", np.uint64), ("l", np.uint64)])
                key["h"], key["l"] = his, los
                q = np.empty(len(hi), dtype=key.dtype)
                q["h"], q["l"] = mhi, mlo
                pos = np.minimum(np.searchsorted(key, q), len(his) - 1)
                hit = todo & (his[pos] == mhi) & (los[pos] == mlo)
            out[hit] = vals[pos[hit]]
            todo &= ~hit
        return out


def is_v4(hi: U64, lo: U64) -> npt.NDArray[np.bool_]:
    out: npt.NDArray[np.bool_] = (hi == _V4_MAPPED_HI) & (
        (lo >> np.uint64(32)) == np.uint64(0xFFFF)
    )
    return out


def to_text(hi: int, lo: int) -> str:
    """Printable address of one (hi, lo) pair (v4-mapped shown as dotted quad)."""
    value = (int(hi) << 64) | int(lo)
    if int(hi) == 0 and (int(lo) >> 32) == 0xFFFF:
        return str(ipaddress.IPv4Address(value & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address(value))


def to_binary(addresses: Sequence[str]) -> pa.Array:
    """binary(16) column from textual addresses (v4 becomes v4-mapped)."""
    out = []
    for a in addresses:
        ip = ipaddress.ip_address(a)
        if ip.version == 4:
            ip = ipaddress.IPv6Address("::ffff:" + str(ip))
        out.append(ip.packed)
    return pa.array(out, type=pa.binary(16))
