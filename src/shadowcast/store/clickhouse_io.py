"""Talking to one ClickHouse server: a connection with errors translated, and Arrow tables
to and from the column arrays clickhouse-driver sends over the native protocol.

``clickhouse_driver`` is imported lazily (optional extra ``clickhouse``).
Columns travel as numpy arrays (``use_numpy``, ``columnar=True``): numbers as they are,
strings as bytes, ``FixedString(16)`` addresses as ``S16`` buffers (zero bytes kept),
timestamps as Int64 milliseconds with :data:`~shadowcast.store.clickhouse_sql.NULL_MS`
for null. Other columns are not ``Nullable`` (a null map costs a Python object per value
in the driver): a null number is stored as 0 (NaN for floats), a null string as ``''``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute

from shadowcast.errors import StoreError
from shadowcast.extras import install_hint
from shadowcast.store.clickhouse_sql import NULL_MS

log = logging.getLogger(__name__)

pc: Any = pyarrow.compute

USER_ENV = "SHADOWCAST_CLICKHOUSE_USER"
PASSWORD_ENV = "SHADOWCAST_CLICKHOUSE_PASSWORD"


def parse_host(spec: str) -> tuple[str, int]:
    """``host:port`` (port 9000 when absent; ``[v6]:port`` for IPv6)."""
    text = spec.strip()
    host, port = text, 9000
    if text.startswith("["):
        end = text.find("]")
        host, rest = text[1:end], text[end + 1 :]
        if rest.startswith(":"):
            port = _port(spec, rest[1:])
    elif text.count(":") == 1:
        host, _, p = text.partition(":")
        port = _port(spec, p)
    if not host or " " in host:
        raise StoreError(f"bad ClickHouse host {spec!r} (expected host:port)")
    return host, port


def _port(spec: str, text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise StoreError(f"bad port in ClickHouse host {spec!r}")
    return int(text)


def _first_line(exc: BaseException) -> str:
    text = str(exc).replace("DB::Exception: ", "")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    msg = " ".join(lines[:2]) if lines and lines[0].startswith("Code:") else (lines or [""])[0]
    msg = msg.split(" Stack trace:")[0]
    return (msg or type(exc).__name__)[:400]


class Connection:
    """One clickhouse-driver client to ``host:port``; every failure is a StoreError."""

    def __init__(
        self,
        host: str,
        port: int,
        database: str = "default",
        *,
        connect_timeout_s: float = 10.0,
        timeout_s: float = 300.0,
    ) -> None:
        try:
            from clickhouse_driver import Client
        except ImportError as exc:
            hint = install_hint("clickhouse_driver")
            raise StoreError(f"the clickhouse backend needs clickhouse-driver: {hint}") from exc
        self.address = f"{host}:{port}"
        self._client = Client(
            host=host,
            port=port,
            database=database,
            user=os.environ.get(USER_ENV, "default"),
            password=os.environ.get(PASSWORD_ENV, ""),
            connect_timeout=connect_timeout_s,
            send_receive_timeout=timeout_s,
            settings={"use_numpy": True, "strings_as_bytes": True},
        )

    def run(
        self,
        sql: str,
        data: Sequence[np.ndarray] | None = None,
        settings: dict[str, Any] | None = None,
        what: str = "query",
        query_id: str | None = None,
    ) -> tuple[list[np.ndarray], list[tuple[str, str]]]:
        """Execute ``sql`` (an INSERT with column arrays when ``data`` is given); returns
        the result's columns and their (name, type)."""
        from clickhouse_driver import errors

        try:
            if data is not None:
                self._client.execute(
                    sql, list(data), columnar=True, settings=settings, query_id=query_id
                )
                return [], []
            res = self._client.execute(
                sql, columnar=True, with_column_types=True, settings=settings, query_id=query_id
            )
        except (errors.Error, OSError, EOFError) as exc:
            log.debug("clickhouse failed", extra={"sql": sql[:500], "server": self.address})
            raise StoreError(
                f"{what} failed on ClickHouse {self.address}: {_first_line(exc)}"
            ) from exc
        cols, types = res
        return list(cols), list(types)

    def scalar(self, sql: str, what: str = "query") -> Any:
        cols, _ = self.run(sql, what=what)
        if not cols or len(cols[0]) == 0:
            return None
        value = cols[0][0]
        return value.item() if hasattr(value, "item") else value

    def server_version(self) -> tuple[int, int]:
        self.run("SELECT 1", what="connect")
        info = self._client.connection.server_info
        return int(info.version_major), int(info.version_minor)

    def close(self) -> None:
        try:
            self._client.disconnect()
        except Exception:  # noqa: BLE001 - closing is best effort
            log.debug("clickhouse disconnect", exc_info=True)


