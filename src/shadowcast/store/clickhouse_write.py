"""The write side of the ClickHouse backend: inserts, client-side transactions, and
writes cut short on the way sent again without duplicates.

A write is one INSERT per million rows; the server makes one part per day partition it
touches, so a concurrent reader may see a batch that spans midnight half written. Every
row gets a ``_seq`` (the writer's clock in ns plus its offset: insertion order).

Transactions: ClickHouse has none across tables, so :meth:`Writes.transaction` buffers
the block's writes on the client (per thread) and sends them when the block ends without
error: a block that raises, or in which a write failed, sends nothing. Inside the block the
thread's reads include its buffered rows. The sends happen table by table; on servers with
insert deduplication tokens each insert carries a token and a network error is retried
without duplicating rows; on older servers (18.16) a failure while sending is reported
naming the tables that landed (``atomic_transactions`` is False: the service's stage writer
writes table by table instead).

A plain write whose INSERT is cut short (a timeout, a lost connection) is remembered, and
when the same rows are written again only those the server lacks are sent
(:mod:`shadowcast.store.clickhouse_resend`): a retrying writer stores each row once.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pyarrow as pa

from shadowcast.errors import StoreError
from shadowcast.store import clickhouse_resend as rs
from shadowcast.store import conform as cf
from shadowcast.store.base import inner_block
from shadowcast.store.clickhouse_io import Connection, refused, to_columns
from shadowcast.store.clickhouse_sql import SEQ, Features, Layout, ident
from shadowcast.store.memory import MemoryStore

log = logging.getLogger(__name__)

INSERT_ROWS = 1_000_000  # rows per INSERT (one block on the server)
_SEQ_LOCK = threading.Lock()
_SEQ_LAST = [0]


def _seq_base(n: int) -> int:
    """The first ``_seq`` of ``n`` rows: the clock in ns, strictly after the last batch."""
    with _SEQ_LOCK:
        base = max(time.time_ns(), _SEQ_LAST[0] + 1)
        _SEQ_LAST[0] = base + n - 1
        return base


class ThreadState(threading.local):
    """What each thread keeps: its connection, its open transaction, its cut-short writes."""

    conn: Connection | None = None
    depth: int = 0
    doomed: bool = False
    buffer: MemoryStore | None = None
    order: list[str] | None = None

    def __init__(self) -> None:
        self.unsure: dict[str, rs.Unsure] = {}  # table -> rows of a cut-short write


class Writes:
    """Writes and transactions of :class:`~shadowcast.store.clickhouse.ClickHouseStore`
    (which provides the connection, layout, features and timeouts)."""

    layout: Layout
    features: Features
    _local: ThreadState
    _timeouts: tuple[float, float]

    def _conn(self) -> Connection:
        raise NotImplementedError

    def write(self, table: str, batch: pa.Table) -> int:
        self._conn()
        try:
            data = cf.conform(table, batch)
        except StoreError:
            self._doom()
            raise
        if data.num_rows == 0:
            return 0
        loc = self._local
        if loc.depth > 0:
            assert loc.buffer is not None and loc.order is not None
            loc.buffer.write(table, data)
            if table not in loc.order:
                loc.order.append(table)
            return int(data.num_rows)
        self._send(table, data)
        return int(data.num_rows)

    def _send(self, table: str, data: pa.Table) -> None:
        """``data`` written now; rows of an earlier write of this thread that was cut short
        are sent only if the server lacks them (:mod:`clickhouse_resend`)."""
        loc = self._local
        unsure = loc.unsure.pop(table, None)
        start = 0
        if unsure is not None:
            k = rs.common_prefix(unsure, data)
            if k == 0:
                log.warning(
                    "a cut-short write was not retried with the same rows; if it landed, "
                    "its rows are stored, else lost",
                    extra={"table": table, "rows": unsure.data.num_rows},
                )
            else:
                self._resolve(table, data, unsure, k)
                start = k
        if start >= data.num_rows:
            return
        fresh = data.slice(start) if start else data
        ids: list[str] = []
        seqs = np.arange(fresh.num_rows, dtype=np.int64) + _seq_base(fresh.num_rows)
        try:
            self._insert(table, fresh, seqs, ids=ids)
        except StoreError as exc:
            if not refused(exc):
                loc.unsure[table] = rs.Unsure(fresh, seqs, ids)
            raise

    def _resolve(self, table: str, data: pa.Table, unsure: rs.Unsure, k: int) -> None:
        """The first ``k`` rows of ``data`` are those of ``unsure``: send those missing."""
        loc = self._local
        conn = self._conn()
        try:
            rs.wait_gone(conn, unsure.query_ids, self._timeouts[1])
            have = rs.present(conn, self.layout.name(table), table, unsure, k)
            if not have.all():
                idx = np.flatnonzero(~have)
                self._insert(table, data.take(idx), unsure.seq[idx], ids=unsure.query_ids)
        except StoreError:
            loc.unsure[table] = unsure  # still unknown: checked again at the next try
            raise
        log.info(
            "cut-short write settled",
            extra={"table": table, "rows": k, "had": int(have.sum()), "sent": int((~have).sum())},
        )
        rest = unsure.rest(k)
        if rest is not None:
            loc.unsure[table] = rest

    def _insert(
        self,
        table: str,
        data: pa.Table,
        seq: np.ndarray,
        token: str | None = None,
        ids: list[str] | None = None,
    ) -> None:
        """INSERTs of ``data`` with ``seq`` as ``_seq``; each query's id is added to
        ``ids`` before it is sent."""
        conn = self._conn()
        names = ", ".join(ident(n) for n in [*data.column_names, SEQ])
        sql = f"INSERT INTO {self.layout.name(table)} ({names}) VALUES"
        for i, off in enumerate(range(0, data.num_rows, INSERT_ROWS)):
            chunk = data.slice(off, INSERT_ROWS)
            settings: dict[str, Any] = {}
            if self.layout.cluster:
                settings["insert_distributed_sync"] = 1
            tries = 1
            if token is not None and self.features.dedup_token:
                settings["insert_deduplication_token"] = f"{token}-{table}-{i}"
                tries = 3
            cols = to_columns(chunk, seq[off : off + chunk.num_rows])
            for attempt in range(tries):
                qid = uuid.uuid4().hex
                if ids is not None:
                    ids.append(qid)
                try:
                    conn.run(sql, cols, settings, what=f"write to {table!r}", query_id=qid)
                    break
                except StoreError:
                    if attempt == tries - 1:
                        raise
                    log.warning("clickhouse insert retried", extra={"table": table})
                    time.sleep(0.5 * (attempt + 1))
        log.debug("store write", extra={"table": table, "rows": data.num_rows})

    def _doom(self) -> None:
        if self._local.depth > 0:
            self._local.doomed = True

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Writes inside the block are buffered and sent when it ends without error.

        Blocks nest (an inner block joins the outer one); a write that failed inside the
        block, even if its error was caught, makes the block send nothing and end with a
        StoreError.
        """
        loc = self._local
        self._conn()
        if loc.depth > 0:
            with inner_block(loc):
                yield
            return
        loc.depth, loc.doomed, loc.buffer, loc.order = 1, False, MemoryStore(), []
        try:
            yield
            if loc.doomed:
                raise StoreError("transaction rolled back: a write inside it failed")
            buffer, order = loc.buffer, loc.order
            loc.depth = 0  # reads from here on see the server only
            self._flush(buffer, order)
        finally:
            loc.depth, loc.doomed, loc.buffer, loc.order = 0, False, None, None

    def _flush(self, buffer: MemoryStore, order: list[str]) -> None:
        token = uuid.uuid4().hex
        done: list[str] = []
        for table in order:
            data = buffer.read(table)
            if data.num_rows == 0:
                continue
            seq = np.arange(data.num_rows, dtype=np.int64) + _seq_base(data.num_rows)
            try:
                self._insert(table, data, seq, token)
            except StoreError as exc:
                landed = ", ".join(done) or "none"
                raise StoreError(
                    f"transaction partly written (tables sent: {landed}): {exc}"
                ) from exc
            done.append(table)

    def _pending(self, table: str) -> MemoryStore | None:
        loc = self._local
        if loc.depth > 0 and loc.buffer is not None and loc.buffer.count(table):
            return loc.buffer
        return None
