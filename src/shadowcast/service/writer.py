"""The service's stage output, buffered and written in one transaction per flush.

Stages hand their Arrow batches to ``add``; ``flush`` writes everything held, every table in
one transaction (all of a step's outputs land together or not at all). The service flushes
at each checkpoint and at shutdown, and in between when the buffer is ``flush_rows`` big or
``flush_s`` (wall clock) old, so a week-long replay writes a few hundred transactions
instead of one per step. A failed flush keeps the batches and raises StoreError; the next
flush tries again.
"""

from __future__ import annotations

import logging
import threading
import time

import pyarrow as pa

from shadowcast.errors import StoreError
from shadowcast.store.base import Store
from shadowcast.store.conform import conform

log = logging.getLogger(__name__)


class StageWriter:
    def __init__(self, store: Store, *, flush_rows: int = 500_000, flush_s: float = 5.0) -> None:
        self.store = store
        self.flush_rows = flush_rows
        self.flush_s = flush_s
        self._pending: dict[str, list[pa.Table]] = {}
        self._rows = 0
        self._since = time.monotonic()
        self._lock = threading.Lock()
        self.rows_written: dict[str, int] = {}
        self.flushes = 0
        self.failures = 0

    def add(self, table: str, batch: pa.Table) -> None:
        if batch.num_rows == 0:
            return
        batch = conform(table, batch)  # the table's schema: batches concatenate, errors early
        with self._lock:
            self._pending.setdefault(table, []).append(batch)
            self._rows += batch.num_rows

    def due(self) -> bool:
        return self._rows >= self.flush_rows or (
            self._rows > 0 and time.monotonic() - self._since >= self.flush_s
        )

    def maybe_flush(self) -> None:
        if self.due():
            self.flush()

    def flush(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, {}
            rows, self._rows = self._rows, 0
        self._since = time.monotonic()
        if not pending:
            return 0
        try:
            with self.store.transaction():
                for name, parts in pending.items():
                    batch = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
                    self.store.write(name, batch)
        except StoreError:
            self.failures += 1
            with self._lock:  # keep everything for the next attempt, in order
                for name, parts in pending.items():
                    self._pending[name] = parts + self._pending.get(name, [])
                self._rows += rows
            raise
        for name, parts in pending.items():
            self.rows_written[name] = self.rows_written.get(name, 0) + sum(
                p.num_rows for p in parts
            )
        self.flushes += 1
        return rows
