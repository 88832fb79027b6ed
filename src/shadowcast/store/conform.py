"""Checks shared by every backend: batches cast to a table's schema, queries validated.

Backends call these before touching storage, so a bad batch or query is rejected with a
:class:`StoreError` naming the table and column, and nothing is written.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute

from shadowcast.errors import StoreError
from shadowcast.store.base import AggQuery, TimeRange
from shadowcast.store.schema import TABLES, TIME_COLUMN, TS

log = logging.getLogger(__name__)

# Compute kernels are generated at import time, so they carry no static types.
pc: Any = pyarrow.compute

AGGS: frozenset[str] = frozenset({"sum", "avg", "max", "min", "count"})


def table_schema(table: str) -> pa.Schema:
    """The schema of ``table``, or a StoreError naming the known tables."""
    try:
        return TABLES[table]
    except KeyError:
        known = ", ".join(sorted(TABLES))
        raise StoreError(f"unknown table {table!r} (known: {known})") from None


def time_column(table: str) -> str:
    table_schema(table)
    return TIME_COLUMN[table]


def column_type(table: str, column: str) -> pa.DataType:
    schema = table_schema(table)
    idx = schema.get_field_index(column)
    if idx < 0:
        raise StoreError(f"table {table!r} has no column {column!r}")
    return schema.field(idx).type


def conform(table: str, batch: pa.Table | pa.RecordBatch) -> pa.Table:
    """``batch`` with exactly the columns of ``table``, in order, cast to their types.

    Missing or unknown columns and values that do not cast safely (overflow, fractional
    values into integers, unparsable strings) raise StoreError naming the column.
    Timestamps may be given in any unit or as naive UTC; sub-millisecond parts are dropped.
    Rows with a timestamp outside years 1-9999 (no reader could turn it into a datetime)
    are dropped with a warning, so one such row never fails the rest of the batch.
    """
    schema = table_schema(table)
    if isinstance(batch, pa.RecordBatch):
        batch = pa.Table.from_batches([batch])
    if not isinstance(batch, pa.Table):
        raise StoreError(
            f"write to {table!r}: expected a pyarrow Table, got {type(batch).__name__}"
        )
    names = batch.column_names
    if len(set(names)) != len(names):
        raise StoreError(f"write to {table!r}: duplicate column names in batch")
    unknown = [n for n in names if schema.get_field_index(n) < 0]
    if unknown:
        raise StoreError(f"write to {table!r}: unknown column(s) {unknown}")
    missing = [n for n in schema.names if n not in names]
    if missing:
        raise StoreError(f"write to {table!r}: missing column(s) {missing}")
    batch = drop_unrepresentable(table, batch)
    arrays = []
    for field in schema:
        col = batch.column(field.name)
        if col.type != field.type:
            col = _cast(table, field, col)
        arrays.append(col)
    return pa.Table.from_arrays(arrays, schema=schema)


# Python's datetime range, in each timestamp unit (numpy and Arrow hold far more).
_MIN_S, _MAX_S = -62_135_596_800, 253_402_300_799  # 0001-01-01, 9999-12-31T23:59:59
_PER_S = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def drop_unrepresentable(table: str, batch: pa.Table) -> pa.Table:
    """``batch`` without the rows whose timestamps lie outside years 1-9999 (nulls kept)."""
    keep: Any = None
    for name in batch.column_names:
        col = batch.column(name)
        if not pa.types.is_timestamp(col.type) or col.null_count == len(col):
            continue
        per = _PER_S[col.type.unit]
        lo, hi = max(_MIN_S * per, -(1 << 63)), min(_MAX_S * per + per - 1, (1 << 63) - 1)
        mm = pc.min_max(col.cast(pa.int64())).as_py()
        if mm["min"] >= lo and mm["max"] <= hi:
            continue
        ints = col.cast(pa.int64())
        ok = pc.or_kleene(
            pc.and_(pc.greater_equal(ints, lo), pc.less_equal(ints, hi)), pc.is_null(ints)
        )
        keep = ok if keep is None else pc.and_(keep, ok)
    if keep is None:
        return batch
    out = batch.filter(keep)
    dropped = batch.num_rows - out.num_rows
    log.warning(
        "write to %r: %d row(s) with a timestamp outside years 1-9999 dropped",
        table,
        dropped,
        extra={"table": table, "rows": dropped},
    )
    return out


def _cast(table: str, field: pa.Field, col: pa.ChunkedArray) -> pa.ChunkedArray:
    opts = pc.CastOptions(target_type=field.type)
    if pa.types.is_timestamp(field.type) and pa.types.is_timestamp(col.type):
        opts = pc.CastOptions(target_type=field.type, allow_time_truncate=True)
    try:
        out = pc.cast(col, options=opts)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise StoreError(
            f"write to {table!r}: column {field.name!r} of type {col.type} "
            f"does not cast to {field.type}: {exc}"
        ) from exc
    assert isinstance(out, pa.ChunkedArray)
    return out


def utc(ts: datetime) -> datetime:
    """``ts`` as an aware UTC datetime; naive datetimes are taken to be UTC."""
    if ts.tzinfo is None:
        return ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC)


def time_ranges(
    table: str,
    start: datetime | None,
    end: datetime | None,
    ranges: Mapping[str, TimeRange] | None = None,
) -> list[tuple[str, datetime | None, datetime | None]]:
    """The half-open ranges a read keeps, as ``(column, from, to)`` in UTC: ``[start, end)``
    on the table's time column, then each of ``ranges`` (another timestamp column of the
    table, e.g. the flows' ``time_end``); open ends are None, unbounded ranges left out."""
    out = []
    for col, (lo, hi) in [(time_column(table), (start, end)), *(ranges or {}).items()]:
        if not pa.types.is_timestamp(column_type(table, col)):
            raise StoreError(f"range on {table!r}.{col!r}: not a timestamp column")
        if lo is not None or hi is not None:
            out.append((col, None if lo is None else utc(lo), None if hi is None else utc(hi)))
    return out


