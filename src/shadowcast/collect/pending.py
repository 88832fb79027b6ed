"""Data sets that arrived before their template: held, bounded in count, bytes and age.

Each exporter holds at most ``max_per_exporter`` sets; all exporters together at most
``max_bytes`` of set bodies (the oldest set, whoever sent it, goes first); a set older
than ``max_age`` seconds is dropped by :meth:`PendingSets.expire` (the collector calls it
on a timer) or when a template arrives. Every set dropped unread is counted per exporter
(:meth:`PendingSets.drain_dropped`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass


@dataclass(slots=True)
class Pending:
    domain: int
    tid: int
    body: bytes
    export_ms: int
    uptime_ms: int
    received: float
    exporter: str = ""
    live: bool = True


class PendingSets:
    """Held data sets per exporter, oldest first, within the three bounds."""

    def __init__(
        self, max_per_exporter: int = 256, max_age: float = 30.0, max_bytes: int = 16 << 20
    ) -> None:
        self.max_per_exporter = max_per_exporter
        self.max_age = max_age
        self.max_bytes = max_bytes
        self.bytes = 0
        self._q: dict[str, deque[Pending]] = {}  # live sets only
        self._all: deque[Pending] = deque()  # arrival order; taken sets linger, dead
        self._live = 0
        self._dropped: dict[str, int] = {}

    def add(self, exporter: str, item: Pending) -> None:
        item.exporter = exporter
        q = self._q.get(exporter)
        if q is None:
            q = self._q[exporter] = deque()
        if len(q) >= self.max_per_exporter:
            self._drop(q.popleft())
        q.append(item)
        self._all.append(item)
        self._live += 1
        self.bytes += len(item.body)
        while self.bytes > self.max_bytes and self._all:
            self._evict_oldest()
        if len(self._all) > 4 * self._live + 1024:  # many taken sets: compact
            self._all = deque(p for p in self._all if p.live)

    def take(self, exporter: str, domain: int, tid: int, now: float) -> list[Pending]:
        """The held sets for (domain, tid), oldest first; expired ones are dropped."""
        q = self._q.get(exporter)
        if not q:
            return []
        keep: deque[Pending] = deque()
        out = []
        for item in q:
            if now - item.received > self.max_age:
                self._drop(item)
            elif item.domain == domain and item.tid == tid:
                out.append(
                    Pending(domain, tid, item.body, item.export_ms, item.uptime_ms, item.received)
                )
                self._kill(item)  # the copy goes out; the husk may linger in ``_all``
            else:
                keep.append(item)
        if keep:
            self._q[exporter] = keep
        else:
            del self._q[exporter]
        return out

    def expire(self, now: float) -> int:
        """Drop the sets older than ``max_age``; returns how many."""
        n = 0
        while self._all:
            item = self._all[0]
            if item.live and now - item.received <= self.max_age:
                break
            if item.live:
                self._evict_oldest()
                n += 1
            else:
                self._all.popleft()
        return n

    def forget(self, exporter: str) -> int:
        """Drop every set ``exporter`` has waiting; returns how many."""
        q = self._q.pop(exporter, None)
        for item in q or ():
            self._drop(item)
        return len(q or ())

    def drain_dropped(self) -> dict[str, int]:
        """Sets dropped unread per exporter since the last call."""
        out, self._dropped = self._dropped, {}
        return out

    def count(self) -> int:
        return self._live

    def _evict_oldest(self) -> None:
        item = self._all.popleft()
        if not item.live:
            return
        q = self._q[item.exporter]
        if q[0] is item:
            q.popleft()
        else:  # not reached: an exporter's sets are in arrival order in both queues
            q.remove(item)
        if not q:
            del self._q[item.exporter]
        self._drop(item)

    def _drop(self, item: Pending) -> None:
        self._dropped[item.exporter] = self._dropped.get(item.exporter, 0) + 1
        self._kill(item)

    def _kill(self, item: Pending) -> None:
        if item.live:
            item.live = False
            self._live -= 1
            self.bytes -= len(item.body)
            item.body = b""
