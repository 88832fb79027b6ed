"""The embedded default backend: one DuckDB file (or ``:memory:``).

Writes register the Arrow batch with DuckDB and run one ``INSERT ... SELECT`` (never a row
at a time). Timestamps are stored as ``TIMESTAMPTZ`` with every connection's time zone set
to UTC; time buckets are aligned to the Unix epoch.

Threads: each thread gets its own DuckDB cursor (a connection to the same database), so a
collector thread can write while a reader thread aggregates; a reader sees only committed
data, and a thread inside :meth:`DuckDBStore.transaction` sees its own uncommitted writes.
Cursors are closed by :meth:`DuckDBStore.close`.

``flows`` and ``flow_features`` are kept, by default (``flows_format="parquet"``), as
Parquet segment files named by a manifest table in the database (see
:mod:`shadowcast.store.segments`): the same transactions and answers, at about a third of
the write cost. ``flows_format="table"`` keeps them as DuckDB tables; either mode reads
what the other wrote. With ``fresh="arrow"`` (collectors) each write is an Arrow IPC
segment, about half the CPU per row again, and a background thread at the lowest CPU
priority compacts them into Parquet segments (:meth:`DuckDBStore.compact`) once writes
pause for ``COMPACT_QUIET_S`` (or a backlog of ``COMPACT_BACKLOG_ROWS`` builds up); closing
the store compacts what is left for up to ``CLOSE_COMPACT_S``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from shadowcast.errors import StoreError
from shadowcast.store import conform as cf
from shadowcast.store.base import AggQuery, TimeRange, inner_block
from shadowcast.store.schema import TABLES
from shadowcast.store.segcheck import SegmentProblem, SegmentRepair, repair
from shadowcast.store.segments import (
    COMPACT_AFTER_S,
    COMPACT_BACKLOG_ROWS,
    SEGMENTED,
    Pending,
    Segments,
)
from shadowcast.store.sqltypes import q, sql_type

if TYPE_CHECKING:
    from shadowcast.store.config import StoreConfig

log = logging.getLogger(__name__)

US_UTC = pa.timestamp("us", tz="UTC")
COMPACT_EVERY_S = 1.0  # how often the compactor looks for fresh segments due
COMPACT_QUIET_S = 1.0  # ... and it waits until no write came for this long (or a backlog)
CLOSE_COMPACT_S = 60.0  # close() compacts fresh segments for at most this long


class _Local(threading.local):
    cur: duckdb.DuckDBPyConnection | None = None
    depth: int = 0
    doomed: bool = False
    files: Pending | None = None

    @property
    def pending(self) -> Pending:
        if self.files is None:
            self.files = Pending()
        return self.files


_NOT_DATA = (duckdb.ParserException, duckdb.BinderException, duckdb.CatalogException)


def _io(exc: Exception) -> bool:
    return isinstance(exc, duckdb.IOException)


class DuckDBStore:
    """A :class:`~shadowcast.store.base.Store` in one DuckDB database file."""

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        memory_limit: str | None = None,
        threads: int | None = None,
        flows_format: str = "parquet",
        compression: str = "lz4",
        fresh: str = "parquet",
        compact_after_s: float = COMPACT_AFTER_S,
    ) -> None:
        self.path = str(path)
        if flows_format not in ("parquet", "table"):
            raise StoreError(f"unknown flows_format {flows_format!r} (parquet or table)")
        self.flows_format = flows_format
        config: dict[str, Any] = {}
        if memory_limit:
            config["memory_limit"] = memory_limit
        if threads:
            config["threads"] = threads
        if self.path != ":memory:":
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the store's folder for {self.path}: {exc}"
                ) from exc
        try:
            self._con = duckdb.connect(self.path, config=config)
            self._con.execute("SET TimeZone = 'UTC'")
        except duckdb.Error as exc:
            raise StoreError(f"cannot open DuckDB store {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._local = _Local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._closed = False
        self._maint = threading.Lock()  # retention and merging, one at a time
        self._tmp: weakref.finalize[Any, Any] | None = None
        if self.path == ":memory:":  # segments in a folder that goes with the store
            tmp = tempfile.mkdtemp(prefix="shadowcast-segments-")
            self._tmp = weakref.finalize(self, shutil.rmtree, tmp, True)
            root = Path(tmp)
        else:
            root = Path(self.path + ".segments")
        self._with_table: dict[str, bool] = {}
        try:
            self._segments = Segments(root, compression, fsync=self._tmp is None, fresh=fresh)
            self._create_tables()
            self._segments.open(self._con)
            for name in SEGMENTED:  # parquet mode: old table rows, if any, stay readable
                rows = self._con.execute(f"SELECT count(*) > 0 FROM {q(name)}").fetchall()
                self._with_table[name] = flows_format == "table" or bool(rows[0][0])
        except (StoreError, duckdb.Error) as exc:
            self._con.close()
            if hasattr(self, "_segments"):
                self._segments.close()
            self._drop_tmp()
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot open segments of {self.path}: {exc}") from exc
        self.compact_after_s = compact_after_s
        self._last_write = 0.0  # monotonic time of the last write of a segmented table
        self._stop_compactor = threading.Event()
        self._compactor: threading.Thread | None = None
        if fresh == "arrow" and flows_format == "parquet":
            self._compactor = threading.Thread(
                target=self._compact_loop, name="store-compactor", daemon=True
            )
            self._compactor.start()

    @classmethod
    def from_config(cls, config: StoreConfig) -> DuckDBStore:
        return cls(
            config.resolved_path(),
            memory_limit=config.memory_limit,
            threads=config.threads,
            flows_format=config.flows_format,
            compression=config.segment_compression,
            fresh="arrow" if config.fresh_segments == "arrow" else "parquet",
        )

    def __repr__(self) -> str:
        return f"DuckDBStore({self.path!r}, flows_format={self.flows_format!r})"

    def __enter__(self) -> DuckDBStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connections -------------------------------------------------------------------

    def _create_tables(self) -> None:
        con = self._con
        try:
            for name, schema in TABLES.items():
                cols = ", ".join(f"{q(f.name)} {sql_type(f.type)}" for f in schema)
                con.execute(f"CREATE TABLE IF NOT EXISTS {q(name)} ({cols})")
                have = con.execute(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position",
                    [name],
                ).fetchall()
                names = [r[0] for r in have]
                if names != schema.names and names == schema.names[: len(names)]:
                    for f in schema:  # the schema grew: add the new columns (nulls)
                        if f.name not in names:
                            con.execute(
                                f"ALTER TABLE {q(name)} ADD COLUMN {q(f.name)} {sql_type(f.type)}"
                            )
                            log.info("store column added", extra={"table": name, "column": f.name})
                    names = schema.names
                if names != schema.names:
                    raise StoreError(
                        f"table {name!r} in {self.path} has columns {names}, "
                        f"expected {schema.names}"
                    )
        except duckdb.Error as exc:
            raise StoreError(f"cannot create tables in {self.path}: {exc}") from exc

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        if self._closed:
            raise StoreError(f"store {self.path} is closed")
        cur = self._local.cur
        if cur is not None:
            return cur
        with self._lock:
            if self._closed:
                raise StoreError(f"store {self.path} is closed")
            cur = self._con.cursor()
            cur.execute("SET TimeZone = 'UTC'")
            self._cursors.append(cur)
        self._local.cur = cur
        return cur

    def _source(self, cur: duckdb.DuckDBPyConnection, table: str, registered: list[str]) -> str:
        if table not in SEGMENTED:
            return q(table)
        return self._segments.source(cur, table, self._with_table[table], registered)

    def _query(self, table: str, sql: str, params: Sequence[object] = ()) -> pa.Table:
        """Run ``sql`` with ``{src}`` standing for the table's rows."""
        cur = self._cursor()
        for attempt in range(3):
            views: list[str] = []
            try:
                src = self._source(cur, table, views)
                rel = cur.sql(sql.replace("{src}", src), params=list(params))
                out = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
                break
            except (duckdb.Error, OSError, pa.ArrowException) as exc:
                # outside a transaction, ask again when damaged segment files were found
                # and set aside, or a segment was merged or compacted away meanwhile
                again = attempt < 2 and self._local.depth == 0
                gone = _io(exc) or isinstance(exc, FileNotFoundError)
                if not (again and (self._set_aside(cur, table, exc) or gone)):
                    raise StoreError(f"query on {table!r} failed: {exc}") from exc
                self._segments.counters["queries_retried"] += 1
            finally:
                for view in views:
                    cur.unregister(view)
        assert isinstance(out, pa.Table)
        return out

    def _set_aside(self, cur: duckdb.DuckDBPyConnection, table: str, exc: Exception) -> bool:
        """After a failed query: footers checked, files the error names read in full and,
        if that finds nothing and the error may come from the data, every file in full."""
        if table not in SEGMENTED:
            return False
        segs = self._segments
        try:
            if segs.diagnose(cur, table, hint=str(exc)):
                return True
            return not isinstance(exc, _NOT_DATA) and bool(segs.diagnose(cur, table, full=True))
        except duckdb.Error:
            return False

    # -- writes ------------------------------------------------------------------------

    def write(self, table: str, batch: pa.Table) -> int:
        try:
            data = cf.conform(table, batch)
        except StoreError:
            self._doom()
            raise
        if data.num_rows == 0:
            return 0
        if table in SEGMENTED and self.flows_format == "parquet":
            self._write_segment(table, data)
            return int(data.num_rows)
        cur = self._cursor()
        view = "_shadowcast_batch"
        try:
            cur.register(view, data)
            try:
                cur.execute(f"INSERT INTO {q(table)} SELECT * FROM {view}")
            finally:
                cur.unregister(view)
        except duckdb.Error as exc:
            self._doom()
            raise StoreError(f"write to {table!r} failed: {exc}") from exc
        log.debug("store write", extra={"table": table, "rows": data.num_rows})
        return int(data.num_rows)

    def _write_segment(self, table: str, data: pa.Table) -> None:
        self._last_write = time.monotonic()
        with self.transaction():
            seq = self._segments.next_seq()
            self._segments.append(self._cursor(), table, data, seq, self._local.pending)
        log.debug("store write", extra={"table": table, "rows": data.num_rows})
        if self._compactor is not None:
            return  # fresh segments: the compactor rewrites them
        if self._local.depth == 0 and self._maint.acquire(blocking=False):
            try:
                with self.transaction():
                    self._segments.merge_tail(self._cursor(), table, self._local.pending)
            except (StoreError, duckdb.Error, OSError, pa.ArrowException) as exc:
                log.warning("segment merge skipped", extra={"table": table, "error": str(exc)})
            finally:
                self._maint.release()

    # -- compaction of fresh segments ----------------------------------------------------

    def compact(self, *, force: bool = False, budget_s: float | None = None) -> int:
        """Rewrite fresh (Arrow) segments due for it (all of them with ``force``) as
        Parquet segments, one run per transaction, for at most ``budget_s``; rows
        compacted."""
        done = 0
        until = None if budget_s is None else time.monotonic() + budget_s
        for table in sorted(SEGMENTED):
            while until is None or time.monotonic() < until:
                with self._maint, self.transaction():
                    n = self._segments.compact(
                        self._cursor(),
                        table,
                        self._local.pending,
                        force=force,
                        after_s=self.compact_after_s,
                    )
                if n == 0:
                    break
                done += n
                log.debug("fresh segments compacted", extra={"table": table, "rows": n})
        return done

    def fresh_rows(self) -> int:
        """Rows in fresh segments not compacted yet."""
        cur = self._cursor()
        try:
            return sum(self._segments.fresh_rows(cur, t) for t in SEGMENTED)
        except duckdb.Error as exc:
            raise StoreError(f"cannot read the segment manifest of {self.path}: {exc}") from exc

    def _compact_loop(self) -> None:
        """The compactor thread: at the lowest CPU priority (Linux: per thread), so the
        collector's readers and writer go first and it takes the idle time."""
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
        except (OSError, AttributeError):
            log.debug("compactor priority unchanged", exc_info=True)
        while not self._stop_compactor.wait(COMPACT_EVERY_S):
            try:
                busy = time.monotonic() - self._last_write < COMPACT_QUIET_S
                if busy and self.fresh_rows() < COMPACT_BACKLOG_ROWS:
                    continue  # a burst: the collector goes first
                self.compact()
            except (StoreError, duckdb.Error, OSError, pa.ArrowException) as exc:
                if self._closed:
                    return
                log.warning("segment compaction failed; retried", extra={"error": str(exc)})

    def _stop_compacting(self) -> None:
        """Stop the compactor thread, then compact what is left (bounded in time)."""
        thread, self._compactor = self._compactor, None
        if thread is None:
            return
        self._stop_compactor.set()
        thread.join()
        try:
            self.compact(force=True, budget_s=CLOSE_COMPACT_S)
            left = self.fresh_rows()
        except (StoreError, duckdb.Error, OSError, pa.ArrowException) as exc:
            log.warning("fresh segments left as they are", extra={"error": str(exc)})
            return
        if left:
            log.info(
                "fresh segments left for the next writer to compact (still readable)",
                extra={"rows": left},
            )

    def _doom(self) -> None:
        if self._local.depth > 0:
            self._local.doomed = True

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside the block land together or not at all.

        Blocks nest (an inner block joins the outer one). If a write inside fails, or an
        exception leaves the block, everything is rolled back; a failed write whose error
        was caught inside the block still rolls back, with a StoreError at the end.
        """
        loc = self._local
        if loc.depth > 0:
            with inner_block(loc):
                yield
            return
        cur = self._cursor()
        try:
            cur.execute("BEGIN TRANSACTION")
        except duckdb.Error as exc:
            raise StoreError(f"cannot begin a transaction on {self.path}: {exc}") from exc
        loc.depth, loc.doomed = 1, False
        try:
            yield
        except BaseException:
            self._rollback(cur)
            raise
        else:
            if loc.doomed:
                self._rollback(cur)
                raise StoreError("transaction rolled back: a write inside it failed")
            try:
                cur.execute("COMMIT")
            except duckdb.Error as exc:
                self._rollback(cur)
                raise StoreError(f"commit failed, rolled back: {exc}") from exc
            loc.pending.committed()
        finally:
            loc.depth, loc.doomed = 0, False

    def _rollback(self, cur: duckdb.DuckDBPyConnection) -> None:
        try:
            cur.execute("ROLLBACK")
        except duckdb.Error:  # already rolled back by DuckDB after a failed statement
            log.debug("rollback after abort", exc_info=True)
        self._local.pending.rolled_back()

    # -- reads -------------------------------------------------------------------------

    def _filters(
        self,
        table: str,
        start: datetime | None,
        end: datetime | None,
        where: Mapping[str, object] | None,
        ranges: Mapping[str, TimeRange] | None = None,
    ) -> tuple[str, list[object]]:
        clauses: list[str] = []
        params: list[object] = []
        for col, lo, hi in cf.time_ranges(table, start, end, ranges):
            for bound, op in ((lo, ">="), (hi, "<")):
                if bound is not None:
                    clauses.append(f"{q(col)} {op} ?")
                    params.append(bound)
        for col, scalar in cf.check_where(table, where).items():
            typ = sql_type(scalar.type)
            clauses.append(f"{q(col)} = CAST(? AS {typ})")
            params.append(scalar.as_py())
        sql = (" WHERE " + " AND ".join(clauses)) if clauses else ""
        return sql, params

    def read(
        self,
        table: str,
        start: datetime | None = None,
        end: datetime | None = None,
        where: dict[str, str] | None = None,
        *,
        ranges: Mapping[str, TimeRange] | None = None,
    ) -> pa.Table:
        """Rows of ``table`` (in insertion order) with the time column in [start, end)
        and each column of ``ranges`` in its range (see :meth:`Store.read`)."""
        schema = cf.table_schema(table)
        cond, params = self._filters(table, start, end, where, ranges)
        out = self._query(table, f"SELECT * FROM {{src}}{cond}", params)
        return out.cast(schema)

    def aggregate(self, query: AggQuery) -> pa.Table:
        out_schema = cf.check_query(query)
        table = query.table
        tcol = cf.time_column(table)
        # Buckets as integer microseconds floored to the step (epoch-aligned): about twice
        # as fast as time_bucket() on TIMESTAMPTZ; made a timestamp again in Arrow.
        us, t = int(query.step_s) * 1_000_000, f"epoch_us({q(tcol)})"
        bucket = f"({t} - (({t} % {us}) + {us}) % {us})"
        selects = [f"{bucket} AS bucket"] + [q(b) for b in query.by]
        fn = {"sum": "sum", "avg": "avg", "max": "max", "min": "min", "count": "count"}
        for v in query.values:
            field = out_schema.field(v)
            selects.append(f"CAST({fn[query.agg]}({q(v)}) AS {sql_type(field.type)}) AS {q(v)}")
        if not query.values:
            selects.append("count(*) AS count")
        cond, params = self._filters(table, query.start, query.end, query.where)
        if cond:
            cond += f" AND {q(tcol)} IS NOT NULL"
        else:
            cond = f" WHERE {q(tcol)} IS NOT NULL"
        keys = ", ".join(str(i + 1) for i in range(1 + len(query.by)))
        sql = f"SELECT {', '.join(selects)} FROM {{src}}{cond} GROUP BY {keys} ORDER BY {keys}"
        out = self._query(table, sql, params)
        out = out.set_column(0, "bucket", out.column(0).cast(pa.int64()).cast(US_UTC))
        return out.cast(out_schema)

    def count(self, table: str) -> int:
        cf.table_schema(table)
        n = 0
        if table in SEGMENTED:
            try:
                n = self._segments.rows(self._cursor(), table)
            except duckdb.Error as exc:
                raise StoreError(f"query on {table!r} failed: {exc}") from exc
            if not self._with_table[table]:
                return n
        out = self._query(table, f"SELECT count(*) AS n FROM {q(table)}")
        return n + int(out.column(0)[0].as_py())

    def time_range(self, table: str) -> tuple[datetime | None, datetime | None]:
        """Earliest and latest value of ``table``'s time column (None when empty)."""
        tcol = q(cf.time_column(table))
        out = self._query(table, f"SELECT min({tcol}), max({tcol}) FROM {{src}}")
        lo, hi = out.column(0)[0].as_py(), out.column(1)[0].as_py()
        return lo, hi

    # -- damaged segments (see shadowcast.store.segcheck) --------------------------------

    def check_segments(self, *, full: bool = True) -> list[SegmentProblem]:
        """Inspect every segment file (``full``: decode every page, verify its CRC); the
        damaged ones, which queries skip from now on."""
        cur = self._cursor()
        try:
            for name in sorted(SEGMENTED):
                self._segments.diagnose(cur, name, full=full)
        except duckdb.Error as exc:
            raise StoreError(f"cannot read the segment manifest of {self.path}: {exc}") from exc
        return self._segments.damaged()

    def repair_segments(self) -> list[SegmentRepair]:
        """Rewrite the readable rows of each damaged segment (or drop it from the
        manifest), quarantining the file; one transaction."""
        with self._maint, self.transaction():
            problems = self.check_segments(full=True)
            done = repair(self._segments, self._cursor(), problems, self._local.pending)
        for r in done:
            self._segments.forget(r.table, r.file)
        return done

    def segment_counters(self) -> dict[str, int]:
        return dict(self._segments.counters)

    # -- retention ---------------------------------------------------------------------

    def retain(
        self,
        max_age: timedelta,
        now: datetime | None = None,
        tables: Sequence[str] | None = None,
        where: dict[str, str] | None = None,
    ) -> dict[str, int]:
        """Delete rows whose time column is older than ``now - max_age`` (rows with no
        time are kept), only those matching ``where`` when given; all tables in one
        transaction."""
        names = cf.retain_tables(tables)
        if where and any(n in SEGMENTED for n in names):
            raise StoreError("retention with a filter is not offered on segmented tables")
        cutoff = cf.utc(now or datetime.now(UTC)) - max_age
        deleted: dict[str, int] = {}
        with self._maint, self.transaction():
            cur = self._cursor()
            for name in names:
                tcol = q(cf.time_column(name))
                flt = cf.check_where(name, where)
                extra = "".join(f" AND {q(c)} = ?" for c in flt)
                try:
                    row = cur.execute(
                        f"DELETE FROM {q(name)} WHERE {tcol} < ?{extra}",
                        [cutoff, *(v.as_py() for v in flt.values())],
                    ).fetchone()
                except duckdb.Error as exc:
                    raise StoreError(f"retention on {name!r} failed: {exc}") from exc
                deleted[name] = int(row[0]) if row else 0
                if name in SEGMENTED:
                    pending = self._local.pending
                    deleted[name] += self._segments.retain(cur, name, cutoff, pending)
        log.debug("store retention", extra={"cutoff": cutoff.isoformat(), "deleted": deleted})
        return deleted

    def close(self) -> None:
        if not self._closed:
            self._stop_compacting()
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for cur in self._cursors:
                try:
                    cur.close()
                except duckdb.Error:
                    log.debug("closing cursor", exc_info=True)
            self._cursors.clear()
            try:
                self._con.close()
            except duckdb.Error as exc:
                raise StoreError(f"closing {self.path} failed: {exc}") from exc
            finally:
                self._segments.close()
                self._drop_tmp()

    def _drop_tmp(self) -> None:
        if self._tmp is not None:
            self._tmp()
