"""Flows from the store instead of the service's own collector (``service.flows_from: store``).

With several collectors writing one store (a ClickHouse cluster: collectors near the
exporters), the one service that rolls up must see every collector's flows, not only those
its own collector decodes. :class:`StoreFeed` polls the ``flows`` table every ``poll_s`` and
hands the intake the rows whose ``time_end`` is in ``[watermark, now - lateness)``, then
moves the watermark there: each flow is handed over once, when it has ended and its
collector has had ``lateness`` to store it. A row stored later than that is not seen (the
same bound as the rollup's own lateness). The store filters where it keeps the rows
(``Store.read`` with a range on ``time_end``), so a poll reads back only the rows it hands
over, not every flow of the last ``max_duration``; the range on the table's time column
(``time_start`` from ``watermark - max_duration``: a flow record spans at most
``max_duration``, the exporters' active timeout) lets the backend skip older data by its
index or segment statistics. A failed poll keeps the watermark and is tried again at the
next one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from shadowcast.errors import StoreError
from shadowcast.store.base import Store

log = logging.getLogger(__name__)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class StoreFeed:
    """Polls ``store`` for ended flows and hands them to ``put`` (see the module docstring)."""

    def __init__(
        self,
        store: Store,
        put: Callable[[pa.Table], None],
        *,
        start_s: int,
        poll_s: float,
        lateness_s: int,
        max_duration_s: int,
    ) -> None:
        self.store = store
        self.put = put
        self.watermark_ms = int(start_s) * 1000
        self.poll_s = poll_s
        self.lateness_s = lateness_s
        self.max_duration_s = max_duration_s
        self.rows = 0
        self.polls = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll(self, now_s: float) -> int:
        """Hand over the flows that ended since the watermark; returns how many."""
        cut = int((now_s - self.lateness_s) * 1000)
        wm = self.watermark_ms
        if cut <= wm:
            return 0
        start = wm - self.max_duration_s * 1000
        ended = {"time_end": (_dt(wm), _dt(cut))}
        tab = self.store.read("flows", _dt(start), _dt(cut), ranges=ended)
        if tab.num_rows:
            self.put(tab)
        self.watermark_ms = cut
        self.polls += 1
        self.rows += tab.num_rows
        return int(tab.num_rows)

    def start(self, clock: Callable[[], float]) -> None:
        def run() -> None:
            while not self._stop.wait(self.poll_s):
                self._once(clock())

        self._thread = threading.Thread(target=run, name="store-feed", daemon=True)
        self._thread.start()

    def _once(self, now_s: float) -> None:
        try:
            self.poll(now_s)
        except StoreError as exc:  # the store away: the same window at the next poll
            self.failures += 1
            log.error("reading flows from the store failed", extra={"error": str(exc)})

    def stop(self, now_s: float | None = None) -> None:
        """Stop polling; with ``now_s``, one last poll first (the flows ended by then)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(60)
        if now_s is not None:
            self._once(now_s)

    def stats(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "polls": self.polls,
            "failures": self.failures,
            "watermark": _dt(self.watermark_ms).isoformat(),
        }
