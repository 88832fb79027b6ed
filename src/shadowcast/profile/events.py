"""New application path events for the shadow-tunnel manager.

A path is ``(application, ingress, egress)``. It is *new* the first time it is seen and
*returning* when it is seen again after ``idle_s`` without traffic. Events are
deduplicated (one per appearance) and rate-limited (at most ``rate_per_min`` a minute;
the rest are counted in ``suppressed`` and re-offered on the next batch that sees the
path, because a suppressed path is not remembered as announced).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute

log = logging.getLogger(__name__)
pc: Any = pyarrow.compute


@dataclass(frozen=True, slots=True)
class AppPathEvent:
    """An application started using a path (ingress edge -> egress edge)."""

    application: str
    category: str
    ingress: str
    egress: str
    first_seen: datetime
    returning: bool = False  # seen before, then idle for at least idle_s


class PathEvents:
    """Remembers when each path was last seen; turns profiled flow batches into events."""

    def __init__(self, idle_s: int = 3600, rate_per_min: int = 60, max_paths: int = 1_000_000):
        self.idle_ms = idle_s * 1000
        self.rate_per_min = rate_per_min
        self.max_paths = max_paths
        self.last_seen: dict[tuple[str, str, str], int] = {}  # path -> ms
        self.suppressed = 0
        self._window_start = -1
        self._window_count = 0

    def observe(self, flows: pa.Table) -> list[AppPathEvent]:
        """Events for the paths in ``flows`` (PROFILED_SCHEMA); one pass per distinct path."""
        if flows.num_rows == 0:
            return []
        names = ["app", "category", "ingress", "egress"]
        keys = pa.table({n: flows.column(n).cast(pa.string()) for n in names})
        t0 = pc.cast(flows.column("time_start"), pa.int64())
        t1 = pc.cast(flows.column("time_end"), pa.int64())
        grouped = (
            keys.append_column("t0", t0)
            .append_column("t1", t1)
            .group_by(["app", "ingress", "egress"], use_threads=False)
            .aggregate([("t0", "min"), ("t1", "max"), ("category", "first")])
            .sort_by("t0_min")
        )
        events: list[AppPathEvent] = []
        cols = {n: grouped.column(n).to_pylist() for n in grouped.column_names}
        for app, ing, egr, first, last, cat in zip(
            cols["app"], cols["ingress"], cols["egress"], cols["t0_min"], cols["t1_max"],
            cols["category_first"], strict=True,
        ):  # fmt: skip
            if not app:
                continue  # paths of unnamed traffic are not announced
            key = (str(app), str(ing), str(egr))
            prev = self.last_seen.get(key)
            fresh = prev is None
            returning = prev is not None and int(first) - prev >= self.idle_ms
            if (fresh or returning) and not self._allow(int(first)):
                self.suppressed += 1
                continue
            self.last_seen[key] = max(int(last), prev or 0)
            if fresh or returning:
                events.append(
                    AppPathEvent(
                        application=key[0],
                        category=str(cat),
                        ingress=key[1],
                        egress=key[2],
                        first_seen=datetime.fromtimestamp(int(first) / 1000, tz=UTC),
                        returning=returning,
                    )
                )
        if len(self.last_seen) > self.max_paths:
            self._forget()
        return events

    def _allow(self, now_ms: int) -> bool:
        window = now_ms // 60_000
        if window != self._window_start:
            self._window_start, self._window_count = window, 0
        if self._window_count >= self.rate_per_min:
            return False
        self._window_count += 1
        return True

    def _forget(self) -> None:
        """Drop the oldest half of the remembered paths (bounded memory)."""
        cut = float(np.median(np.fromiter(self.last_seen.values(), dtype=np.int64)))
        self.last_seen = {k: v for k, v in self.last_seen.items() if v > cut}
