"""One store, several threads: every call goes through one lock.

The service's collector writer, its stage writer and the read socket all share the store the
service owns. Embedded backends (DuckDB) keep one connection that must not be used by two
threads at once, so :class:`SharedStore` serialises the calls; a transaction holds the lock
until it ends, so nothing interleaves with it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta

import pyarrow as pa

from shadowcast.store.base import AggQuery, Store, TimeRange


class SharedStore:
    """A thread-safe facade over ``inner`` (the Store protocol, nothing more)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self._lock = threading.RLock()
        # whether a transaction lands all at once (ClickHouse: no; see service/writer.py)
        self.atomic_transactions = bool(getattr(inner, "atomic_transactions", True))

    def __repr__(self) -> str:
        return f"SharedStore({self.inner!r})"

    def write(self, table: str, batch: pa.Table) -> int:
        with self._lock:
            return self.inner.write(table, batch)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._lock, self.inner.transaction():
            yield

    def aggregate(self, query: AggQuery) -> pa.Table:
        with self._lock:
            return self.inner.aggregate(query)

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
            return self.inner.read(table, start, end, where, ranges=ranges)

    def count(self, table: str) -> int:
        with self._lock:
            return self.inner.count(table)

    def retain(
        self,
        max_age: timedelta,
        now: datetime | None = None,
        tables: Sequence[str] | None = None,
        where: dict[str, str] | None = None,
    ) -> dict[str, int]:
        with self._lock:
            return self.inner.retain(max_age, now, tables, where)

    def close(self) -> None:
        with self._lock:
            self.inner.close()
