"""The service's stage output, buffered and written in one transaction per flush.

Stages hand their Arrow batches to ``add``; ``flush`` writes everything held, every table in
one transaction (all of a step's outputs land together or not at all). The service flushes
at each checkpoint and at shutdown, and in between when the buffer is ``flush_rows`` big or
``flush_s`` (wall clock) old, so a week-long replay writes a few hundred transactions
instead of one per step.

When the store fails (a server away), the rows are not held in memory without bound: a
failed flush hands them to a :class:`~shadowcast.store.spool.Spool` (bounded memory, then
Arrow files under ``spill_dir``, retried with backoff up to ``retry_max_s`` apart) and
raises StoreError; while the spool holds rows, flushes queue behind them (order kept) and
the writer is ``degraded`` (the service reports it in its health). Once the spool has
caught up, flushes are single transactions again. Rows are lost only past
both bounds (counted in ``health()['rows_lost']``, logged). Spill files a previous run left
are written first.

Stores whose transactions are not atomic (ClickHouse: a transaction is sent table by table,
``atomic_transactions = False``) write every flush through the spool's thread, which waits
until it is stored: a write cut short there is sent again by the same thread, which lets the
store send only the rows the server lacks (:mod:`shadowcast.store.clickhouse_resend`).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import Any

import pyarrow as pa

from shadowcast.errors import StoreError
from shadowcast.store.base import Store
from shadowcast.store.conform import conform
from shadowcast.store.spillfiles import SUFFIX
from shadowcast.store.spool import MiB, Spool, SpoolStats

log = logging.getLogger(__name__)

DRAIN_WAIT_S = 60.0  # a flush through the spool waits this long for a healthy store


class StageWriter:
    def __init__(
        self,
        store: Store,
        *,
        flush_rows: int = 500_000,
        flush_s: float = 5.0,
        buffer_bytes: int = 256 * MiB,
        spill_dir: str | Path | None = None,
        spill_max_bytes: int = 1024 * MiB,
        retry_max_s: float = 30.0,
        drain_wait_s: float = DRAIN_WAIT_S,
        close_timeout_s: float = 10.0,
    ) -> None:
        self.store = store
        self.flush_rows = flush_rows
        self.flush_s = flush_s
        self.buffer_bytes = buffer_bytes
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self.spill_max_bytes = spill_max_bytes
        self.retry_max_s = retry_max_s
        self.drain_wait_s = drain_wait_s
        self.close_timeout_s = close_timeout_s
        self._pending: dict[str, list[pa.Table]] = {}
        self._rows = 0
        self._since = time.monotonic()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._spool: Spool | None = None
        self._last: SpoolStats | None = None  # the spool's counters when it closed
        self.rows_written: dict[str, int] = {}  # rows the store took directly
        self.flushes = 0
        self.failures = 0
        self._atomic = bool(getattr(store, "atomic_transactions", True))
        left = self.spill_dir is not None and any(self.spill_dir.glob(f"*{SUFFIX}"))
        if not self._atomic or left:
            self._start_spool()  # through the spool always, or leftovers to write first

    def add(self, table: str, batch: pa.Table) -> None:
        if batch.num_rows == 0:
            return
        batch = conform(table, batch)  # the table's schema: batches concatenate, errors early
        with self._lock:
            self._pending.setdefault(table, []).append(batch)
            self._rows += batch.num_rows

    def due(self) -> bool:
        return (
            self._rows >= self.flush_rows
            or (self._rows > 0 and time.monotonic() - self._since >= self.flush_s)
            or self.degraded  # a flush tells when the spool has caught up
        )

    def maybe_flush(self) -> None:
        if self.due():
            self.flush()

    @property
    def degraded(self) -> bool:
        """Whether rows wait in the spool for a store that failed."""
        sp = self._spool
        if sp is None:
            return False
        st = sp.stats()
        return not sp.healthy or st.queued_rows > 0

    def flush(self) -> int:
        """Write what is held; StoreError when the store failed (the rows wait in the
        spool and are written when it comes back)."""
        with self._flush_lock:
            with self._lock:
                pending, self._pending = self._pending, {}
                rows, self._rows = self._rows, 0
            self._since = time.monotonic()
            sp = self._spool
            if sp is None or (self._atomic and sp.healthy and not sp.stats().queued_rows):
                if not pending:
                    return 0
                return self._direct(pending, rows)  # one transaction (again, once caught up)
            return self._spooled(sp, pending, rows)

    def _direct(self, pending: dict[str, list[pa.Table]], rows: int) -> int:
        try:
            with self.store.transaction():
                for name, parts in pending.items():
                    self.store.write(name, _concat(parts))
        except StoreError as exc:
            self.failures += 1
            self._spooled(self._start_spool(), pending, rows, waited=False)
            raise StoreError(f"store write failed, {rows} rows queued for retry: {exc}") from exc
        for name, parts in pending.items():
            self.rows_written[name] = self.rows_written.get(name, 0) + sum(
                p.num_rows for p in parts
            )
        self.flushes += 1
        return rows

    def _spooled(
        self, spool: Spool, pending: dict[str, list[pa.Table]], rows: int, waited: bool = True
    ) -> int:
        backlog = spool.stats().queued_rows > 0
        for name, parts in pending.items():
            spool.put(name, _concat(parts))
        if not waited:
            return 0
        # a healthy store with nothing behind: wait for the rows (reads see them after);
        # a backlog (an outage's rows) or a failing store: do not hold the loop
        wait = self.drain_wait_s if spool.healthy and not backlog else 0.0
        if spool.drain(wait):
            for name, parts in pending.items():
                self.rows_written[name] = self.rows_written.get(name, 0) + sum(
                    p.num_rows for p in parts
                )
            if rows:
                self.flushes += 1
            return rows
        self.failures += 1
        st = spool.stats()
        raise StoreError(
            f"store unavailable: {st.queued_rows} rows queued for retry "
            f"({st.rows_spilled} spilled to disk so far)"
        )

    def _start_spool(self) -> Spool:
        if self._spool is None:
            self._spool = Spool(
                self.store,
                memory_bytes=self.buffer_bytes,
                spill_dir=self.spill_dir,
                spill_max_bytes=self.spill_max_bytes,
                retry_max_s=self.retry_max_s,
                close_timeout_s=self.close_timeout_s,
            )
            self._spool.start()
        return self._spool

    def health(self) -> dict[str, Any]:
        """The writer's counters, and the spool's once one has run."""
        out: dict[str, Any] = {
            "flushes": self.flushes,
            "failures": self.failures,
            "degraded": self.degraded,
        }
        st = self._spool.stats() if self._spool is not None else self._last
        if st is not None:
            out.update(
                queued_rows=st.queued_rows,
                queued_bytes=st.queued_bytes,
                spilled_bytes=st.spilled_bytes,
                rows_spilled=st.rows_spilled,
                rows_recovered=st.rows_recovered,
                rows_retried_written=st.rows_written,
                write_errors=st.write_errors,
                rows_lost=st.rows_lost + st.rows_rejected,
            )
        return out

    def close(self) -> None:
        """Stop the spool (what it still holds goes to the spill folder, or is counted lost
        when there is none); the held rows are flushed first."""
        try:
            self.flush()
        except StoreError as exc:
            log.error("stage writer: last flush failed", extra={"error": str(exc)})
        if self._spool is not None:
            st = self._last = self._spool.close()
            self._spool = None
            if st.queued_rows or st.rows_lost:
                log.error(
                    "stage writer closed with rows not stored",
                    extra={"queued": st.queued_rows, "lost": st.rows_lost},
                )


def _concat(parts: list[pa.Table]) -> pa.Table:
    return parts[0] if len(parts) == 1 else pa.concat_tables(parts)
