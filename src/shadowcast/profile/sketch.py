"""A mergeable log-bucket histogram (DDSketch-like) for transfer sizes, in numpy.

A value ``x >= 1`` falls in bucket ``ceil(log_gamma(x))`` with ``gamma = (1+a)/(1-a)``;
values below 1 fall in bucket 0. Any quantile read back is within relative error ``a``
of a true sample at that rank. Sketches of many series rows are stored sparsely, as two
Arrow list columns (bucket indices, counts); merging is adding counts per bucket, so
percentiles of a 1-hour rollup are those of all its transfers, not averages of minutes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute

pc: Any = pyarrow.compute

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
IDX_TYPE = pa.list_(pa.int16())
CNT_TYPE = pa.list_(pa.int64())


@dataclass(frozen=True, slots=True)
class Sketches:
    """Sparse sketches of ``n`` rows: row ``r`` owns ``idx/cnt[offsets[r]:offsets[r+1]]``."""

    offsets: I64
    idx: I64
    cnt: I64

    @property
    def n(self) -> int:
        return len(self.offsets) - 1

    def to_arrow(self) -> tuple[pa.Array, pa.Array]:
        off = pa.array(self.offsets.astype(np.int32))
        return (
            pa.ListArray.from_arrays(off, pa.array(self.idx.astype(np.int16))),
            pa.ListArray.from_arrays(off, pa.array(self.cnt)),
        )

    @classmethod
    def from_arrow(
        cls, idx: pa.Array | pa.ChunkedArray, cnt: pa.Array | pa.ChunkedArray
    ) -> Sketches:
        i = idx.combine_chunks() if isinstance(idx, pa.ChunkedArray) else idx
        c = cnt.combine_chunks() if isinstance(cnt, pa.ChunkedArray) else cnt
        lens = np.asarray(pc.fill_null(pc.list_value_length(i), 0).to_numpy(), dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
        return cls(
            offsets,
            np.asarray(pc.list_flatten(i).to_numpy(), dtype=np.int64),
            np.asarray(pc.list_flatten(c).to_numpy(), dtype=np.int64),
        )

    def totals(self) -> I64:
        cs = np.concatenate([[0], np.cumsum(self.cnt)])
        return np.asarray(cs[self.offsets[1:]] - cs[self.offsets[:-1]], dtype=np.int64)


class LogSketch:
    """The bucket mapping (``alpha`` = relative accuracy) and the batch operations."""

    def __init__(self, alpha: float = 0.02) -> None:
        self.alpha = alpha
        self.gamma = (1 + alpha) / (1 - alpha)
        self._lg = float(np.log(self.gamma))

    def bucket(self, values: F64 | I64) -> I64:
        v = np.asarray(values, dtype=np.float64)
        out = np.zeros(v.shape, dtype=np.int64)
        pos = v >= 1.0
        out[pos] = np.ceil(np.log(v[pos]) / self._lg - 1e-12).astype(np.int64)
        return np.maximum(out, 0)

    def value(self, idx: I64) -> F64:
        """Representative value of a bucket (relative error <= alpha)."""
        i = np.asarray(idx, dtype=np.float64)
        return np.where(i <= 0, 1.0, 2.0 * self.gamma**i / (self.gamma + 1.0))

    def build(self, group: I64, values: F64, n_groups: int) -> Sketches:
        """One sketch per group from per-item ``values`` and their ``group`` ids."""
        return self._combine(np.asarray(group, np.int64), self.bucket(values), None, n_groups)

    def build_buckets(self, group: I64, buckets: I64, n_groups: int) -> Sketches:
        """Like :meth:`build`, from bucket indices already computed."""
        return self._combine(np.asarray(group, np.int64), buckets, None, n_groups)

    def merge(self, sk: Sketches, group: I64, n_groups: int) -> Sketches:
        """Merge rows of ``sk`` into ``n_groups`` sketches; ``group[r]`` = target of row r."""
        lens = np.diff(sk.offsets)
        parent = np.repeat(np.asarray(group, np.int64), lens)
        return self._combine(parent, sk.idx, sk.cnt, n_groups)

    def _combine(self, group: I64, idx: I64, cnt: I64 | None, n_groups: int) -> Sketches:
        if len(group) == 0:
            return Sketches(
                np.zeros(n_groups + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64)
            )
        nb = int(idx.max()) + 1
        key = group * nb + idx
        codes, uniq = pd.factorize(key)
        counts = np.bincount(codes, weights=cnt, minlength=len(uniq))
        order = np.argsort(uniq, kind="stable")  # sort the distinct keys only
        uniq = np.asarray(uniq, dtype=np.int64)[order]
        counts = counts[order]
        g = uniq // nb
        offsets = np.searchsorted(g, np.arange(n_groups + 1), side="left").astype(np.int64)
        return Sketches(offsets, uniq % nb, np.rint(counts).astype(np.int64))

    def quantile(self, sk: Sketches, q: float) -> F64:
        """The ``q`` quantile of every row (NaN for an empty row)."""
        totals = sk.totals()
        out = np.full(sk.n, np.nan)
        if len(sk.cnt) == 0:
            return out
        cs = np.cumsum(sk.cnt)
        before = np.concatenate([[0], cs])[sk.offsets[:-1]]
        rank = before + np.floor(q * np.maximum(totals - 1, 0)).astype(np.int64)
        pos = np.searchsorted(cs, rank, side="right")
        ok = totals > 0
        out[ok] = self.value(sk.idx[np.minimum(pos[ok], len(sk.idx) - 1)])
        return out
