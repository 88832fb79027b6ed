"""Copy a store into another (``shadowcast store copy``), checked by row counts and sums.

Rows move table by table in time windows through the Store protocol (any backend to any
other): window after window (so in time order), rows without time last. Each table is
then checked: the rows and per-column totals the destination gained must equal those
read from the source. Totals are computed the same way on both sides, on what the
ClickHouse backend keeps: integers and timestamps summed modulo 2**64 (null timestamps
left out, other nulls as 0), floats over their finite values, strings by byte length,
fixed-width binaries as two 64-bit halves, lists by length.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute

from shadowcast.errors import StoreError
from shadowcast.store import conform as cf
from shadowcast.store.base import Store
from shadowcast.store.clickhouse_sql import NULL_MS, ident
from shadowcast.store.schema import TABLES

log = logging.getLogger(__name__)

pc: Any = pyarrow.compute
MOD = 2**64
Totals = dict[str, float | int]


def _keys(table: str) -> list[tuple[str, str, pa.DataType]]:
    """(key, column, type) of every total of ``table`` after ``rows``."""
    out = []
    for f in TABLES[table]:
        if pa.types.is_fixed_size_binary(f.type):
            out += [(f"lo:{f.name}", f.name, f.type), (f"hi:{f.name}", f.name, f.type)]
        else:
            out.append((f"sum:{f.name}", f.name, f.type))
    return out


def totals_sql(source: str, table: str) -> tuple[str, list[str]]:
    """A ClickHouse query of ``table``'s totals from ``source``, and their keys."""
    exprs, keys = ["count()"], ["rows"]
    for key, name, typ in _keys(table):
        c = ident(name)
        if pa.types.is_timestamp(typ):
            e = f"sum(toUInt64(if({c} = {NULL_MS}, 0, {c})))"
        elif pa.types.is_floating(typ):
            e = f"sum(if(isFinite({c}), toFloat64({c}), 0))"
        elif pa.types.is_fixed_size_binary(typ):
            start = 1 if key.startswith("lo:") else 9
            e = f"sum(reinterpretAsUInt64(substring({c}, {start}, 8)))"
        elif pa.types.is_string(typ) or pa.types.is_binary(typ) or pa.types.is_list(typ):
            e = f"sum(length({c}))"
        else:
            e = f"sum(toUInt64({c}))"
        exprs.append(e)
        keys.append(key)
    return f"SELECT {', '.join(exprs)} FROM {source}", keys


def arrow_totals(table: str, data: pa.Table) -> Totals:
    """The totals of ``data`` (rows of ``table``), as :func:`totals_sql` computes them."""
    out: Totals = {"rows": int(data.num_rows)}
    for key, name, typ in _keys(table):
        col = data.column(name).combine_chunks()
        if pa.types.is_timestamp(typ):
            ms = pc.fill_null(col.cast(pa.int64()), 0).to_numpy()
            out[key] = int(ms.astype(np.uint64).sum(dtype=np.uint64))
        elif pa.types.is_floating(typ):
            v = np.asarray(pc.fill_null(col, np.nan).to_numpy(zero_copy_only=False), np.float64)
            out[key] = float(v[np.isfinite(v)].sum())
        elif pa.types.is_fixed_size_binary(typ):
            col = (
                pc.fill_null(col, pa.scalar(bytes(typ.byte_width), typ)) if col.null_count else col
            )
            buf = np.frombuffer(col.buffers()[1], np.uint8)
            w = typ.byte_width
            raw = buf[col.offset * w : (col.offset + len(col)) * w].reshape(-1, w)
            half = raw[:, :8] if key.startswith("lo:") else raw[:, 8:16]
            words = np.ascontiguousarray(half).view("<u8").ravel()
            out[key] = int(words.sum(dtype=np.uint64))
        elif pa.types.is_string(typ) or pa.types.is_binary(typ):
            out[key] = int(pc.sum(pc.binary_length(col)).as_py() or 0)
        elif pa.types.is_list(typ):
            out[key] = int(pc.sum(pc.list_value_length(col)).as_py() or 0)
        else:
            v = pc.fill_null(col, 0).to_numpy(zero_copy_only=False)
            out[key] = int(v.astype(np.uint64).sum(dtype=np.uint64))
    return out


def store_totals(store: Store, table: str) -> Totals:
    totals = getattr(store, "totals", None)
    if callable(totals):
        result: Totals = totals(table)
        return result
    return arrow_totals(table, store.read(table))


def _add(a: Totals, b: Totals, sign: int = 1) -> Totals:
    out: Totals = {}
    for k, v in a.items():
        w = v + sign * b.get(k, 0)
        out[k] = w % MOD if isinstance(w, int) and k != "rows" else w
    return out


def differences(want: Totals, got: Totals) -> list[str]:
    """The totals that differ (ints exactly, modulo 2**64; floats to 1e-9)."""
    bad = []
    for k, v in want.items():
        g = got.get(k, 0)
        if isinstance(v, float) or isinstance(g, float):
            ok = math.isclose(float(v), float(g), rel_tol=1e-9, abs_tol=1e-6)
        else:
            ok = (int(v) - int(g)) % MOD == 0 if k != "rows" else int(v) == int(g)
        if not ok:
            bad.append(f"{k}: source {v}, destination gained {g}")
    return bad


@dataclass(slots=True)
class TableCopy:
    table: str
    rows: int = 0
    source: Totals = field(default_factory=dict)
    ok: bool = False


def _windows(src: Store, table: str, window: timedelta) -> list[tuple[datetime, datetime]]:
    time_range = getattr(src, "time_range", None)
    lo, hi = time_range(table) if callable(time_range) else (None, None)
    if lo is None or hi is None:
        return []
    out, t = [], lo
    while t <= hi:
        out.append((t, t + window))
        t += window
    return out


def copy_store(
    src: Store,
    dst: Store,
    tables: Sequence[str] | None = None,
    *,
    window: timedelta = timedelta(hours=6),
    progress: Callable[[str, int], None] | None = None,
) -> list[TableCopy]:
    """Copy ``tables`` (default: all) from ``src`` to ``dst`` and check each one.

    Raises StoreError naming the table and totals that differ."""
    names = cf.retain_tables(tables)
    if window <= timedelta(0):
        raise StoreError("copy window must be positive")
    report = []
    for table in names:
        before = store_totals(dst, table)
        done = TableCopy(table, source={k: 0 for k in before})
        total = src.count(table)
        for start, end in _windows(src, table, window):
            _move(src, dst, table, src.read(table, start=start, end=end), done, progress)
        if done.rows < total:  # rows without time
            everything = src.read(table)
            untimed = everything.filter(pc.is_null(everything.column(cf.time_column(table))))
            _move(src, dst, table, untimed, done, progress)
        if done.rows != total:
            raise StoreError(f"copy of {table!r}: read {done.rows} rows, source has {total}")
        gained = _add(store_totals(dst, table), before, -1)
        bad = differences(done.source, gained)
        if bad:
            raise StoreError(f"copy of {table!r} does not check: " + "; ".join(bad))
        done.ok = True
        report.append(done)
        log.info("store table copied", extra={"table": table, "rows": done.rows})
    return report


def _move(
    src: Store,
    dst: Store,
    table: str,
    data: pa.Table,
    done: TableCopy,
    progress: Callable[[str, int], None] | None,
) -> None:
    if data.num_rows == 0:
        return
    dst.write(table, data)
    done.rows += int(data.num_rows)
    done.source = _add(done.source, arrow_totals(table, data))
    if progress is not None:
        progress(table, int(data.num_rows))