# -- Arrow -> columns -----------------------------------------------------------------------


def to_columns(data: pa.Table, seq: int | np.ndarray) -> list[np.ndarray]:
    """The arrays to insert for ``data`` (already conformed), then ``_seq``: ``seq``,
    ``seq + 1``, ... or the given array (one per row)."""
    out: list[np.ndarray] = []
    for field, col in zip(data.schema, data.columns, strict=True):
        out.append(_to_numpy(field.type, col.combine_chunks()))
    if isinstance(seq, np.ndarray):
        out.append(np.asarray(seq, dtype=np.int64))
    else:
        out.append(np.arange(seq, seq + data.num_rows, dtype=np.int64))
    return out


def refused(err: BaseException) -> bool:
    """Whether a failed request was refused by the server (it answered with an error, so
    an INSERT stored nothing), as opposed to cut short on the way (a timeout, a lost
    connection), after which the server may or may not have stored the rows."""
    from clickhouse_driver import errors

    return isinstance(err.__cause__, errors.ServerException)


def _to_numpy(typ: pa.DataType, arr: pa.Array) -> np.ndarray:
    if pa.types.is_timestamp(typ):
        ms = pc.fill_null(arr.cast(pa.int64()), NULL_MS)
        return np.asarray(ms.to_numpy(zero_copy_only=False), dtype=np.int64)
    if pa.types.is_string(typ) or pa.types.is_large_string(typ) or pa.types.is_binary(typ):
        raw = pc.fill_null(arr.cast(pa.binary()), b"")
        return np.asarray(raw.to_numpy(zero_copy_only=False), dtype=object)
    if pa.types.is_fixed_size_binary(typ):
        width = typ.byte_width
        if arr.null_count:
            arr = pc.fill_null(arr, pa.scalar(bytes(width), typ))
        buf = arr.buffers()[1]
        assert buf is not None
        flat = np.frombuffer(buf, dtype=f"S{width}", count=arr.offset + len(arr))
        return flat[arr.offset :]
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):  # the driver's generic Array
        out = np.empty(len(arr), dtype=object)
        for i, v in enumerate(arr.to_pylist()):  # one list per row (an object array of them)
            out[i] = v if v is not None else []
        return out
    if pa.types.is_floating(typ):
        return np.asarray(pc.fill_null(arr, np.nan).to_numpy(zero_copy_only=False))
    if pa.types.is_boolean(typ):
        return np.asarray(pc.fill_null(arr, False).cast(pa.uint8()).to_numpy(), dtype=np.uint8)
    return np.asarray(pc.fill_null(arr, 0).to_numpy(zero_copy_only=False))


# -- columns -> Arrow -----------------------------------------------------------------------


def to_arrow(col: np.ndarray | None, typ: pa.DataType, n: int) -> pa.Array:
    """A column the driver returned (None: empty result) as an Arrow array of ``typ``."""
    if col is None or n == 0:
        return pa.array([], typ)
    if pa.types.is_timestamp(typ):
        ms = np.asarray(col, dtype=np.int64)
        nulls = ms == NULL_MS
        return pa.array(ms, pa.int64(), mask=nulls if nulls.any() else None).cast(typ)
    if pa.types.is_fixed_size_binary(typ):
        width = typ.byte_width
        raw = np.ascontiguousarray(np.asarray(col, dtype=f"S{width}"))
        return pa.FixedSizeBinaryArray.from_buffers(typ, n, [None, pa.py_buffer(raw.tobytes())])
    if pa.types.is_string(typ) or pa.types.is_large_string(typ):
        try:
            return pa.array(col, pa.binary()).cast(typ)
        except pa.ArrowInvalid as exc:
            raise StoreError(f"ClickHouse returned a string that is not UTF-8: {exc}") from exc
    if pa.types.is_binary(typ):
        return pa.array(col, pa.binary())
    if pa.types.is_boolean(typ):
        return pa.array(np.asarray(col) != 0, pa.bool_())
    if pa.types.is_list(typ) or pa.types.is_large_list(typ):
        return pa.array([list(v) for v in col], typ)
    return pa.array(np.asarray(col)).cast(typ)


def result_table(cols: list[np.ndarray], schema: pa.Schema) -> pa.Table:
    """Columns of a query result in ``schema``'s order, as a table of that schema."""
    n = len(cols[0]) if cols else 0
    arrays = [to_arrow(cols[i] if cols else None, f.type, n) for i, f in enumerate(schema)]
    return pa.Table.from_arrays(arrays, schema=schema)
