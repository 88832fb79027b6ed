"""The embedded default backend: one DuckDB file (or ``:memory:``).

Writes register the Arrow batch with DuckDB and run one ``INSERT ... SELECT`` (never a row
at a time). Timestamps are stored as ``TIMESTAMPTZ`` with every connection's time zone set
to UTC; time buckets are aligned to the Unix epoch.

Threads: each thread gets its own DuckDB cursor (a connection to the same database), so a
collector thread can write while a reader thread aggregates; a reader sees only committed
data, and a thread inside :meth:`DuckDBStore.transaction` sees its own uncommitted writes.
Cursors are closed by :meth:`DuckDBStore.close`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa

from shadowcast.errors import StoreError
from shadowcast.store import conform as cf
from shadowcast.store.base import AggQuery
from shadowcast.store.schema import TABLES

if TYPE_CHECKING:
    from shadowcast.store.config import StoreConfig

log = logging.getLogger(__name__)

US_UTC = pa.timestamp("us", tz="UTC")


def sql_type(typ: pa.DataType) -> str:
    """The DuckDB column type that holds an Arrow type of the store's schemas."""
    if pa.types.is_timestamp(typ):
        return "TIMESTAMPTZ"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "VARCHAR"
    if pa.types.is_binary(typ) or pa.types.is_fixed_size_binary(typ):
        return "BLOB"
    names = {
        pa.int8(): "TINYINT",
        pa.int16(): "SMALLINT",
        pa.int32(): "INTEGER",
        pa.int64(): "BIGINT",
        pa.uint8(): "UTINYINT",
        pa.uint16(): "USMALLINT",
        pa.uint32(): "UINTEGER",
        pa.uint64(): "UBIGINT",
        pa.float32(): "FLOAT",
        pa.float64(): "DOUBLE",
        pa.bool_(): "BOOLEAN",
    }
    try:
        return names[typ]
    except KeyError:
        raise StoreError(f"no DuckDB type for Arrow type {typ}") from None


def q(name: str) -> str:
    """A quoted identifier (names are validated against the schema before they get here)."""
    return '"' + name.replace('"', '""') + '"'


class _Local(threading.local):
    cur: duckdb.DuckDBPyConnection | None = None
    depth: int = 0
    doomed: bool = False


class DuckDBStore:
    """A :class:`~shadowcast.store.base.Store` in one DuckDB database file."""

    def __init__(
        self,
        path: str | Path = ":memory:",
        *,
        memory_limit: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.path = str(path)
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
        try:
            self._create_tables()
        except StoreError:
            self._con.close()
            raise

    @classmethod
    def from_config(cls, config: StoreConfig) -> DuckDBStore:
        return cls(config.resolved_path(), memory_limit=config.memory_limit, threads=config.threads)

    def __repr__(self) -> str:
        return f"DuckDBStore({self.path!r})"

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

    def _query(self, table: str, sql: str, params: Sequence[object] = ()) -> pa.Table:
        cur = self._cursor()
        try:
            rel = cur.sql(sql, params=list(params))
            out = rel.to_arrow_table() if hasattr(rel, "to_arrow_table") else rel.arrow()
        except duckdb.Error as exc:
            raise StoreError(f"query on {table!r} failed: {exc}") from exc
        assert isinstance(out, pa.Table)
        return out

    # -- writes ------------------------------------------------------------------------

    def write(self, table: str, batch: pa.Table) -> int:
        try:
            data = cf.conform(table, batch)
        except StoreError:
            self._doom()
            raise
        if data.num_rows == 0:
            return 0
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
            loc.depth += 1
            try:
                yield
            except BaseException:
                loc.doomed = True
                raise
            finally:
                loc.depth -= 1
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
        finally:
            loc.depth, loc.doomed = 0, False

    @staticmethod
    def _rollback(cur: duckdb.DuckDBPyConnection) -> None:
        try:
            cur.execute("ROLLBACK")
        except duckdb.Error:  # already rolled back by DuckDB after a failed statement
            log.debug("rollback after abort", exc_info=True)

    # -- reads -------------------------------------------------------------------------

    def _filters(
        self,
        table: str,
        start: datetime | None,
        end: datetime | None,
        where: Mapping[str, object] | None,
    ) -> tuple[str, list[object]]:
        tcol = cf.time_column(table)
        clauses: list[str] = []
        params: list[object] = []
        if start is not None:
            clauses.append(f"{q(tcol)} >= ?")
            params.append(cf.utc(start))
        if end is not None:
            clauses.append(f"{q(tcol)} < ?")
            params.append(cf.utc(end))
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
    ) -> pa.Table:
        """Rows of ``table`` (in insertion order) with the time column in [start, end)."""
        schema = cf.table_schema(table)
        cond, params = self._filters(table, start, end, where)
        out = self._query(table, f"SELECT * FROM {q(table)}{cond}", params)
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
        sql = f"SELECT {', '.join(selects)} FROM {q(table)}{cond} GROUP BY {keys} ORDER BY {keys}"
        out = self._query(table, sql, params)
        out = out.set_column(0, "bucket", out.column(0).cast(pa.int64()).cast(US_UTC))
        return out.cast(out_schema)

    def count(self, table: str) -> int:
        cf.table_schema(table)
        out = self._query(table, f"SELECT count(*) AS n FROM {q(table)}")
        n = out.column(0)[0].as_py()
        return int(n)

    def time_range(self, table: str) -> tuple[datetime | None, datetime | None]:
        """Earliest and latest value of ``table``'s time column (None when empty)."""
        tcol = q(cf.time_column(table))
        out = self._query(table, f"SELECT min({tcol}), max({tcol}) FROM {q(table)}")
        lo, hi = out.column(0)[0].as_py(), out.column(1)[0].as_py()
        return lo, hi

    # -- retention ---------------------------------------------------------------------

    def retain(
        self,
        max_age: timedelta,
        now: datetime | None = None,
        tables: Sequence[str] | None = None,
    ) -> dict[str, int]:
        """Delete rows whose time column is older than ``now - max_age`` (rows with no
        time are kept); all tables in one transaction."""
        names = cf.retain_tables(tables)
        cutoff = cf.utc(now or datetime.now(UTC)) - max_age
        deleted: dict[str, int] = {}
        with self.transaction():
            cur = self._cursor()
            for name in names:
                tcol = q(cf.time_column(name))
                try:
                    row = cur.execute(
                        f"DELETE FROM {q(name)} WHERE {tcol} < ?", [cutoff]
                    ).fetchone()
                except duckdb.Error as exc:
                    raise StoreError(f"retention on {name!r} failed: {exc}") from exc
                deleted[name] = int(row[0]) if row else 0
        log.info("store retention", extra={"cutoff": cutoff.isoformat(), "deleted": deleted})
        return deleted

    def close(self) -> None:
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
