"""ClickHouse maintenance: server features, the servers of a cluster, schema migrations
(idempotent, recorded in a schema version table) and retention on every shard.

Migrations run on each server that keeps rows. They create what is missing, add columns
the Arrow schema gained (``ALTER TABLE ... ADD COLUMN``, on the local and Distributed
tables), refuse columns whose type changed, bring TTLs to ``store.retention_days`` on
servers with TTL, and record :data:`SCHEMA_VERSION`. A database written by a newer
shadowcast is refused.

Retention deletes rows older than a cutoff: whole day partitions are dropped, the rest
goes with ``ALTER TABLE ... DELETE`` (a mutation, waited for). The flows rollups lose the
buckets before the cutoff, and the bucket that straddles it gets rows subtracting the
deleted flows (summed away by SummingMergeTree).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from shadowcast.errors import StoreError
from shadowcast.logs import fields
from shadowcast.store.clickhouse_io import Connection
from shadowcast.store.clickhouse_sql import (
    NULL_MS,
    ROLLUP_DIMS,
    ROLLUP_ROWS,
    ROLLUP_STEPS,
    ROLLUP_VALUES,
    SCHEMA_VERSION,
    SEQ,
    VERSION_TABLE,
    Features,
    Layout,
    alter_ttl,
    columns,
    create_rollups,
    create_table,
    create_version_table,
    ident,
    literal,
    rollup_columns,
    rollup_select,
    rollup_table,
)
from shadowcast.store.schema import TABLES, TIME_COLUMN

log = logging.getLogger(__name__)

MUTATION_TIMEOUT_S = 600.0


def features(conn: Connection) -> Features:
    version = conn.server_version()
    settings = _names(conn, "SELECT name FROM system.settings WHERE name LIKE '%dedup%'")
    tree = _names(conn, "SELECT name FROM system.merge_tree_settings WHERE name LIKE '%dedup%'")
    return Features.detect(version, settings, tree)


def _names(conn: Connection, sql: str) -> set[str]:
    cols, _ = conn.run(sql, what="server settings")
    return {_text(v) for v in cols[0]} if cols else set()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def servers(
    conn: Connection, cluster: str | None, hosts: Sequence[tuple[str, int]]
) -> list[tuple[str, int]]:
    """The servers that keep rows: the cluster's shards, or the first host."""
    if cluster is None:
        return [(conn.address.rsplit(":", 1)[0], int(conn.address.rsplit(":", 1)[1]))]
    cols, _ = conn.run(
        "SELECT host_address, port FROM system.clusters "
        f"WHERE cluster = {literal(cluster)} ORDER BY shard_num, replica_num",
        what="cluster lookup",
    )
    if not cols or len(cols[0]) == 0:
        raise StoreError(
            f"cluster {cluster!r} is not in the remote_servers of ClickHouse {conn.address}"
        )
    out: list[tuple[str, int]] = []
    for host, port in zip(cols[0], cols[1], strict=True):
        entry = (_text(host), int(port))
        if entry not in out:
            out.append(entry)
    return out


# -- migrations -------------------------------------------------------------------------------


def check_version(conn: Connection, layout: Layout) -> int:
    """The database's schema version; a StoreError when it is not this shadowcast's."""
    db = literal(layout.database)
    have = conn.scalar(
        f"SELECT count() FROM system.tables WHERE database = {db} AND name = "
        f"{literal(VERSION_TABLE)}",
        what="schema version",
    )
    version = 0
    if have:
        version = int(
            conn.scalar(
                f"SELECT max(version) FROM {ident(layout.database)}.{ident(VERSION_TABLE)}",
                what="schema version",
            )
            or 0
        )
    if version > SCHEMA_VERSION:
        raise StoreError(
            f"ClickHouse database {layout.database!r} has schema version {version}, newer "
            f"than this shadowcast's {SCHEMA_VERSION}: upgrade shadowcast"
        )
    if version < SCHEMA_VERSION and not have:
        raise StoreError(
            f"ClickHouse database {layout.database!r} has no shadowcast schema: "
            "run `shadowcast store migrate`"
        )
    return version


def migrate(
    conns: Sequence[Connection],
    layout: Layout,
    feats: Features,
    retention_days: Mapping[str, float] | None = None,
    *,
    ttl: bool = False,
    rollups: bool = True,
) -> dict[str, dict[str, Any]]:
    """Create or upgrade the schema on every server; what was done, per server.

    New tables get TTLs from ``retention_days`` (servers with TTL); with ``ttl`` the
    existing tables are brought to them too (``ALTER TABLE ... MODIFY TTL``). With
    ``rollups`` the flows rollups and their views are created, and filled from the flows
    already there (rows written while this runs may be counted twice: add rollups while
    nothing writes flows); without, none are created and existing ones are left as they are.
    """
    days = dict(retention_days or {})
    return {c.address: _migrate_one(c, layout, feats, days, ttl, rollups) for c in conns}


