"""Accumulate Arrow tables; hand them out by size or by age."""

from __future__ import annotations

import time
from collections.abc import Callable

import pyarrow as pa


class Batcher:
    """Collects tables of one schema until ``max_rows`` rows are held or the oldest is
    ``max_age_s`` old; ``due()`` says when, ``take()`` empties it into one table."""

    def __init__(
        self,
        schema: pa.Schema,
        max_rows: int,
        max_age_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_rows < 1 or max_age_s <= 0:
            raise ValueError("max_rows must be >= 1 and max_age_s > 0")
        self.schema = schema
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._clock = clock
        self._parts: list[pa.Table] = []
        self._rows = 0
        self._since: float | None = None

    @property
    def rows(self) -> int:
        return self._rows

    def add(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        if self._since is None:
            self._since = self._clock()
        self._parts.append(table)
        self._rows += table.num_rows

    def age(self) -> float:
        return 0.0 if self._since is None else self._clock() - self._since

    def due(self) -> bool:
        return self._rows >= self.max_rows or (
            self._since is not None and self.age() >= self.max_age_s
        )

    def time_left(self) -> float:
        """Seconds until the batch is due by age (``max_age_s`` when empty)."""
        if self._since is None:
            return self.max_age_s
        return max(0.0, self.max_age_s - self.age())

    def take(self) -> pa.Table:
        """Everything held, as one table (empty when nothing is held)."""
        if not self._parts:
            return self.schema.empty_table()
        parts, self._parts, self._rows, self._since = self._parts, [], 0, None
        table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
        return table
