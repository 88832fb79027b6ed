"""The Store protocol: batch writes of typed Arrow tables, time-bucketed aggregation."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

import pyarrow as pa

# A half-open ``[from, to)`` range on a timestamp column; None leaves that end open.
TimeRange = tuple[datetime | None, datetime | None]


class BlockNesting(Protocol):
    """A backend's per-thread transaction state: how deep the blocks are, and whether a
    failure inside has doomed the outermost one."""

    depth: int
    doomed: bool


@contextmanager
def inner_block(loc: BlockNesting) -> Iterator[None]:
    """A transaction block opened inside another joins it: an exception leaving it dooms
    the outer block (which then sends or commits nothing)."""
    loc.depth += 1
    try:
        yield
    except BaseException:
        loc.doomed = True
        raise
    finally:
        loc.depth -= 1


@dataclass(frozen=True, slots=True)
class AggQuery:
    """Sum (or other aggregate) of ``values`` per ``by`` columns per ``step_s`` time bucket.

    ``agg`` is one of ``sum``, ``avg``, ``max``, ``min``, ``count``. ``start``/``end`` bound
    the table's time column (inclusive start, exclusive end); ``where`` is equality filters.
    The result has columns ``bucket`` (timestamp), the ``by`` columns, then one column per
    value named after it; sorted by bucket then ``by``.
    """

    table: str
    step_s: int
    by: Sequence[str] = ()
    values: Sequence[str] = ()
    agg: str = "sum"
    start: datetime | None = None
    end: datetime | None = None
    where: dict[str, str] = field(default_factory=dict)


class Store(Protocol):
    """Where every stage keeps what it produced. Writes are batches; a failed write
    leaves nothing half-written."""

    def write(self, table: str, batch: pa.Table) -> int:
        """Append ``batch`` (cast to the table's schema) to ``table``; returns rows written."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """All writes inside the block land together or not at all."""
        ...

    def aggregate(self, query: AggQuery) -> pa.Table: ...

    def read(
        self,
        table: str,
        start: datetime | None = None,
        end: datetime | None = None,
        where: dict[str, str] | None = None,
        *,
        ranges: Mapping[str, TimeRange] | None = None,
    ) -> pa.Table:
        """Rows of ``table`` in insertion order with the time column in ``[start, end)``,
        the equality filters ``where``, and each other timestamp column of ``ranges`` in
        its range (e.g. ``{"time_end": (a, b)}``: flows that ended in ``[a, b)``); a row
        whose filtered column is null is left out. Every backend filters where it stores,
        so only the matching rows are read back."""
        ...

    def count(self, table: str) -> int: ...

    def retain(
        self,
        max_age: timedelta,
        now: datetime | None = None,
        tables: Sequence[str] | None = None,
        where: dict[str, str] | None = None,
    ) -> dict[str, int]:
        """Delete rows older than ``now - max_age`` from every table (or only ``tables``),
        only those matching the equality filters ``where`` when given; rows deleted per
        table."""
        ...

    def close(self) -> None: ...


def iter_batches(table: pa.Table, size: int) -> Iterator[pa.Table]:
    """Slices of ``table`` of at most ``size`` rows."""
    for off in range(0, table.num_rows, size):
        yield table.slice(off, size)
