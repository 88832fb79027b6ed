"""The ClickHouse schema of the store: column types, table DDL, rollups, migrations.

Pure functions of the table schemas (no connection), so the SQL each server version gets
is tested without a server. Everything here is accepted by Debian's clickhouse-server
18.16 and by current ClickHouse; what differs by version is decided by :class:`Features`.

Layout, per table of :data:`~shadowcast.store.schema.TABLES`:

* single server: ``<table>`` is a ``MergeTree`` partitioned by day of its time column;
* cluster: ``<table>_local`` is that ``MergeTree`` on every shard and ``<table>`` a
  ``Distributed`` table over them, sharded by :data:`SHARD_KEYS` (exporter for flows,
  subject or OD pair for series).

Timestamps are ``Int64`` milliseconds since the Unix epoch (18.16 has no ``DateTime64``);
a null timestamp is stored as :data:`NULL_MS`. ``_seq`` (not part of the Arrow schema)
records insertion order. ``flows`` has rollups at 1 min, 5 min and 1 h
(``flows_1m``, ``flows_5m``, ``flows_1h``): ``SummingMergeTree`` tables fed by
materialised views, read by ``aggregate()`` when a query's step, bounds and columns allow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pyarrow as pa

from shadowcast.errors import StoreError
from shadowcast.store.schema import TABLES, TIME_COLUMN

SCHEMA_VERSION = 1  # bump with a step in MIGRATIONS when the layout (not a column) changes
NULL_MS = -(2**63)  # a null timestamp (Int64 min; ~292 million years BC)
SEQ = "_seq"  # insertion order: the writer's clock in ns plus the row's offset
VERSION_TABLE = "_shadowcast_schema"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

# Distributed sharding keys: rows of one exporter, OD pair or subject stay on one shard.
SHARD_KEYS: dict[str, tuple[str, ...]] = {
    "flows": ("exporter",),
    "flow_features": ("exporter",),
    "interface_counters": ("exporter",),
    "od_series": ("src", "dst"),
    "link_series": ("link",),
    "shadow": ("tunnel",),
    "forecasts": ("subject",),
    "actions": ("plan_id",),
    "alerts": ("subject",),
    "behaviour": ("src", "dst"),
    "decisions": ("plan_id",),
    "accuracy": ("model",),
    "accuracy_groups": ("subject",),
    "drift_events": ("subject",),
    "model_events": ("model",),
    "action_outcomes": ("plan_id",),
    "alert_tuning": ("link_class",),
}  # a table not listed is spread at random

# flows rollups: step in seconds -> table suffix; dimensions kept and values summed.
ROLLUP_STEPS: dict[int, str] = {60: "1m", 300: "5m", 3600: "1h"}
ROLLUP_DIMS: tuple[str, ...] = ("exporter", "src_site", "dst_site", "app", "category", "proto")
ROLLUP_VALUES: tuple[str, ...] = ("bytes", "packets")
ROLLUP_ROWS = "rows"  # the number of flows summed into a rollup row

_TYPES = {
    pa.int8(): "Int8",
    pa.int16(): "Int16",
    pa.int32(): "Int32",
    pa.int64(): "Int64",
    pa.uint8(): "UInt8",
    pa.uint16(): "UInt16",
    pa.uint32(): "UInt32",
    pa.uint64(): "UInt64",
    pa.float32(): "Float32",
    pa.float64(): "Float64",
    pa.bool_(): "UInt8",
}


@dataclass(frozen=True, slots=True)
class Features:
    """What the connected server accepts beyond 18.16's SQL."""

    version: tuple[int, int]
    ttl: bool = False  # table TTL (19.6+)
    dedup_token: bool = False  # insert_deduplication_token + non-replicated dedup window

    @classmethod
    def detect(cls, version: tuple[int, int], settings: set[str], tree: set[str]) -> Features:
        """From the server version and the names in system.settings / merge_tree_settings."""
        return cls(
            version=version,
            ttl=version >= (19, 6),
            dedup_token="insert_deduplication_token" in settings
            and "non_replicated_deduplication_window" in tree,
        )


