"""Flows through the real collection path on loopback (for the demo and replays).

``loopback_ingest`` starts a collector on 127.0.0.1 (a free IPFIX port), sends the table
as IPFIX messages with applicationId and the options mapping id -> name, paced, waits
until every record is stored, and stops the collector cleanly.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import pyarrow as pa

from shadowcast.collect.config import CollectConfig, ListenerConfig
from shadowcast.collect.metrics import CollectSnapshot
from shadowcast.collect.server import CollectServer
from shadowcast.collect.synth import ipfix_export
from shadowcast.errors import DataError
from shadowcast.store.base import Store

log = logging.getLogger(__name__)


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
    cfg = CollectConfig(
        bind="127.0.0.1",
        listeners=[ListenerConfig(protocol="ipfix", port=0)],
        workers=workers,
        flush_interval_s=0.5,
    )
    server = CollectServer(cfg, store)
    port = next(iter(server.bind()))
    ready = threading.Event()
    result: list[CollectSnapshot] = []
    thread = threading.Thread(
        target=lambda: result.append(server.serve(on_ready=lambda _: ready.set())),
        name="loopback-collector",
        daemon=True,
    )
    thread.start()
    try:
        until = time.monotonic() + timeout_s
        while not ready.wait(0.05):
            if not thread.is_alive() or time.monotonic() > until:
                raise DataError(f"loopback collector did not start: {server.failures}")
        messages = ipfix_export(flows)
        per_msg = flows.num_rows / max(1, len(messages))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            t0 = time.monotonic()
            for i, msg in enumerate(messages):
                due = t0 + i * per_msg / records_per_s
                if (lag := due - time.monotonic()) > 0.001:
                    time.sleep(lag)
                tx.sendto(msg, ("127.0.0.1", port))
        while server.snapshot().rows_stored < flows.num_rows:
            if time.monotonic() > until or not thread.is_alive():
                break
            time.sleep(0.05)
    finally:
        server.stop()
        thread.join(60)
    snap = result[0] if result else server.snapshot()
    if snap.rows_stored < flows.num_rows:
        raise DataError(
            f"loopback ingest stored {snap.rows_stored} of {flows.num_rows} records "
            f"(socket drops {snap.socket_drops}, failures {server.failures})"
        )
    log.info("loopback ingest done", extra={"rows": snap.rows_stored})
    return snap
