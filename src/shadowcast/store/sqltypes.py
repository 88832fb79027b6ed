"""DuckDB column types for the store's Arrow types, and quoted identifiers."""

from __future__ import annotations

import pyarrow as pa

from shadowcast.errors import StoreError

__all__ = ["q", "sql_type"]


def sql_type(typ: pa.DataType) -> str:
    """The DuckDB column type that holds an Arrow type of the store's schemas."""
    if pa.types.is_timestamp(typ):
        return "TIMESTAMPTZ"
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        return "VARCHAR"
    if pa.types.is_binary(typ) or pa.types.is_fixed_size_binary(typ):
        return "BLOB"
    if pa.types.is_list(typ):
        return f"{sql_type(typ.value_type)}[]"
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
