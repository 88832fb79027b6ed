"""An in-memory backend (Arrow tables in a dict): for tests and quick runs.

It passes the same contract suite as the DuckDB backend. Nothing survives :meth:`close`.
Thread-safe through one re-entrant lock; a transaction holds the lock for its whole block,
so other threads wait until it commits or rolls back.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute

from shadowcast.errors import StoreError
from shadowcast.store import conform as cf
from shadowcast.store.base import AggQuery, TimeRange
from shadowcast.store.schema import TABLES, TS

if TYPE_CHECKING:
    from shadowcast.store.config import StoreConfig

log = logging.getLogger(__name__)

# Compute kernels are generated at import time, so they carry no static types.
pc: Any = pyarrow.compute

_PA_AGG = {"sum": "sum", "avg": "mean", "max": "max", "min": "min", "count": "count"}


class MemoryStore:
    """A :class:`~shadowcast.store.base.Store` held in memory."""

    def __init__(self) -> None:
        self._tables: dict[str, list[pa.Table]] = {name: [] for name in TABLES}
        self._lock = threading.RLock()
        self._depth = 0
        self._doomed = False
        self._closed = False

    @classmethod
    def from_config(cls, config: StoreConfig) -> MemoryStore:
        return cls()

    def __repr__(self) -> str:
        return "MemoryStore()"

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("memory store is closed")

    def _all(self, table: str) -> pa.Table:
        schema = cf.table_schema(table)
        parts = self._tables[table]
        if not parts:
            return schema.empty_table()
        if len(parts) > 1:
            parts[:] = [pa.concat_tables(parts).combine_chunks()]
        return parts[0]

    # -- writes ------------------------------------------------------------------------

    def write(self, table: str, batch: pa.Table) -> int:
        with self._lock:
            self._check_open()
            try:
                data = cf.conform(table, batch)
            except StoreError:
                if self._depth > 0:
                    self._doomed = True
                raise
            if data.num_rows:
                self._tables[table].append(data)
            return int(data.num_rows)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside the block land together or not at all (see DuckDBStore)."""
        with self._lock:
            self._check_open()
            if self._depth > 0:
                self._depth += 1
                try:
                    yield
                except BaseException:
                    self._doomed = True
                    raise
                finally:
                    self._depth -= 1
                return
            snapshot = {name: list(parts) for name, parts in self._tables.items()}
            self._depth, self._doomed = 1, False
            try:
                yield
                if self._doomed:
                    raise StoreError("transaction rolled back: a write inside it failed")
            except BaseException:
                self._tables = snapshot
                raise
            finally:
                self._depth, self._doomed = 0, False

    # -- reads -------------------------------------------------------------------------

    def _select(
        self,
        table: str,
        start: datetime | None,
        end: datetime | None,
        where: Mapping[str, object] | None,
        *,
        need_time: bool = False,
        ranges: Mapping[str, TimeRange] | None = None,
    ) -> pa.Table:
        filters = cf.check_where(table, where)
        bounds = cf.time_ranges(table, start, end, ranges)
        data = self._all(table)
        mask = pc.is_valid(data.column(cf.time_column(table))) if need_time else None
        conds = []
        for col, lo, hi in bounds:
            typ = data.schema.field(col).type
            if lo is not None:
                conds.append(pc.greater_equal(data.column(col), pa.scalar(lo, typ)))
            if hi is not None:
                conds.append(pc.less(data.column(col), pa.scalar(hi, typ)))
        for col, scalar in filters.items():
            conds.append(pc.equal(data.column(col), scalar))
        for c in conds:
            c = pc.fill_null(c, False)
            mask = c if mask is None else pc.and_(mask, c)
        return data if mask is None else data.filter(mask)

    def read(
        self,
        table: str,
        start: datetime | None = None,
        end: datetime | None = None,
        where: dict[str, str] | None = None,
        *,
        ranges: Mapping[str, TimeRange] | None = None,
    ) -> pa.Table:
        with self._lock:
            self._check_open()
            return self._select(table, start, end, where, ranges=ranges)

    def aggregate(self, query: AggQuery) -> pa.Table:
        out_schema = cf.check_query(query)
        with self._lock:
            self._check_open()
            data = self._select(query.table, query.start, query.end, query.where, need_time=True)
        ms = pc.cast(data.column(cf.time_column(query.table)), pa.int64()).to_numpy()
        step = int(query.step_s) * 1000
        bucket = pa.array((ms // step) * step, pa.int64()).cast(TS)
        by = list(query.by)
        cols: dict[str, pa.ChunkedArray | pa.Array] = {"bucket": bucket}
        for b in by:
            cols[b] = data.column(b)
        aggs: list[tuple[str | list[str], str]] = []
        for v in query.values:
            col = data.column(v)
            typ = col.type
            if query.agg in ("sum", "avg"):
                col = pc.cast(col, pa.int64() if pa.types.is_integer(typ) else pa.float64())
            cols[f"_v_{v}"] = col
            aggs.append((f"_v_{v}", _PA_AGG[query.agg]))
        if not query.values:
            aggs.append(([], "count_all"))
        grouped = pa.table(cols).group_by(["bucket", *by], use_threads=False).aggregate(aggs)
        out = {"bucket": grouped.column("bucket")}
        for b in by:
            out[b] = grouped.column(b)
        for v in query.values:
            out[v] = grouped.column(f"_v_{v}_{_PA_AGG[query.agg]}")
        if not query.values:
            out["count"] = grouped.column("count_all")
        result = pa.table(out).cast(out_schema)
        keys = [("bucket", "ascending")] + [(b, "ascending") for b in by]
        return result.sort_by(keys)

    def count(self, table: str) -> int:
        cf.table_schema(table)
        with self._lock:
            self._check_open()
            return sum(int(p.num_rows) for p in self._tables[table])

    def time_range(self, table: str) -> tuple[datetime | None, datetime | None]:
        with self._lock:
            col = self._all(table).column(cf.time_column(table))
        mm = pc.min_max(col)
        lo, hi = mm["min"].as_py(), mm["max"].as_py()
        return lo, hi

    # -- retention ---------------------------------------------------------------------

    def retain(
        self,
        max_age: timedelta,
        now: datetime | None = None,
        tables: Sequence[str] | None = None,
        where: dict[str, str] | None = None,
    ) -> dict[str, int]:
        names = cf.retain_tables(tables)
        cutoff = pa.scalar(cf.utc(now or datetime.now(UTC)) - max_age, TS)
        deleted: dict[str, int] = {}
        with self._lock:
            self._check_open()
            for name in names:
                data = self._all(name)
                old = pc.fill_null(pc.less(data.column(cf.time_column(name)), cutoff), False)
                for col, val in cf.check_where(name, where).items():
                    old = pc.and_(old, pc.fill_null(pc.equal(data.column(col), val), False))
                n = int(np.count_nonzero(old.to_numpy(zero_copy_only=False)))
                if n:
                    self._tables[name] = [data.filter(pc.invert(old))]
                deleted[name] = n
        return deleted

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._tables = {name: [] for name in TABLES}