def ident(name: str) -> str:
    """A quoted identifier; names are checked so that quoting is only cosmetic."""
    if not _IDENT.match(name):
        raise StoreError(f"invalid ClickHouse identifier {name!r}")
    return f"`{name}`"


def column_type(typ: pa.DataType) -> str:
    """The ClickHouse column type holding an Arrow type of the store's schemas."""
    if pa.types.is_timestamp(typ):
        return "Int64"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "String"
    if pa.types.is_fixed_size_binary(typ):
        return f"FixedString({typ.byte_width})"
    if pa.types.is_binary(typ):
        return "String"
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return f"Array({column_type(typ.value_type)})"  # a null list is stored as []
    try:
        return _TYPES[typ]
    except KeyError:
        raise StoreError(f"no ClickHouse type for Arrow type {typ}") from None


def columns(table: str) -> list[tuple[str, str]]:
    """(name, ClickHouse type) of ``table``'s stored columns, ``_seq`` last."""
    return [(f.name, column_type(f.type)) for f in TABLES[table]] + [(SEQ, "Int64")]


def ms_to_datetime(expr: str) -> str:
    """A DateTime from an ms column; nulls and times before 1970 map to 1970-01-01."""
    return f"toDateTime(intDiv(greatest({expr}, 0), 1000))"


def floor_ms(expr: str, step_s: int) -> str:
    """``expr`` (Int64 ms) floored to a multiple of ``step_s`` seconds, also before 1970.

    The step is cast to Int64: ClickHouse gives ``Int64 % UInt16`` a 16-bit result, and
    adding the step back would overflow it."""
    step = f"toInt64({int(step_s) * 1000})"
    return f"({expr} - ((({expr} % {step}) + {step}) % {step}))"