def check_where(table: str, where: Mapping[str, object] | None) -> dict[str, pa.Scalar]:
    """Equality filters as scalars of each column's type."""
    out: dict[str, pa.Scalar] = {}
    for col, value in (where or {}).items():
        typ = column_type(table, col)
        try:
            out[col] = pa.scalar(value).cast(typ)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
            raise StoreError(
                f"filter on {table!r}.{col!r}: value {value!r} is not a {typ}: {exc}"
            ) from exc
    return out


def is_numeric(typ: pa.DataType) -> bool:
    return bool(pa.types.is_integer(typ) or pa.types.is_floating(typ))


def value_type(agg: str, typ: pa.DataType) -> pa.DataType:
    """Result type of ``agg`` over a column of ``typ``.

    sum: int64 for integer columns, float64 for floats; avg: float64; min/max: the
    column's own type; count: int64.
    """
    if agg == "count":
        return pa.int64()
    if agg == "avg":
        return pa.float64()
    if agg == "sum":
        return pa.int64() if pa.types.is_integer(typ) else pa.float64()
    return typ


def check_query(query: AggQuery) -> pa.Schema:
    """Validate ``query``; returns the schema of its result."""
    table = query.table
    table_schema(table)
    if query.agg not in AGGS:
        raise StoreError(
            f"aggregate on {table!r}: unknown agg {query.agg!r} (one of {sorted(AGGS)})"
        )
    if isinstance(query.step_s, bool) or not isinstance(query.step_s, int) or query.step_s < 1:
        raise StoreError(
            f"aggregate on {table!r}: step_s must be a positive integer, got {query.step_s!r}"
        )
    by, values = list(query.by), list(query.values)
    if isinstance(query.by, str) or isinstance(query.values, str):
        raise StoreError(f"aggregate on {table!r}: by/values must be sequences of column names")
    if not values and query.agg != "count":
        raise StoreError(f"aggregate on {table!r}: no value columns to {query.agg}")
    names = ["bucket", *by, *(values or ["count"])]
    if len(set(names)) != len(names):
        raise StoreError(f"aggregate on {table!r}: repeated or reserved column names in {names}")
    fields = [pa.field("bucket", TS)]
    for col in by:
        fields.append(pa.field(col, column_type(table, col)))
    for col in values:
        typ = column_type(table, col)
        if query.agg != "count" and not is_numeric(typ):
            raise StoreError(
                f"aggregate on {table!r}: cannot {query.agg} column {col!r} of type {typ}"
            )
        fields.append(pa.field(col, value_type(query.agg, typ)))
    if not values:
        fields.append(pa.field("count", pa.int64()))
    check_where(table, query.where)
    if query.start is not None and query.end is not None and utc(query.end) < utc(query.start):
        raise StoreError(f"aggregate on {table!r}: end {query.end} before start {query.start}")
    return pa.schema(fields)


def retain_tables(tables: Sequence[str] | None) -> list[str]:
    """The tables a retention call applies to (all when ``tables`` is None)."""
    if tables is None:
        return list(TABLES)
    out = [tables] if isinstance(tables, str) else list(tables)
    for t in out:
        table_schema(t)
    return out
