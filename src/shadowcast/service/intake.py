"""Live flows into the service: identify, place, roll up, profile, announce new paths.

The collector hands every decoded flow batch to ``put`` (from its supervisor thread); a
bounded queue applies back-pressure (a full queue blocks the collector, whose sockets then
buffer). One worker thread runs the profile stage on each batch and feeds:

* the rollup (OD demand per step, under a lock shared with the service loop);
* the behaviour series (``behaviour`` table, through the stage writer);
* new-path events and the applications seen, collected for the shadow stage.

``processed`` counts records done; ``wait_processed(n)`` lets a replay wait until a step's
records have gone through before it advances the clock.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass, field

import pyarrow as pa

from shadowcast.profile.events import AppPathEvent, PathEvents
from shadowcast.profile.identify import Profiler
from shadowcast.profile.series import SeriesBuilder
from shadowcast.rollup.rollup import Rollup
from shadowcast.service.writer import StageWriter

log = logging.getLogger(__name__)


@dataclass
class IntakeStats:
    batches: int = 0
    records: int = 0
    failures: int = 0
    queue_full_waits: int = 0
    seconds: float = 0.0
    last_error: str = ""


@dataclass
class _Inbox:
    events: list[AppPathEvent] = field(default_factory=list)
    apps: set[str] = field(default_factory=set)


class FlowIntake:
    def __init__(
        self,
        profiler: Profiler,
        builder: SeriesBuilder,
        tiers: list[int],
        rollup: Rollup,
        rollup_lock: threading.Lock,
        writer: StageWriter,
        events: PathEvents,
        *,
        queue_batches: int = 64,
        series_rows: int = 50_000,
        series_s: float = 5.0,
    ) -> None:
        self.profiler = profiler
        self.builder = builder
        self.tiers = sorted(tiers)
        self.rollup = rollup
        self.rollup_lock = rollup_lock
        self.writer = writer
        self.events = events
        self.stats = IntakeStats()
        # behaviour series and path events are built per ``series_rows`` records or
        # ``series_s`` seconds (fixed costs shared by a bigger batch; coarse tiers merge)
        self.series_rows = series_rows
        self.series_s = series_s
        self._pending: list[pa.Table] = []
        self._pending_rows = 0
        self._pending_since = time.monotonic()
        self._q: queue.Queue[pa.Table | None] = queue.Queue(maxsize=queue_batches)
        self._inbox = _Inbox()
        self._inbox_lock = threading.Lock()
        self._done = threading.Condition()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="service-intake", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Process what is queued and the series held, then stop."""
        if self._thread is None:
            return
        self._q.put(None)
        self._thread.join()
        self._thread = None
        self.flush_series()

    def put(self, flows: pa.Table) -> None:
        if flows.num_rows == 0:
            return
        try:
            self._q.put_nowait(flows)
        except queue.Full:
            self.stats.queue_full_waits += 1
            self._q.put(flows)

    def process(self, flows: pa.Table) -> None:
        """One batch, in the calling thread (the worker, or tests): identified and rolled up
        at once; its behaviour series and path events with the next series batch."""
        t0 = time.perf_counter()
        profiled = self.profiler.identify(flows)
        with self.rollup_lock:
            self.rollup.accept(profiled)
        self._pending.append(profiled)
        self._pending_rows += profiled.num_rows
        apps = {str(a) for a in profiled.column("app").unique().to_pylist() if a}
        with self._inbox_lock:  # at once: applications still seen keep their tunnels alive
            self._inbox.apps |= apps
        if (
            self._pending_rows >= self.series_rows
            or time.monotonic() - self._pending_since >= self.series_s
        ):
            self.flush_series()
        self.stats.seconds += time.perf_counter() - t0

    def flush_series(self) -> None:
        """Behaviour series (every tier) and path events of the records held so far."""
        if not self._pending:
            return
        profiled = pa.concat_tables(self._pending, promote_options="permissive")
        self._pending, self._pending_rows = [], 0
        self._pending_since = time.monotonic()
        minutes = self.builder.build(profiled)
        finest = minutes
        for grain in self.tiers:  # each tier rolled from the previous one (fewer rows)
            tier = minutes if grain == 60 else self.builder.rollup(finest, grain)
            finest = tier
            self.writer.add("behaviour", tier)
        new = self.events.observe(profiled)
        with self._inbox_lock:
            self._inbox.events.extend(new)

    def take_inbox(self) -> tuple[list[AppPathEvent], set[str]]:
        with self._inbox_lock:
            box, self._inbox = self._inbox, _Inbox()
        return box.events, box.apps

    def wait_processed(self, records: int, timeout_s: float) -> bool:
        """Wait until at least ``records`` records have been processed."""
        deadline = time.monotonic() + timeout_s
        with self._done:
            while self.stats.records < records:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._done.wait(left)
        return True

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            try:
                self.process(item)
            except Exception as exc:  # one bad batch must not stop the intake
                self.stats.failures += 1
                self.stats.last_error = str(exc)
                log.exception(
                    "flow batch failed in the profile stage", extra={"rows": item.num_rows}
                )
            with self._done:
                self.stats.batches += 1
                self.stats.records += item.num_rows
                self._done.notify_all()
