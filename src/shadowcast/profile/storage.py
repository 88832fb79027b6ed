"""Behaviour series on disk: one Parquet folder per tier under the profile data dir.

Layout: ``<data_dir>/<tier>/part-<first ms>-<last ms>-<id>.parquet`` with
:data:`shadowcast.profile.series.SERIES_SCHEMA`. Each write appends a file (atomically:
written under a temporary name, then renamed); reads merge rows of the same key and
bucket with :meth:`SeriesBuilder.rollup`, so batches that overlap in time add up.
``retain`` deletes files entirely older than the tier's retention; ``compact`` rewrites a
tier as one merged file. The schema is ours (the store's ``TABLES`` has no such table).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet

from shadowcast.errors import StoreError
from shadowcast.profile.config import TierConfig
from shadowcast.profile.series import SERIES_SCHEMA, SeriesBuilder

pq: Any = pyarrow.parquet

log = logging.getLogger(__name__)
pc: Any = pyarrow.compute


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


class SeriesStore:
    """Parquet-backed tiers of behaviour series."""

    def __init__(
        self, root: Path, tiers: Mapping[str, TierConfig], builder: SeriesBuilder | None = None
    ) -> None:
        self.root = Path(root)
        self.tiers = dict(tiers)
        self.builder = builder or SeriesBuilder()

    def _dir(self, tier: str) -> Path:
        if tier not in self.tiers:
            raise StoreError(f"unknown series tier {tier!r} (have {sorted(self.tiers)})")
        return self.root / tier

    def write_minutes(self, series_1m: pa.Table) -> dict[str, int]:
        """Write a batch of 1-minute series to every tier (rolled up); rows per tier."""
        out = {}
        for name, tier in self.tiers.items():
            t = series_1m if tier.grain_s == 60 else self.builder.rollup(series_1m, tier.grain_s)
            out[name] = self.write(name, t)
        return out

    def write(self, tier: str, table: pa.Table) -> int:
        if table.num_rows == 0:
            return 0
        d = self._dir(tier)
        try:
            table = table.select(SERIES_SCHEMA.names).cast(SERIES_SCHEMA)
            times = pc.cast(table.column("time"), pa.int64())
            lo, hi = pc.min(times).as_py(), pc.max(times).as_py()
            d.mkdir(parents=True, exist_ok=True)
            name = f"part-{lo}-{hi}-{uuid.uuid4().hex[:12]}.parquet"
            tmp = d / f".{name}.tmp"
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, d / name)
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{d}: cannot write series: {exc}") from exc
        return int(table.num_rows)

    def _files(self, tier: str, start_ms: int | None, end_ms: int | None) -> list[Path]:
        d = self._dir(tier)
        if not d.is_dir():
            return []
        out = []
        for p in sorted(d.glob("part-*.parquet")):
            try:
                _, lo, hi, _ = p.stem.split("-", 3)
                lo_i, hi_i = int(lo), int(hi)
            except ValueError:
                log.warning("ignoring stray file in series store", extra={"path": str(p)})
                continue
            if start_ms is not None and hi_i < start_ms:
                continue
            if end_ms is not None and lo_i >= end_ms:
                continue
            out.append(p)
        return out

    def read(
        self,
        tier: str,
        start: datetime | None = None,
        end: datetime | None = None,
        where: Mapping[str, str] | None = None,
    ) -> pa.Table:
        """Merged series of ``tier`` in ``[start, end)`` matching the equality filters."""
        s_ms = _ms(start) if start else None
        e_ms = _ms(end) if end else None
        parts = []
        try:
            for p in self._files(tier, s_ms, e_ms):
                t = pq.read_table(p)
                mask = np.ones(t.num_rows, dtype=bool)
                times = np.asarray(pc.cast(t.column("time"), pa.int64()).to_numpy())
                if s_ms is not None:
                    mask &= times >= s_ms
                if e_ms is not None:
                    mask &= times < e_ms
                for col, val in (where or {}).items():
                    if col not in SERIES_SCHEMA.names:
                        raise StoreError(f"unknown series column {col!r}")
                    mask &= np.asarray(pc.equal(t.column(col), val).to_numpy(False), dtype=bool)
                if mask.any():
                    parts.append(t.filter(pa.array(mask)))
        except (OSError, pa.ArrowException) as exc:
            raise StoreError(f"{self._dir(tier)}: cannot read series: {exc}") from exc
        if not parts:
            return SERIES_SCHEMA.empty_table()
        merged = pa.concat_tables(parts)
        return self.builder.rollup(merged, self.tiers[tier].grain_s)

    def retain(self, now: datetime) -> dict[str, int]:
        """Delete files older than each tier's retention; files deleted per tier."""
        out = {}
        for name, tier in self.tiers.items():
            cut = _ms(now) - tier.retention_s * 1000
            old = [p for p in self._files(name, None, None) if int(p.stem.split("-")[2]) < cut]
            for p in old:
                p.unlink(missing_ok=True)
            out[name] = len(old)
        return out

    def compact(self, tier: str) -> int:
        """Rewrite ``tier`` as one merged file; rows after merging."""
        files = self._files(tier, None, None)
        if len(files) < 2:
            return int(sum(pq.ParquetFile(p).metadata.num_rows for p in files))
        merged = self.read(tier)
        self.write(tier, merged)
        for p in files:
            p.unlink(missing_ok=True)
        return int(merged.num_rows)
