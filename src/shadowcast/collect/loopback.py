"""Flows through the real collection path on loopback (for the demo and replays).

``LoopbackCollector`` runs a collector on 127.0.0.1 (a free IPFIX port) in a background
thread for the length of a ``with`` block: ``send`` paces IPFIX messages to it,
``wait_stored`` waits until the store holds a number of records, and leaving the block stops
it cleanly (everything received is flushed). ``loopback_ingest`` sends one table that way.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Self

import pyarrow as pa

from shadowcast.collect.config import CollectConfig, ListenerConfig
from shadowcast.collect.metrics import CollectSnapshot
from shadowcast.collect.server import CollectServer
from shadowcast.collect.synth import ipfix_export
from shadowcast.errors import DataError
from shadowcast.store.base import Store

log = logging.getLogger(__name__)


class LoopbackCollector:
    """A collector on 127.0.0.1 writing to ``store`` while the ``with`` block runs."""

    def __init__(
        self,
        store: Store,
        *,
        workers: int = 1,
        records_per_s: float = 200_000.0,
        start_timeout_s: float = 60.0,
        low_latency: bool = False,
        sinks: Sequence[Callable[[pa.Table], None]] = (),
    ) -> None:
        # low_latency: decode and hand over within milliseconds (a replay that waits for
        # each step's records before it moves its clock)
        cfg = CollectConfig(
            bind="127.0.0.1",
            listeners=[ListenerConfig(protocol="ipfix", port=0)],
            workers=workers,
            flush_interval_s=0.5,
            handoff_s=0.01 if low_latency else None,
            decode_wait_s=0.002 if low_latency else 0.05,
            max_record_age_s=None,  # replays send historic data
        )
        self.server = CollectServer(cfg, store, sinks=sinks)
        self.records_per_s = records_per_s
        self.start_timeout_s = start_timeout_s
        self.port = 0
        self.final: CollectSnapshot | None = None
        self._thread: threading.Thread | None = None
        self._tx: socket.socket | None = None
        self._sources: dict[str, socket.socket] = {}

    def __enter__(self) -> Self:
        self.port = next(iter(self.server.bind()))
        ready = threading.Event()
        result: list[CollectSnapshot] = []

        def run() -> None:
            result.append(self.server.serve(on_ready=lambda _: ready.set()))
            self.final = result[0]

        self._thread = threading.Thread(target=run, name="loopback-collector", daemon=True)
        self._thread.start()
        until = time.monotonic() + self.start_timeout_s
        while not ready.wait(0.05):
            if not self._thread.is_alive() or time.monotonic() > until:
                self.server.stop()
                raise DataError(f"loopback collector did not start: {self.server.failures}")
        self._tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        return self

    def send(self, messages: Sequence[bytes], records: int, source: str | None = None) -> None:
        """Send ``messages`` (holding ``records`` flow records) at ``records_per_s``, from
        ``source`` (a 127.0.0.0/8 address: one exporter per address) or 127.0.0.1."""
        assert self._tx is not None, "use LoopbackCollector in a with block"
        tx = self._tx if source is None else self._source(source)
        per_msg = records / max(1, len(messages))
        t0 = time.monotonic()
        for i, msg in enumerate(messages):
            due = t0 + i * per_msg / self.records_per_s
            if (lag := due - time.monotonic()) > 0.001:
                time.sleep(lag)
            tx.sendto(msg, ("127.0.0.1", self.port))

    def _source(self, address: str) -> socket.socket:
        s = self._sources.get(address)
        if s is None:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((address, 0))
            self._sources[address] = s
        return s

    def wait_stored(self, rows: int, idle_timeout_s: float = 60.0) -> int:
        """Wait until ``rows`` records are stored, or nothing was stored for
        ``idle_timeout_s``; returns the rows stored."""
        last, since = -1, time.monotonic()
        while True:
            stored = self.server.snapshot().rows_stored
            if stored >= rows or self._thread is None or not self._thread.is_alive():
                return stored
            if stored != last:
                last, since = stored, time.monotonic()
            elif time.monotonic() - since > idle_timeout_s:
                return stored
            time.sleep(0.05)

    def snapshot(self) -> CollectSnapshot:
        return self.final or self.server.snapshot()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._tx is not None:
            self._tx.close()
        for s in self._sources.values():
            s.close()
        self.server.stop()
        if self._thread is not None:
            self._thread.join(60)


def loopback_ingest(
    flows: pa.Table,
    store: Store,
    *,
    workers: int = 1,
    records_per_s: float = 200_000.0,
    timeout_s: float = 300.0,
) -> CollectSnapshot:
    """Send ``flows`` (``FLOW_SCHEMA`` columns) as IPFIX to a collector writing to ``store``;
    returns its accounting. Raises DataError if not every record was stored in time."""
    with LoopbackCollector(
        store, workers=workers, records_per_s=records_per_s, start_timeout_s=timeout_s
    ) as lc:
        lc.send(ipfix_export(flows), flows.num_rows)
        lc.wait_stored(flows.num_rows, idle_timeout_s=timeout_s)
    snap = lc.snapshot()
    if snap.rows_stored < flows.num_rows:
        raise DataError(
            f"loopback ingest stored {snap.rows_stored} of {flows.num_rows} records "
            f"(socket drops {snap.socket_drops}, failures {lc.server.failures})"
        )
    log.info("loopback ingest done", extra={"rows": snap.rows_stored})
    return snap
