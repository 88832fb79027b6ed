"""Data sets that arrived before their template: held per exporter, bounded in count and age."""

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


class PendingSets:
    """At most ``max_per_exporter`` held sets per exporter (oldest dropped), each for at most
    ``max_age`` seconds (checked when a template arrives)."""

    def __init__(self, max_per_exporter: int = 256, max_age: float = 30.0) -> None:
        self.max_per_exporter = max_per_exporter
        self.max_age = max_age
        self._q: dict[str, deque[Pending]] = {}

    def add(self, exporter: str, item: Pending) -> None:
        q = self._q.get(exporter)
        if q is None:
            q = self._q[exporter] = deque(maxlen=self.max_per_exporter)
        q.append(item)

    def take(self, exporter: str, domain: int, tid: int, now: float) -> list[Pending]:
        """The held sets for (domain, tid), oldest first; expired ones are dropped."""
        q = self._q.get(exporter)
        if not q:
            return []
        keep: deque[Pending] = deque(maxlen=self.max_per_exporter)
        out = []
        for item in q:
            if now - item.received > self.max_age:
                continue
            if item.domain == domain and item.tid == tid:
                out.append(item)
            else:
                keep.append(item)
        self._q[exporter] = keep
        return out

    def count(self) -> int:
        return sum(len(q) for q in self._q.values())
