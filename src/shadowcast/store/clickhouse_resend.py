"""Writes whose fate is unknown, sent again without storing a row twice.

ClickHouse has no transactions: when an INSERT is cut short on the way (a timeout, a
server stopped or killed while it ran), the server may have stored every row, some of them
(one part per day partition, one INSERT per million rows) or none, and a writer that
retries (the collector's spool, the service's stage writer) would store the rows that
landed twice. Every row carries its ``_seq``; the store keeps the batch whose INSERT was
cut short with those ``_seq`` (:class:`Unsure`, per thread and table) and, when the same
rows are written again (the batch, or a prefix of it, or it followed by newer rows, as the
spool regroups its queue), it first waits until the cut-short INSERTs have left
``system.processes``, asks which of those ``_seq`` the server has, and sends only the
missing rows under their first ``_seq``. Rows that follow are new and sent as usual.

What is left: an INSERT the server had not yet started when the check ran (a server frozen
with its socket holding the request, which it reads only when it resumes after the check)
can still land once more; a write of other rows in between drops the record (logged).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from shadowcast.store import conform as cf
from shadowcast.store.clickhouse_io import Connection
from shadowcast.store.clickhouse_sql import NULL_MS, SEQ, ident, literal

log = logging.getLogger(__name__)

WAIT_STEP_S = 0.1


@dataclass(slots=True)
class Unsure:
    """Rows whose INSERT was cut short: the conformed batch, its ``_seq`` (one per row)
    and the ids of the INSERT queries that carried them."""

    data: pa.Table
    seq: np.ndarray
    query_ids: list[str] = field(default_factory=list)

    def rest(self, k: int) -> Unsure | None:
        """The rows after the first ``k`` (None when there are none)."""
        if k >= self.data.num_rows:
            return None
        return Unsure(self.data.slice(k), self.seq[k:], list(self.query_ids))


def common_prefix(unsure: Unsure, data: pa.Table) -> int:
    """How many leading rows ``data`` shares with ``unsure`` (0: other rows, and then
    ``unsure`` is not being retried)."""
    k = min(unsure.data.num_rows, data.num_rows)
    if k == 0 or unsure.data.schema != data.schema:
        return 0
    return k if unsure.data.slice(0, k).equals(data.slice(0, k)) else 0


def wait_gone(conn: Connection, query_ids: Sequence[str], timeout_s: float) -> None:
    """Wait (up to ``timeout_s``) until none of ``query_ids`` is running on the server."""
    if not query_ids:
        return
    ids = ", ".join(literal(q) for q in query_ids)
    sql = f"SELECT count() FROM system.processes WHERE query_id IN ({ids})"
    until = time.monotonic() + timeout_s
    while conn.scalar(sql, "wait for a cut-short insert"):
        if time.monotonic() >= until:
            log.warning("a cut-short insert is still running; checking its rows anyway")
            return
        time.sleep(WAIT_STEP_S)


def present(conn: Connection, name: str, table: str, unsure: Unsure, k: int) -> np.ndarray:
    """Which of the first ``k`` rows of ``unsure`` the server holds (a bool per row)."""
    seq = unsure.seq[:k]
    conds = [f"{ident(SEQ)} >= {int(seq.min())}", f"{ident(SEQ)} <= {int(seq.max())}"]
    tcol = cf.time_column(table)
    col = unsure.data.slice(0, k).column(tcol).cast(pa.int64())
    times = np.asarray(col.fill_null(NULL_MS).to_numpy(), dtype=np.int64)
    known = times[times != NULL_MS]
    if len(known):  # the time bounds narrow the parts read
        span = f"{ident(tcol)} >= {int(known.min())} AND {ident(tcol)} <= {int(known.max())}"
        conds.append(span if len(known) == k else f"({ident(tcol)} = {NULL_MS} OR ({span}))")
    sql = f"SELECT {ident(SEQ)} FROM {name} WHERE {' AND '.join(conds)}"
    cols, _ = conn.run(sql, what=f"check of a cut-short write to {table!r}")
    have = np.asarray(cols[0], dtype=np.int64) if cols else np.zeros(0, np.int64)
    return np.isin(seq, have)
