"""StoreFeed poll cost (issue #16): rows the store reads per poll against rows handed over.

A DuckDB store (parquet segments, the default) holds ``--rows`` synthetic flows spread over
``--span-s`` seconds; a :class:`~shadowcast.service.storefeed.StoreFeed` with the given
``--max-duration-s`` (the exporters' active timeout) polls every ``--poll-s`` over the
last part of that span, and each poll's rows read (what ``store.read`` returned), rows
handed to the intake and wall time are recorded.

    .venv/bin/python bench/storefeed.py [--rows 3000000] [--span-s 600] [--polls 12]

Prints one JSON object. Timings are noisy on a shared machine: ``loadavg`` is included.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from shadowcast.service.storefeed import StoreFeed
from shadowcast.store.config import StoreConfig, open_store
from shadowcast.store.synth import T0_MS, synthetic_flows


class CountingStore:
    """Forwards to ``store``; counts the rows ``read`` returns."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.last_read = 0

    def read(self, table: str, start: datetime | None = None, end: datetime | None = None,
             where: dict[str, str] | None = None, **kw: Any) -> pa.Table:  # fmt: skip
        out = self.store.read(table, start, end, where, **kw)
        self.last_read = out.num_rows
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3_000_000)
    ap.add_argument("--span-s", type=int, default=600)
    ap.add_argument("--max-duration-s", type=int, default=300)
    ap.add_argument("--poll-s", type=int, default=5)
    ap.add_argument("--polls", type=int, default=12)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="sc-bench-feed-") as tmp:
        store = open_store(StoreConfig(data_dir=Path(tmp)))
        t0 = time.perf_counter()
        for batch in synthetic_flows(a.rows, 100_000, span_ms=a.span_s * 1000):
            store.write("flows", batch)
        write_s = time.perf_counter() - t0
        counting = CountingStore(store)
        first_s = T0_MS // 1000 + a.span_s - a.poll_s * (a.polls + 1)
        feed = StoreFeed(counting, lambda t: None, start_s=first_s, poll_s=a.poll_s,  # type: ignore[arg-type]
                         lateness_s=0, max_duration_s=a.max_duration_s)  # fmt: skip
        polls = []
        for i in range(1, a.polls + 1):
            t = time.perf_counter()
            handed = feed.poll(first_s + i * a.poll_s)
            polls.append((counting.last_read, handed, time.perf_counter() - t))
        store.close()
    read, handed, secs = zip(*polls, strict=True)
    print(json.dumps({
        "rows_in_store": a.rows, "span_s": a.span_s, "max_duration_s": a.max_duration_s,
        "poll_s": a.poll_s, "polls": a.polls, "write_s": round(write_s, 2),
        "rows_read_per_poll_median": statistics.median(read),
        "rows_handed_per_poll_median": statistics.median(handed),
        "read_over_handed": round(sum(read) / max(1, sum(handed)), 1),
        "seconds_per_poll_median": round(statistics.median(secs), 4),
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
    }))  # fmt: skip


if __name__ == "__main__":
    main()