def literal(value: object) -> str:
    """A SQL literal of a filter value (already cast to the column's type)."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if value == value else "nan"
    if isinstance(value, bytes):
        return f"unhex('{value.hex()}')"
    if isinstance(value, str):
        escaped = value.replace("\\", "\\\\").replace("'", "\\'")
        return f"'{escaped}'"
    raise StoreError(f"no ClickHouse literal for {value!r}")


@dataclass(frozen=True, slots=True)
class Layout:
    """Table names of one database, single server or cluster."""

    database: str
    cluster: str | None = None

    def __post_init__(self) -> None:
        ident(self.database)
        if self.cluster is not None:
            ident(self.cluster)

    def name(self, table: str) -> str:
        """What queries read (the Distributed table on a cluster)."""
        return f"{ident(self.database)}.{ident(table)}"

    def local(self, table: str) -> str:
        """Where rows are kept on each server."""
        return self.name(table + "_local" if self.cluster else table)

    def local_bare(self, table: str) -> str:
        return table + "_local" if self.cluster else table


def rollup_table(step_s: int) -> str:
    return f"flows_{ROLLUP_STEPS[step_s]}"


def ttl_clause(tcol: str, days: float | None, features: Features) -> str:
    """``TTL ...`` deleting rows ``days`` after their time (servers with TTL; nulls kept)."""
    if days is None or not features.ttl:
        return ""
    keep = f"if({tcol} = {NULL_MS}, 4102444800000, {tcol})"  # null: 2100-01-01, never due
    seconds = max(1, round(days * 86_400))
    return f" TTL {ms_to_datetime(keep)} + toIntervalSecond({seconds})"


def _merge_tree(engine: str, partition: str, order: str, ttl: str, features: Features) -> str:
    settings = " SETTINGS index_granularity = 8192"
    if features.dedup_token:
        settings += ", non_replicated_deduplication_window = 1000"
    return f"ENGINE = {engine} PARTITION BY {partition} ORDER BY {order}{ttl}{settings}"


def create_table(
    layout: Layout, table: str, features: Features, retention_days: float | None = None
) -> list[str]:
    """Statements creating ``table`` (and, on a cluster, its Distributed table)."""
    tcol = ident(TIME_COLUMN[table])
    cols = ", ".join(f"{ident(n)} {t}" for n, t in columns(table))
    partition = f"toYYYYMMDD({ms_to_datetime(tcol)})"
    engine = _merge_tree(
        "MergeTree", partition, f"({tcol}, {ident(SEQ)})",
        ttl_clause(tcol, retention_days, features), features,
    )  # fmt: skip
    out = [f"CREATE TABLE IF NOT EXISTS {layout.local(table)} ({cols}) {engine}"]
    if layout.cluster:
        out.append(_distributed(layout, table, cols, SHARD_KEYS.get(table, ())))
    return out


def _distributed(layout: Layout, table: str, cols: str, keys: tuple[str, ...]) -> str:
    key = f"cityHash64({', '.join(ident(k) for k in keys)})" if keys else "rand()"
    assert layout.cluster is not None
    return (
        f"CREATE TABLE IF NOT EXISTS {layout.name(table)} ({cols}) ENGINE = Distributed("
        f"{ident(layout.cluster)}, {ident(layout.database)}, "
        f"{ident(layout.local_bare(table))}, {key})"
    )


def rollup_columns() -> list[tuple[str, str]]:
    dims = [(d, column_type(TABLES["flows"].field(d).type)) for d in ROLLUP_DIMS]
    sums = [(v, "Int64") for v in (*ROLLUP_VALUES, ROLLUP_ROWS)]  # signed: retention subtracts
    return [("bucket", "Int64"), *dims, *sums]


def rollup_select(step_s: int, source: str, cond: str = "") -> str:
    """``SELECT`` summing ``source`` flows into ``step_s`` buckets (rollup column order)."""
    tcol = ident(TIME_COLUMN["flows"])
    bucket = floor_ms(tcol, step_s)
    dims = ", ".join(ident(d) for d in ROLLUP_DIMS)
    sums = ", ".join(f"toInt64(sum({ident(v)})) AS {ident(v)}" for v in ROLLUP_VALUES)
    where = f"{tcol} != {NULL_MS}" + (f" AND {cond}" if cond else "")
    return (
        f"SELECT {bucket} AS `bucket`, {dims}, {sums}, toInt64(count()) AS {ident(ROLLUP_ROWS)} "
        f"FROM {source} WHERE {where} GROUP BY `bucket`, {dims}"
    )


def create_rollups(
    layout: Layout, features: Features, retention_days: float | None = None
) -> list[str]:
    """Rollup tables and the materialised views that fill them from ``flows``."""
    cols = ", ".join(f"{ident(n)} {t}" for n, t in rollup_columns())
    dims = ", ".join(ident(d) for d in ROLLUP_DIMS)
    out: list[str] = []
    for step_s in ROLLUP_STEPS:
        name = rollup_table(step_s)
        engine = _merge_tree(
            "SummingMergeTree", f"toYYYYMMDD({ms_to_datetime('`bucket`')})",
            f"(`bucket`, {dims})", ttl_clause("`bucket`", retention_days, features), features,
        )  # fmt: skip
        out.append(f"CREATE TABLE IF NOT EXISTS {layout.local(name)} ({cols}) {engine}")
        out.append(
            f"CREATE MATERIALIZED VIEW IF NOT EXISTS {layout.local(name + '_mv')} "
            f"TO {layout.local(name)} AS {rollup_select(step_s, layout.local('flows'))}"
        )
        if layout.cluster:
            out.append(_distributed(layout, name, cols, ("exporter",)))
    return out


def create_version_table(layout: Layout) -> str:
    return (
        f"CREATE TABLE IF NOT EXISTS {ident(layout.database)}.{ident(VERSION_TABLE)} "
        "(version UInt32, applied_ms Int64, detail String) "
        "ENGINE = MergeTree ORDER BY (version, applied_ms)"
    )


def alter_ttl(layout: Layout, table: str, days: float | None, features: Features) -> str | None:
    """``ALTER ... MODIFY TTL`` bringing ``table`` to ``days`` (None where TTL is absent)."""
    if days is None or not features.ttl:
        return None
    tcol = "`bucket`" if table.startswith("flows_") else ident(TIME_COLUMN[table])
    clause = ttl_clause(tcol, days, features).replace(" TTL ", " MODIFY TTL ", 1)
    return f"ALTER TABLE {layout.local(table)}{clause}"
