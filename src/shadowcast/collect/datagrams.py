"""A batch of received datagrams as rows of one byte matrix: no Python object per datagram.

Datagram ``i`` is the first ``lengths[i]`` bytes of row ``rows[i]`` of ``buf``; what lies
beyond the length is stale (a slot is reused), so every read goes through :func:`gather`,
which zeroes it. ``exporter[i]`` indexes ``exporters`` (the sending address as text). The
worker's receiver (:mod:`collect.recv`) fills ``buf`` in place, one slot per datagram;
:meth:`Datagrams.from_pairs` builds a batch from ``(payload, exporter)`` pairs.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view

U8 = npt.NDArray[np.uint8]
I64 = npt.NDArray[np.int64]
I32 = npt.NDArray[np.int32]
# the list API builds matrices of at most this many bytes (longer lists: several batches)
PAIRS_MATRIX_BYTES = 32 << 20


@dataclass(frozen=True, slots=True)
class Datagrams:
    """Datagrams received together, in arrival order (see the module docstring)."""

    buf: U8  # (slots, width)
    rows: I64
    lengths: I64
    exporter: I32
    exporters: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def nbytes(self) -> int:
        return int(self.lengths.sum())

    def take(self, idx: npt.NDArray[np.integer] | npt.NDArray[np.bool_]) -> Datagrams:
        """The datagrams at ``idx`` (indices or a mask), in that order; ``buf`` is shared."""
        return Datagrams(
            self.buf, self.rows[idx], self.lengths[idx], self.exporter[idx], self.exporters
        )

    def payload(self, i: int) -> bytes:
        return self.buf[self.rows[i], : self.lengths[i]].tobytes()

    def host(self, i: int) -> str:
        return self.exporters[int(self.exporter[i])]

    def pairs(self) -> list[tuple[bytes, str]]:
        """``(payload, exporter)`` for each datagram (the list API of the decoders)."""
        hosts = self.exporters
        buf = self.buf
        return [
            (buf[r, :n].tobytes(), hosts[e])
            for r, n, e in zip(
                self.rows.tolist(), self.lengths.tolist(), self.exporter.tolist(), strict=True
            )
        ]

    def first_seen(self) -> list[str]:
        """The exporters of this batch, in the order they first appear."""
        if not len(self):
            return []
        uniq, first = np.unique(self.exporter, return_index=True)
        return [self.exporters[int(u)] for u in uniq[np.argsort(first)]]

    def per_exporter(self, values: npt.NDArray[np.integer] | None = None) -> dict[str, int]:
        """Sum of ``values`` (default: 1 per datagram) per exporter with a nonzero sum."""
        w = None if values is None else np.asarray(values, dtype=np.float64)
        sums = np.bincount(self.exporter, weights=w, minlength=len(self.exporters))
        return {self.exporters[i]: int(v) for i, v in enumerate(sums.tolist()) if v}

    @staticmethod
    def from_pairs(packets: Sequence[tuple[bytes, str]]) -> Datagrams:
        """One batch holding ``packets`` (rows as wide as the longest payload)."""
        n = len(packets)
        lengths = np.fromiter((len(p) for p, _ in packets), dtype=np.int64, count=n)
        width = max(1, int(lengths.max()) if n else 1)
        joined = b"".join(p.ljust(width, b"\0") for p, _ in packets)
        buf = np.frombuffer(joined, dtype=np.uint8).reshape(n, width) if n else _EMPTY
        index: dict[str, int] = {}
        exporter = np.fromiter(
            (index.setdefault(h, len(index)) for _, h in packets), dtype=np.int32, count=n
        )
        return Datagrams(buf, np.arange(n, dtype=np.int64), lengths, exporter, tuple(index))


_EMPTY: U8 = np.zeros((0, 1), dtype=np.uint8)


def pair_batches(packets: Sequence[tuple[bytes, str]]) -> Iterator[Datagrams]:
    """``packets`` as consecutive batches whose matrices stay under PAIRS_MATRIX_BYTES."""
    start, widest = 0, 1
    for i, (p, _) in enumerate(packets):
        w = max(widest, len(p))
        if i > start and (i - start + 1) * w > PAIRS_MATRIX_BYTES:
            yield Datagrams.from_pairs(packets[start:i])
            start, w = i, len(p)
        widest = w
    if start < len(packets) or not packets:
        yield Datagrams.from_pairs(packets[start:])


def gather(dg: Datagrams, start: I64 | int, size: int) -> U8:
    """``size`` bytes from offset ``start`` (one for all, or one per datagram) of each
    datagram, as an (n, size) matrix; bytes beyond a datagram's length read as zero."""
    n = len(dg.rows)
    if n == 0 or size <= 0:
        return np.zeros((n, max(size, 0)), dtype=np.uint8)
    width = dg.buf.shape[1]
    k = np.arange(size, dtype=np.int64)
    if isinstance(start, int) and 0 <= start and start + size <= width:
        block = dg.buf[dg.rows, start : start + size]
        pos = start + k[None, :]
    else:
        pos = np.asarray(start, dtype=np.int64).reshape(-1, 1) + k[None, :]
        block = dg.buf[dg.rows[:, None], np.clip(pos, 0, width - 1)]
    valid = (pos < dg.lengths[:, None]) & (pos >= 0)
    if not valid.all():
        block = np.where(valid, block, np.uint8(0))
    return np.ascontiguousarray(block)


def read(flat: U8, at: I64, size: int, limit: I64) -> U8:
    """``size`` bytes at absolute positions ``at`` of ``flat`` (a batch's ``buf`` as one
    row), as a (k, size) matrix; bytes at or past ``limit`` (per row) read as zero."""
    n = len(at)
    last = len(flat) - size
    if n == 0 or size <= 0:
        return np.zeros((n, max(size, 0)), dtype=np.uint8)
    if last < 0:
        block = np.zeros((n, size), dtype=np.uint8)
        odd = np.arange(n)
    else:  # one row copy each, from overlapping windows of ``flat`` (a view)
        block = sliding_window_view(flat, size)[np.minimum(np.maximum(at, 0), last)]
        odd = np.flatnonzero((at < 0) | (at > last) | (at + size > limit))
    if len(odd):
        pos = at[odd, None] + np.arange(size, dtype=np.int64)[None, :]
        valid = (pos >= 0) & (pos < len(flat)) & (pos < limit[odd, None])
        block[odd] = np.where(valid, flat[np.clip(pos, 0, len(flat) - 1)], np.uint8(0))
    return block


def words(flat: U8, at: I64, count: int, limit: I64) -> I64:
    """``count`` big-endian 32-bit words at ``at`` (per row), as int64 (zero past ``limit``)."""
    raw = read(flat, at, 4 * count, limit)
    return raw.view(">u4").reshape(len(at), count).astype(np.int64)
