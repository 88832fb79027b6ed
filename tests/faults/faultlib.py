"""Attacks on the collector from outside, on loopback only (tests/faults and bench/faults.py).

Senders bind to addresses of 127/8 (all local) to look like many exporters. Every attack
is bounded: a number of datagrams, paced in bursts, never an open-ended loop.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shadowcast.collect.config import CollectConfig, ListenerConfig
from shadowcast.collect.decoders import FlowDecoder
from shadowcast.collect.metrics import CollectSnapshot
from shadowcast.collect.server import CollectServer
from shadowcast.collect.synth import ipfix_export
from shadowcast.collect.wire import data_set, template_set
from shadowcast.store.base import Store
from shadowcast.store.duckdb import DuckDBStore
from shadowcast.store.synth import random_table

STARTUP_S = 90.0
IPFIX_HEADER = struct.Struct("!HHIII")


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def spoofed(i: int, base: int = 100) -> str:
    """The i-th exporter address in 127.<base>.0.0/16 (then the next /16s)."""
    i += base << 16
    return f"127.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def send(packets: Sequence[bytes], port: int, src: str = "127.0.0.1", burst: int = 100) -> int:
    """Send from ``src`` (bound), pausing 1 ms every ``burst`` datagrams; bytes sent."""
    sent = 0
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((src, 0))
        for i, p in enumerate(packets):
            s.sendto(p, ("127.0.0.1", port))
            sent += len(p)
            if i % burst == burst - 1:
                time.sleep(0.001)
    return sent


def proc_memory(pid: int) -> tuple[int, int]:
    """(resident, peak resident) bytes of a process, read from outside it."""
    rss = peak = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1]) * 1024
    return rss, peak


def children(pid: int | None = None) -> list[int]:
    """The child processes of ``pid`` (this process by default)."""
    pid = os.getpid() if pid is None else pid
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in (task / "children").read_text().split()]
    return out


# -- traffic ---------------------------------------------------------------------------------


def current_flows(n: int, seed: int = 0, now_ms: int | None = None) -> pa.Table:
    """``n`` flow records (FLOW_SCHEMA columns) that ended in the last minute."""
    t = random_table("flows", n, seed=seed)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    rng = np.random.default_rng(seed)
    end = now - rng.integers(0, 60_000, n)
    start = end - rng.integers(0, 30_000, n)
    ms = pa.timestamp("ms", tz="UTC")
    t = t.set_column(0, "time_start", pa.array(start, pa.int64()).cast(ms))
    t = t.set_column(1, "time_end", pa.array(end, pa.int64()).cast(ms))
    pk = np.asarray(t["packets"].to_numpy(), np.uint64) % 1000 + 1
    byts = pk * rng.integers(40, 1500, n).astype(np.uint64)
    t = t.set_column(t.schema.get_field_index("packets"), "packets", pa.array(pk))
    t = t.set_column(t.schema.get_field_index("bytes"), "bytes", pa.array(byts))
    rate = pa.array(np.ones(n, np.uint32))
    return t.set_column(t.schema.get_field_index("sampling_rate"), "sampling_rate", rate)


def valid_ipfix(n: int, seed: int = 0) -> tuple[list[bytes], pa.Table]:
    """IPFIX messages for ``n`` current records, and what a collector should store."""
    flows = current_flows(n, seed)
    packets = ipfix_export(flows, app_mode="name")
    want = FlowDecoder().decode([(p, "x") for p in packets], time.time())
    assert want.num_rows == n
    return packets, want


def poisoned_start(value_ms: int = 2**52) -> list[bytes]:
    """One IPFIX record whose flowStartMilliseconds is ``value_ms`` (with its template)."""
    flows = current_flows(1, seed=7)
    packets = ipfix_export(flows, app_mode="name")
    start = int(flows["time_start"].cast(pa.int64())[0].as_py())
    old = struct.pack("!Q", start)
    assert sum(p.count(old) for p in packets) == 1
    return [p.replace(old, struct.pack("!Q", value_ms)) for p in packets]


def template_flood(exporter: int, n_templates: int, per_message: int = 30) -> list[bytes]:
    """IPFIX messages announcing ``n_templates`` distinct templates (ids 256+), each
    a different definition (so none is shared with another's compiled layout)."""
    out: list[bytes] = []
    for first in range(0, n_templates, per_message):
        sets = b""
        for k in range(first, min(n_templates, first + per_message)):
            ie = 1000 + (exporter * 7919 + k) % 30000  # unassigned element ids
            fields = ((152, 8), (153, 8), (8, 4), (12, 4), (1, 8), (2, 8), (ie, 4), (ie + 1, 2))
            sets += template_set(2, 256 + k, fields)
        out.append(IPFIX_HEADER.pack(10, 16 + len(sets), int(time.time()), 0, 1) + sets)
    return out


def templateless_data(n_messages: int, size: int = 65_000, tid: int = 4000) -> list[bytes]:
    """IPFIX messages of one data set each, for a template never announced."""
    body = os.urandom(size - 16 - 4)
    sets = data_set(tid, body)
    msg = IPFIX_HEADER.pack(10, 16 + len(sets), int(time.time()), 0, 1) + sets
    return [msg] * n_messages


# -- a collector to attack -------------------------------------------------------------------


@dataclass
class Target:
    server: CollectServer
    store: Store
    port: int
    result: CollectSnapshot | None = None

    def snap(self) -> CollectSnapshot:
        return self.server.snapshot()

    def rows(self, exporter: str) -> int:
        return int(self.store.read("flows", where={"exporter": exporter}).num_rows)

    def stored(self, exporter: str) -> pa.Table:
        return self.store.read("flows", where={"exporter": exporter})

    def peak_rss(self) -> int:
        return max((g.get("peak_rss_bytes", 0) for g in self.snap().workers.values()), default=0)

    def gauge(self, key: str) -> int:
        return sum(g.get(key, 0) for g in self.snap().workers.values())

    def drops(self) -> int:
        """Datagrams the kernel dropped on the listening sockets (a small buffer)."""
        return sum(self.snap().socket_drops.values())

    def counted(self, exporters: Sequence[str]) -> int:
        ex = self.snap().exporters
        return sum(ex[e].packets for e in exporters if e in ex)

    def settle(self, exporters: Sequence[str], packets: int, timeout: float = 60) -> None:
        """Wait until the workers have counted ``packets`` datagrams from ``exporters``
        (or the kernel dropped the rest: a socket buffer smaller than asked for)."""
        wait_for(
            lambda: self.counted(exporters) + self.drops() >= packets,
            timeout,
            f"{packets} datagrams counted",
        )


@contextlib.contextmanager
def target(tmp: Path, store: Store | None = None, **overrides: Any) -> Iterator[Target]:
    """A collector on 127.0.0.1 (one IPFIX port) writing to a DuckDB store under ``tmp``."""
    params: dict[str, Any] = {"bind": "127.0.0.1", "workers": 1, "flush_interval_s": 0.5}
    params.update(overrides)
    cfg = CollectConfig(listeners=[ListenerConfig(protocol="ipfix", port=0)], **params)
    own = store is None
    st: Store = DuckDBStore(tmp / "flows.duckdb") if store is None else store
    server = CollectServer(cfg, st)
    port = next(iter(server.bind()))
    ready = threading.Event()
    t = Target(server, st, port)

    def serve() -> None:
        t.result = server.serve(on_ready=lambda _: ready.set())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        wait_for(lambda: ready.is_set() or not thread.is_alive(), STARTUP_S, "workers")
        assert ready.is_set(), f"collector workers did not start: {server.failures}"
        yield t
    finally:
        server.stop()
        thread.join(120)
        if own:
            st.close()
    assert not thread.is_alive(), "collector did not stop"


def sums(table: pa.Table) -> tuple[int, int, int]:
    """(rows, bytes, packets) of a flows table."""
    return (
        table.num_rows,
        int(pc.sum(table["bytes"]).as_py() or 0),
        int(pc.sum(table["packets"]).as_py() or 0),
    )
