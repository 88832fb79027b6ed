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
    """Remembers when each path was last seen; turns profiled flow batches into events.

    Column-wise: a batch's distinct paths are matched against the known ones in one
    ``index_in`` pass and their last-seen times updated with numpy; only paths that are new
    or back after ``idle_s`` (a handful per batch) are looked at one by one, in time order,
    for the rate limit.
    """

    SEP = "\x1f"

    def __init__(self, idle_s: int = 3600, rate_per_min: int = 60, max_paths: int = 1_000_000):
        self.idle_ms = idle_s * 1000
        self.rate_per_min = rate_per_min
        self.max_paths = max_paths
        self.suppressed = 0
        self._window_start = -1
        self._window_count = 0
        self._keys: list[str] = []  # path key "app SEP ingress SEP egress"
        self._last = np.zeros(0, dtype=np.int64)  # last seen (ms) per path
        self._value_set: pa.Array | None = None

    @property
    def last_seen(self) -> dict[tuple[str, str, str], int]:
        """Every remembered path -> when it was last seen (ms)."""
        return {
            tuple(k.split(self.SEP)): int(t)  # type: ignore[misc]
            for k, t in zip(self._keys, self._last, strict=True)
        }

    def observe(self, flows: pa.Table) -> list[AppPathEvent]:
        """Events for the paths in ``flows`` (PROFILED_SCHEMA); one pass per distinct path."""
        if flows.num_rows == 0:
            return []
        names = ["app", "category", "ingress", "egress"]
        keys = pa.table({n: pc.fill_null(flows.column(n).cast(pa.string()), "") for n in names})
        t0 = pc.cast(flows.column("time_start"), pa.int64())
        t1 = pc.cast(flows.column("time_end"), pa.int64())
        grouped = (
            keys.append_column("t0", t0)
            .append_column("t1", t1)
            .group_by(["app", "ingress", "egress"], use_threads=False)
            .aggregate([("t0", "min"), ("t1", "max"), ("category", "first")])
            .sort_by("t0_min")
        )
        named = pc.not_equal(grouped.column("app"), "")  # unnamed traffic is not announced
        grouped = grouped.filter(named)
        if grouped.num_rows == 0:
            return []
        path = pc.binary_join_element_wise(
            grouped.column("app"), grouped.column("ingress"), grouped.column("egress"), self.SEP
        )
        first = np.asarray(grouped.column("t0_min").to_numpy(), dtype=np.int64)
        last = np.asarray(grouped.column("t1_max").to_numpy(), dtype=np.int64)
        if self._value_set is None:
            self._value_set = pa.array(self._keys, pa.string())
        idx_arr = pc.index_in(path, value_set=self._value_set)
        known = np.asarray(pc.is_valid(idx_arr).to_numpy(zero_copy_only=False), dtype=bool)
        idx = np.asarray(pc.fill_null(idx_arr, 0).to_numpy(), dtype=np.int64)
        prev = np.where(known, self._last[idx] if len(self._last) else 0, 0)
        candidate = ~known | (first - prev >= self.idle_ms)
        keep = known & ~candidate  # still active: only their last-seen time moves
        if keep.any():
            np.maximum.at(self._last, idx[keep], last[keep])
        events: list[AppPathEvent] = []
        rows = np.flatnonzero(candidate)
        if rows.size == 0:
            return events
        cols = {
            n: grouped.column(n).take(pa.array(rows)).to_pylist()
            for n in ("app", "ingress", "egress", "category_first")
        }
        new_keys: list[str] = []
        new_last: list[int] = []
        for j, r in enumerate(rows.tolist()):
            if not self._allow(int(first[r])):
                self.suppressed += 1
                continue
            returning = bool(known[r])
            if returning:
                self._last[idx[r]] = max(int(last[r]), int(self._last[idx[r]]))
            else:
                new_keys.append(str(path[r].as_py()))
                new_last.append(int(last[r]))
            events.append(
                AppPathEvent(
                    application=str(cols["app"][j]),
                    category=str(cols["category_first"][j]),
                    ingress=str(cols["ingress"][j]),
                    egress=str(cols["egress"][j]),
                    first_seen=datetime.fromtimestamp(int(first[r]) / 1000, tz=UTC),
                    returning=returning,
                )
            )
        if new_keys:
            self._keys.extend(new_keys)
            self._last = np.concatenate([self._last, np.asarray(new_last, dtype=np.int64)])
            self._value_set = None
        if len(self._keys) > self.max_paths:
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
        cut = float(np.median(self._last))
        keep = self._last > cut
        self._keys = [k for k, m in zip(self._keys, keep, strict=True) if m]
        self._last = self._last[keep]
        self._value_set = None