def _retention_key(table: str) -> str:
    return "flows" if table in {rollup_table(s) for s in ROLLUP_STEPS} else table


def _migrate_one(
    conn: Connection,
    layout: Layout,
    feats: Features,
    days: dict[str, float],
    ttl: bool,
    rollups: bool,
) -> dict[str, Any]:
    db = layout.database
    conn.run(f"CREATE DATABASE IF NOT EXISTS {ident(db)}", what="migrate")
    conn.run(create_version_table(layout), what="migrate")
    before = int(
        conn.scalar(f"SELECT max(version) FROM {ident(db)}.{ident(VERSION_TABLE)}", "migrate") or 0
    )
    if before > SCHEMA_VERSION:
        check_version(conn, layout)
    existing = _columns(conn, db)
    created: list[str] = []
    added: list[str] = []
    statements: list[str] = []
    for table in TABLES:
        wanted = dict(columns(table))
        names = [table, layout.local_bare(table)]
        for name in dict.fromkeys(names):
            have = existing.get(name)
            if have is None:
                created.append(name)
                continue
            for col, typ in wanted.items():
                if col not in have:
                    statements.append(
                        f"ALTER TABLE {ident(db)}.{ident(name)} ADD COLUMN {ident(col)} {typ}"
                    )
                    added.append(f"{name}.{col}")
                elif have[col] != typ:
                    raise StoreError(
                        f"ClickHouse table {db}.{name} column {col!r} is {have[col]}, "
                        f"expected {typ}: migrate cannot change a column's type"
                    )
        statements += create_table(layout, table, feats, days.get(table))
    backfill: list[int] = []
    if rollups:
        want_rollup = dict(rollup_columns())
        for step in ROLLUP_STEPS:
            name = layout.local_bare(rollup_table(step))
            if name not in existing:
                created.append(name)
                if layout.local_bare("flows") in existing:
                    backfill.append(step)
            elif existing[name] != want_rollup:
                raise StoreError(
                    f"ClickHouse rollup table {db}.{name} has columns {existing[name]}, "
                    f"expected {want_rollup}"
                )
    seq_now = time.time_ns()  # flows written from here on reach new rollups by their view
    statements += create_rollups(layout, feats, days.get("flows")) if rollups else []
    for sql in statements:
        conn.run(sql, what="migrate")
    for step in backfill:  # rollups added to a database that has flows: the flows before
        tcol = ident(SEQ)
        source = rollup_select(step, layout.local("flows"), f"{tcol} < {seq_now}")
        conn.run(
            f"INSERT INTO {layout.local(rollup_table(step))} {source}", what="migrate backfill"
        )
    if ttl and feats.ttl:  # existing tables too: TTLs follow store.retention_days
        for table in [*TABLES, *(rollup_table(s) for s in ROLLUP_STEPS if rollups)]:
            stmt = alter_ttl(layout, table, days.get(_retention_key(table)), feats)
            if stmt is not None:
                conn.run(stmt, what="migrate")
    if before < SCHEMA_VERSION or added:
        now_ms = int(time.time() * 1000)
        detail = "created" if before == 0 else f"from {before}"
        conn.run(
            f"INSERT INTO {ident(db)}.{ident(VERSION_TABLE)} (version, applied_ms, detail) "
            f"SELECT {SCHEMA_VERSION}, {now_ms}, {literal(detail)}",
            what="migrate",
        )
    result = {
        "version_before": before,
        "version": SCHEMA_VERSION,
        "created": created,
        "added_columns": added,
    }
    if created or added:
        log.info("clickhouse schema migrated", extra=fields({"server": conn.address, **result}))
    return result


def _columns(conn: Connection, db: str) -> dict[str, dict[str, str]]:
    cols, _ = conn.run(
        f"SELECT table, name, type FROM system.columns WHERE database = {literal(db)}",
        what="migrate",
    )
    out: dict[str, dict[str, str]] = {}
    if cols:
        for table, name, typ in zip(*cols, strict=True):
            out.setdefault(_text(table), {})[_text(name)] = _text(typ)
    return out


# -- retention --------------------------------------------------------------------------------


