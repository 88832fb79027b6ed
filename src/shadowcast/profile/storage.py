"""Behaviour series tiers in the store: the ``behaviour`` table, one tier per ``grain_s``.

Each write adds the 1-minute series rolled up to every tier (rows tagged with the tier's
``grain_s``); reads merge rows of the same key and bucket with
:meth:`SeriesBuilder.rollup`, so batches that overlap in time add up. ``retain`` deletes
each tier's rows older than its retention. One store for everything: the profiler's series
live beside the flows, OD series and forecasts, on every backend.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa

from shadowcast.errors import StoreError
from shadowcast.profile.config import TierConfig
from shadowcast.profile.series import SERIES_SCHEMA, SeriesBuilder
from shadowcast.store.base import AggQuery, Store

log = logging.getLogger(__name__)
TABLE = "behaviour"


class SeriesStore:
    """Tiers of behaviour series in ``store``'s ``behaviour`` table."""

    def __init__(
        self, store: Store, tiers: Mapping[str, TierConfig], builder: SeriesBuilder | None = None
    ) -> None:
        self.store = store
        self.tiers = dict(tiers)
        self.builder = builder or SeriesBuilder()

    def _grain(self, tier: str) -> int:
        if tier not in self.tiers:
            raise StoreError(f"unknown series tier {tier!r} (have {sorted(self.tiers)})")
        return self.tiers[tier].grain_s

    def rolled(self, series_1m: pa.Table) -> dict[str, pa.Table]:
        """The 1-minute series rolled up to every tier (rows tagged with its grain)."""
        out = {}
        for name, tier in self.tiers.items():
            out[name] = (
                series_1m if tier.grain_s == 60 else self.builder.rollup(series_1m, tier.grain_s)
            )
        return out

    def write_minutes(self, series_1m: pa.Table) -> dict[str, int]:
        """Write a batch of 1-minute series to every tier, in one transaction; rows per tier."""
        tiers = self.rolled(series_1m)
        with self.store.transaction():
            return {
                name: self.store.write(TABLE, t) if t.num_rows else 0 for name, t in tiers.items()
            }

    def read(
        self,
        tier: str,
        start: datetime | None = None,
        end: datetime | None = None,
        where: Mapping[str, str] | None = None,
    ) -> pa.Table:
        """Merged series of ``tier`` in ``[start, end)`` matching the equality filters."""
        grain = self._grain(tier)
        for col in where or {}:
            if col not in SERIES_SCHEMA.names:
                raise StoreError(f"unknown series column {col!r}")
        flt = {**{k: str(v) for k, v in (where or {}).items()}, "grain_s": str(grain)}
        rows = self.store.read(TABLE, start, end, flt)
        if rows.num_rows == 0:
            return SERIES_SCHEMA.empty_table()
        return self.builder.rollup(rows, grain)

    def newest(self, tier: str) -> datetime | None:
        """End of the newest bucket stored in ``tier`` (None when it is empty)."""
        grain = self._grain(tier)
        agg = self.store.aggregate(
            AggQuery(TABLE, grain, values=("bytes",), agg="count", where={"grain_s": str(grain)})
        )
        if agg.num_rows == 0:
            return None
        last = int(np.asarray(agg.column("bucket").cast(pa.int64()).to_numpy()).max())
        return datetime.fromtimestamp(last / 1000 + grain, tz=UTC)

    def retain(self, now: datetime) -> dict[str, int]:
        """Delete each tier's rows older than its retention; rows deleted per tier."""
        out = {}
        for name, tier in self.tiers.items():
            deleted = self.store.retain(
                timedelta(seconds=tier.retention_s),
                now,
                tables=[TABLE],
                where={"grain_s": str(tier.grain_s)},
            )
            out[name] = deleted.get(TABLE, 0)
        return out
