"""SQL of the ClickHouse backend's reads: filters, time buckets, and aggregations over the
raw tables or, when a query allows, the flows rollups.

A rollup answers a query exactly when it is on ``flows``, sums, counts or averages
``bytes``/``packets``, groups and filters only on rollup dimensions, and its step and
time bounds are multiples of the rollup's step; the coarsest such rollup is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from shadowcast.store import conform as cf
from shadowcast.store.base import AggQuery, TimeRange
from shadowcast.store.clickhouse_sql import (
    NULL_MS,
    ROLLUP_DIMS,
    ROLLUP_ROWS,
    ROLLUP_STEPS,
    ROLLUP_VALUES,
    Layout,
    floor_ms,
    ident,
    literal,
    rollup_table,
)

_FN = {"sum": "sum", "avg": "avg", "max": "max", "min": "min", "count": "count"}


def ms(ts: datetime) -> int:
    """Milliseconds since the epoch (naive datetimes are UTC)."""
    return int(round(cf.utc(ts).timestamp() * 1000))


def filters(
    table: str,
    start: datetime | None,
    end: datetime | None,
    where: Mapping[str, object] | None,
    tcol: str | None = None,
    *,
    ranges: Mapping[str, TimeRange] | None = None,
) -> list[str]:
    conds: list[str] = []
    bounds = cf.time_ranges(table, None if tcol else start, None if tcol else end, ranges)
    if tcol is not None and (start is not None or end is not None):  # e.g. a rollup's bucket
        bounds.insert(0, (tcol, start, end))
    for col, lo, hi in bounds:
        conds.append(f"{ident(col)} != {NULL_MS}")
        if lo is not None:
            conds.append(f"{ident(col)} >= {ms(lo)}")
        if hi is not None:
            conds.append(f"{ident(col)} < {ms(hi)}")
    for col, scalar in cf.check_where(table, where).items():
        value = scalar.as_py()
        if isinstance(value, datetime):
            value = ms(value)
        conds.append(f"{ident(col)} = {literal(value)}")
    return conds


def _group(query: AggQuery) -> str:
    keys = ", ".join(["`_b`", *(ident(b) for b in query.by)])
    return f" GROUP BY {keys} ORDER BY {keys}"


def raw_sql(layout: Layout, query: AggQuery) -> str:
    tcol = cf.time_column(query.table)
    selects = [f"{floor_ms(ident(tcol), query.step_s)} AS `_b`"]
    selects += [ident(b) for b in query.by]
    for i, v in enumerate(query.values):
        selects.append(f"{_FN[query.agg]}({ident(v)}) AS `_v{i}`")
    if not query.values:
        selects.append("count() AS `_v0`")
    conds = [f"{ident(tcol)} != {NULL_MS}"]
    conds += filters(query.table, query.start, query.end, query.where)
    src = layout.name(query.table)
    return f"SELECT {', '.join(selects)} FROM {src} WHERE {' AND '.join(conds)}" + _group(query)


def rollup_step(query: AggQuery) -> int | None:
    """The coarsest flows rollup that answers ``query`` exactly, if any."""
    if query.table != "flows" or query.agg not in ("sum", "count", "avg"):
        return None
    if not set(query.values) <= set(ROLLUP_VALUES):
        return None
    if not set(query.by) | set(query.where) <= set(ROLLUP_DIMS):
        return None
    bounds = [ms(t) for t in (query.start, query.end) if t is not None]
    for step in sorted(ROLLUP_STEPS, reverse=True):
        if query.step_s % step == 0 and all(b % (step * 1000) == 0 for b in bounds):
            return step
    return None


def rollup_sql(layout: Layout, query: AggQuery, step: int) -> str:
    selects = [f"{floor_ms('`bucket`', query.step_s)} AS `_b`"]
    selects += [ident(b) for b in query.by]
    rows = f"sum({ident(ROLLUP_ROWS)})"
    for i, v in enumerate(query.values):
        expr = {"sum": f"sum({ident(v)})", "count": rows, "avg": f"sum({ident(v)}) / {rows}"}
        selects.append(f"{expr[query.agg]} AS `_v{i}`")
    if not query.values:
        selects.append(f"{rows} AS `_v0`")
    conds = filters("flows", query.start, query.end, query.where, tcol="bucket")
    conds = [c for c in conds if not c.startswith(f"`bucket` != {NULL_MS}")]
    where = (" WHERE " + " AND ".join(conds)) if conds else ""
    keys = ", ".join(["`_b`", *(ident(b) for b in query.by)])
    src = layout.name(rollup_table(step))
    return (
        f"SELECT {', '.join(selects)} FROM {src}{where} GROUP BY {keys} "
        f"HAVING {rows} != 0 ORDER BY {keys}"
    )