def retain_table(
    conn: Connection, layout: Layout, table: str, cutoff_ms: int, match: Sequence[str] = ()
) -> int:
    """Delete ``table``'s rows on this server with time before ``cutoff_ms`` (and matching
    every condition of ``match``); rows deleted."""
    local, bare = layout.local(table), layout.local_bare(table)
    tcol = ident(TIME_COLUMN[table])
    old = " AND ".join([f"{tcol} < {cutoff_ms}", f"{tcol} != {NULL_MS}", *match])
    what = f"retention on {table!r}"
    n = int(conn.scalar(f"SELECT count() FROM {local} WHERE {old}", what) or 0)
    if n == 0:
        return 0
    if table == "flows":
        cols, _ = conn.run(
            f"SELECT name FROM system.tables WHERE database = {literal(layout.database)}", what=what
        )
        have = {_text(n) for n in cols[0]} if cols else set()
        for step in ROLLUP_STEPS:
            if layout.local_bare(rollup_table(step)) not in have:
                continue
            if match:  # some rows of a bucket go: subtract exactly those
                _subtract(conn, layout, step, old)
            else:
                _retain_rollup(conn, layout, step, cutoff_ms)
    if not match:
        _drop_partitions(conn, layout.database, bare, cutoff_ms, what)
    if int(conn.scalar(f"SELECT count() FROM {local} WHERE {old}", what) or 0):
        conn.run(f"ALTER TABLE {local} DELETE WHERE {old}", what=what)
        _wait_mutations(conn, layout.database, bare, what)
    return n


def _subtract(conn: Connection, layout: Layout, step: int, cond: str) -> None:
    """Rows in the ``step`` rollup cancelling the flows that match ``cond``."""
    cols = ", ".join(ident(c) for c, _ in rollup_columns())
    neg = ", ".join(f"-{ident(v)}" for v in (*ROLLUP_VALUES, ROLLUP_ROWS))
    dims = ", ".join(ident(d) for d in ROLLUP_DIMS)
    conn.run(
        f"INSERT INTO {layout.local(rollup_table(step))} ({cols}) SELECT `bucket`, {dims}, {neg} "
        f"FROM ({rollup_select(step, layout.local('flows'), cond)})",
        what=f"retention on {rollup_table(step)!r}",
    )


def _retain_rollup(conn: Connection, layout: Layout, step: int, cutoff_ms: int) -> None:
    name = rollup_table(step)
    local, bare = layout.local(name), layout.local_bare(name)
    what = f"retention on {name!r}"
    s = step * 1000
    floor = cutoff_ms - ((cutoff_ms % s) + s) % s
    if floor < cutoff_ms:  # subtract the flows about to go from the straddling bucket
        tcol = ident(TIME_COLUMN["flows"])
        _subtract(conn, layout, step, f"{tcol} >= {floor} AND {tcol} < {cutoff_ms}")
    _drop_partitions(conn, layout.database, bare, floor, what)
    if int(conn.scalar(f"SELECT count() FROM {local} WHERE `bucket` < {floor}", what) or 0):
        conn.run(f"ALTER TABLE {local} DELETE WHERE `bucket` < {floor}", what=what)
        _wait_mutations(conn, layout.database, bare, what)


def _drop_partitions(conn: Connection, db: str, table: str, cutoff_ms: int, what: str) -> None:
    """Drop the day partitions that end at or before ``cutoff_ms`` (never 1970-01-01,
    which holds rows without time and before the epoch)."""
    cols, _ = conn.run(
        f"SELECT DISTINCT partition FROM system.parts WHERE database = {literal(db)} "
        f"AND table = {literal(table)} AND active",
        what=what,
    )
    for raw in cols[0] if cols else []:
        part = _text(raw).strip("'")
        if not part.isdigit() or part == "19700101":
            continue
        day = datetime.strptime(part, "%Y%m%d").replace(tzinfo=UTC)
        if (day + timedelta(days=1)).timestamp() * 1000 <= cutoff_ms:
            conn.run(f"ALTER TABLE {ident(db)}.{ident(table)} DROP PARTITION {part}", what=what)


def _wait_mutations(conn: Connection, db: str, table: str, what: str) -> None:
    deadline = time.monotonic() + MUTATION_TIMEOUT_S
    sql = (
        f"SELECT count() FROM system.mutations WHERE database = {literal(db)} "
        f"AND table = {literal(table)} AND is_done = 0"
    )
    delay = 0.01
    while int(conn.scalar(sql, what) or 0):
        if time.monotonic() > deadline:
            raise StoreError(f"{what}: the delete on {db}.{table} did not finish in time")
        time.sleep(delay)
        delay = min(delay * 2, 0.5)
