"""The ClickHouse backend: one server, or a cluster of shards behind Distributed tables.

Same tables and answers as the DuckDB backend (the Store contract suite runs on both);
the layout is in :mod:`shadowcast.store.clickhouse_sql`, schema upgrades and retention in
:mod:`shadowcast.store.clickhouse_maint`.

Writes are columnar inserts straight from Arrow (numpy arrays over the native protocol).
On a cluster they go through the Distributed table with ``insert_distributed_sync`` so
each row lands on its shard (by exporter, OD pair or subject) before ``write`` returns.
Writes, transactions (buffered on the client: ClickHouse has none across tables) and
writes cut short that are sent again without duplicates are in
:mod:`shadowcast.store.clickhouse_write`. Retention inside a transaction is applied at once.

The store is thread-safe (one connection per thread).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from shadowcast.errors import StoreError
from shadowcast.store import clickhouse_maint as maint
from shadowcast.store import clickhouse_query as q
from shadowcast.store import conform as cf
from shadowcast.store.base import AggQuery, TimeRange
from shadowcast.store.clickhouse_io import Connection, parse_host, result_table
from shadowcast.store.clickhouse_sql import NULL_MS, SEQ, Layout, ident
from shadowcast.store.clickhouse_write import ThreadState, Writes
from shadowcast.store.memory import MemoryStore

if TYPE_CHECKING:
    from shadowcast.store.config import StoreConfig

log = logging.getLogger(__name__)


class ClickHouseStore(Writes):
    """A :class:`~shadowcast.store.base.Store` in a ClickHouse database."""

    atomic_transactions = False  # a transaction is sent table by table (module docstring)

    def __init__(
        self,
        hosts: Sequence[str] = ("127.0.0.1:9000",),
        database: str = "shadowcast",
        cluster: str | None = None,
        *,
        retention_days: Mapping[str, float] | None = None,
        rollups: bool = True,
        migrate: bool | None = True,
        connect_timeout_s: float = 10.0,
        timeout_s: float = 300.0,
    ) -> None:
        if not hosts:
            raise StoreError("the clickhouse backend needs at least one host")
        self.hosts = [parse_host(h) for h in hosts]
        self.layout = Layout(database, cluster)
        self.rollups = rollups
        self.retention_days = dict(retention_days or {})
        self._timeouts = (connect_timeout_s, timeout_s)
        self._lock = threading.Lock()
        self._conns: list[Connection] = []
        self._local = ThreadState()
        self._closed = False
        first = self._connect_any()
        self._conns.append(first)
        self._local.conn = first
        try:
            self.features = maint.features(first)
            self.servers = maint.servers(first, cluster, self.hosts)
            if migrate:
                conns = self._maint_conns()
                try:
                    maint.migrate(
                        conns, self.layout, self.features, self.retention_days, rollups=rollups
                    )
                finally:
                    self._drop(conns)
            elif migrate is False:  # None: the caller migrates (``store migrate``)
                maint.check_version(first, self.layout)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_config(cls, config: StoreConfig, *, to_migrate: bool = False) -> ClickHouseStore:
        """The store ``config`` names (``to_migrate``: opened without migrating or checking
        the schema version, for :meth:`migrate`)."""
        ch = config.clickhouse
        return cls(
            ch.hosts,
            ch.database,
            ch.cluster,
            retention_days=config.retention_days,
            rollups=ch.rollups,
            migrate=None if to_migrate else ch.migrate_on_open,
            connect_timeout_s=ch.connect_timeout_s,
            timeout_s=ch.timeout_s,
        )

    def __repr__(self) -> str:
        hosts = ",".join(f"{h}:{p}" for h, p in self.hosts)
        where = f", cluster={self.layout.cluster!r}" if self.layout.cluster else ""
        return f"ClickHouseStore({hosts!r}, database={self.layout.database!r}{where})"

    def __enter__(self) -> ClickHouseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- connections ---------------------------------------------------------------------

    def _new(self, host: str, port: int, database: str = "default") -> Connection:
        return Connection(
            host, port, database, connect_timeout_s=self._timeouts[0], timeout_s=self._timeouts[1]
        )

    def _connect_any(self) -> Connection:
        errors: list[str] = []
        for host, port in self.hosts:
            conn = self._new(host, port)
            try:
                conn.run("SELECT 1", what="connect")
                return conn
            except StoreError as exc:
                conn.close()
                errors.append(str(exc))
        raise StoreError("no ClickHouse server reachable: " + "; ".join(errors))

    def _conn(self) -> Connection:
        if self._closed:
            raise StoreError("clickhouse store is closed")
        conn = self._local.conn
        if conn is not None:
            return conn
        conn = self._connect_any()
        with self._lock:
            if self._closed:
                conn.close()
                raise StoreError("clickhouse store is closed")
            self._conns.append(conn)
        self._local.conn = conn
        return conn

    def _maint_conns(self) -> list[Connection]:
        """One connection per server that keeps rows (every shard of a cluster)."""
        out = []
        for host, port in self.servers:
            conn = self._new(host, port)
            with self._lock:
                self._conns.append(conn)
            out.append(conn)
        return out

    def drop_database(self) -> None:
        """Drop this store's database, on every server that keeps rows (a replay's own
        database, replaced at each new replay). The store is closed after."""
        conns = self._maint_conns()
        try:
            for conn in conns:
                db = ident(self.layout.database)
                conn.run(f"DROP DATABASE IF EXISTS {db}", what="drop of the database")
        finally:
            self._drop(conns)
            self.close()
        log.info("clickhouse database dropped", extra={"database": self.layout.database})

    # -- reads ----------------------------------------------------------------------------

    def _select(self, sql: str, schema: pa.Schema, what: str) -> pa.Table:
        cols, _ = self._conn().run(sql, what=what)
        return result_table(cols, schema)

    def read(
        self,
        table: str,
        start: datetime | None = None,
        end: datetime | None = None,
        where: dict[str, str] | None = None,
        *,
        ranges: Mapping[str, TimeRange] | None = None,
    ) -> pa.Table:
        """Rows of ``table`` in insertion order with the time column in [start, end) and
        each column of ``ranges`` in its range (see :meth:`Store.read`)."""
        schema = cf.table_schema(table)
        conds = q.filters(table, start, end, where, ranges=ranges)
        cond = (" WHERE " + " AND ".join(conds)) if conds else ""
        names = ", ".join(ident(n) for n in schema.names)
        sql = f"SELECT {names} FROM {self.layout.name(table)}{cond} ORDER BY {ident(SEQ)}"
        out = self._select(sql, schema, f"read of {table!r}")
        pending = self._pending(table)
        if pending is not None:
            out = pa.concat_tables([out, pending.read(table, start, end, where, ranges=ranges)])
        return out

    def count(self, table: str) -> int:
        cf.table_schema(table)
        n = self._conn().scalar(
            f"SELECT count() FROM {self.layout.name(table)}", f"count of {table!r}"
        )
        pending = self._pending(table)
        return int(n or 0) + (pending.count(table) if pending is not None else 0)

    def time_range(self, table: str) -> tuple[datetime | None, datetime | None]:
        """Earliest and latest value of ``table``'s time column (None when empty)."""
        tcol = ident(cf.time_column(table))
        sql = (
            f"SELECT count(), min({tcol}), max({tcol}) FROM {self.layout.name(table)} "
            f"WHERE {tcol} != {NULL_MS}"
        )
        cols, _ = self._conn().run(sql, what=f"time range of {table!r}")
        if not cols or int(cols[0][0]) == 0:
            return None, None
        lo, hi = (datetime.fromtimestamp(int(c[0]) / 1000, tz=UTC) for c in cols[1:])
        return lo, hi

    def aggregate(self, query: AggQuery) -> pa.Table:
        out_schema = cf.check_query(query)
        table = query.table
        pending = self._pending(table)
        if pending is not None:  # this thread's unsent rows count too: aggregate in Arrow
            rows = self.read(table, query.start, query.end, query.where)
            with MemoryStore() as mem:
                mem.write(table, rows)
                return mem.aggregate(query)
        step = q.rollup_step(query) if self.rollups else None
        if step is not None:
            sql = q.rollup_sql(self.layout, query, step)
        else:
            sql = q.raw_sql(self.layout, query)
        return self._select(sql, out_schema, f"aggregate of {table!r}")

    # -- retention ------------------------------------------------------------------------

    def retain(
        self,
        max_age: timedelta,
        now: datetime | None = None,
        tables: Sequence[str] | None = None,
        where: dict[str, str] | None = None,
    ) -> dict[str, int]:
        """Delete rows whose time is older than ``now - max_age`` (rows without time are
        kept), only those matching ``where`` when given, on every shard; applied at once,
        also inside a transaction."""
        names = cf.retain_tables(tables)
        match = {name: q.filters(name, None, None, where) for name in names}
        self._conn()
        cutoff = cf.utc(now or datetime.now(UTC)) - max_age
        cutoff_ms = q.ms(cutoff)
        conns = self._maint_conns()
        deleted: dict[str, int] = {}
        try:
            for name in names:
                deleted[name] = sum(
                    maint.retain_table(c, self.layout, name, cutoff_ms, match[name]) for c in conns
                )
                if self._local.depth > 0 and self._local.buffer is not None:
                    buffer = self._local.buffer
                    deleted[name] += buffer.retain(max_age, now, [name], where)[name]
        finally:
            self._drop(conns)
        log.info("store retention", extra={"cutoff": cutoff.isoformat(), "deleted": deleted})
        return deleted

    def migrate(self, *, ttl: bool = True) -> dict[str, dict[str, Any]]:
        """Create or upgrade the schema on every server (idempotent); what was done."""
        self._conn()
        conns = self._maint_conns()
        try:
            return maint.migrate(
                conns, self.layout, self.features, self.retention_days, ttl=ttl,
                rollups=self.rollups,
            )  # fmt: skip
        finally:
            self._drop(conns)

    def _drop(self, conns: list[Connection]) -> None:
        for c in conns:
            c.close()
        with self._lock:
            self._conns = [c for c in self._conns if c not in conns]

    def totals(self, table: str) -> dict[str, float | int]:
        """Row count and per-column sums, to check a copy (see :mod:`clickhouse_copy`)."""
        from shadowcast.store.clickhouse_copy import totals_sql

        sql, keys = totals_sql(self.layout.name(table), table)
        cols, _ = self._conn().run(sql, what=f"totals of {table!r}")
        return {k: c[0].item() if len(c) else 0 for k, c in zip(keys, cols, strict=True)}

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
