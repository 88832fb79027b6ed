"""StoreFeed reads back only the flows it hands over (issue #16: it read every flow of the
last ``flows_max_duration`` on each poll, ~300 M rows per poll at 1 M flows/s)."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from shadowcast.service.storefeed import StoreFeed
from shadowcast.store.base import Store
from shadowcast.store.config import StoreConfig, open_store
from shadowcast.store.synth import T0_MS, synthetic_flows

SPAN_S = 1200


class Counting:
    """``store`` that counts the rows each ``read`` returns."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.reads: list[int] = []

    def read(self, table: str, start: datetime | None = None, end: datetime | None = None,
             where: dict[str, str] | None = None, **kw: Any) -> pa.Table:  # fmt: skip
        out = self.store.read(table, start, end, where, **kw)
        self.reads.append(out.num_rows)
        return out


def _with_end(t: pa.Table, start_ms: int, end_ms: int) -> pa.Table:
    typ = t.schema.field("time_start").type
    t = t.set_column(0, "time_start", pa.array([start_ms] * t.num_rows, pa.int64()).cast(typ))
    col = pa.array([end_ms] * t.num_rows, pa.int64()).cast(typ)
    return t.set_column(t.schema.get_field_index("time_end"), "time_end", col)


def test_each_poll_reads_only_the_rows_it_hands_over(tmp_path: Path) -> None:
    store = open_store(StoreConfig(data_dir=tmp_path))
    try:
        for batch in synthetic_flows(60_000, 10_000, span_ms=SPAN_S * 1000):
            store.write("flows", batch)
        counting = Counting(store)
        handed: list[pa.Table] = []
        t0 = T0_MS // 1000
        feed = StoreFeed(counting, handed.append, start_s=t0 + 600, poll_s=5,  # type: ignore[arg-type]
                         lateness_s=5, max_duration_s=300)  # fmt: skip
        per_poll = []
        for i in range(1, 25):
            if i == 12:  # another collector stores 4-minute flows that end in this poll
                end_ms = (t0 + 600 + i * 5 - 2) * 1000
                store.write("flows", _with_end(next(synthetic_flows(3, seed=9)),
                                               end_ms - 240_000, end_ms))  # fmt: skip
            per_poll.append(feed.poll(t0 + 600 + i * 5 + 5))  # ends before now - lateness
        assert counting.reads == per_poll  # read back == handed over, poll by poll
        assert min(per_poll) > 0 and max(per_poll) < 2_000
        every = pa.concat_tables(handed)
        end = every.column("time_end").cast(pa.int64()).to_numpy()
        lo, hi = (t0 + 600) * 1000, (t0 + 600 + 24 * 5) * 1000
        assert (end >= lo).all() and (end < hi).all()
        everything = store.read("flows").column("time_end").cast(pa.int64()).to_numpy()
        assert every.num_rows == int(((everything >= lo) & (everything < hi)).sum())
        assert feed.stats()["rows"] == every.num_rows
        # the old-start flow was handed over although it started 4 minutes before
        starts = every.column("time_start").cast(pa.int64()).to_numpy()
        assert int((starts == (t0 + 658) * 1000 - 240_000).sum()) == 3
    finally:
        store.close()
