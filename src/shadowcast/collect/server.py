"""UDP listeners, decoding workers and the one writer that owns the store.

Life of a datagram::

    exporter --UDP--> kernel socket (SO_REUSEPORT, one per worker per port, large SO_RCVBUF)
             --> worker process: recvfrom until 1024 datagrams or 50 ms -> Decoder.decode
             -> Batcher
             --Arrow IPC file in /dev/shm, its name over a pipe--> supervisor (this
             process): Batcher per table
             --> writer thread: Store.write(table, batch)

The kernel hashes each exporter's (address, port) to one worker, so an exporter's
templates live in one decoder. DuckDB takes one writing process per file, so only the
supervisor touches the store. A full pipe blocks its worker, which stops reading; the
socket buffer absorbs the burst and the kernel counts what overflows (``socket_drops``).

Shutdown (SIGTERM/SIGINT or ``duration``): workers stop waiting for new datagrams, read
what the kernel already accepted until the sockets are empty, decode it, send it, and say
``done``; the supervisor writes everything it holds and closes the store.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import queue
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from types import FrameType

import pyarrow as pa

from shadowcast.collect.batcher import Batcher
from shadowcast.collect.config import CollectConfig
from shadowcast.collect.ipc import Message, recv_message
from shadowcast.collect.metrics import CollectSnapshot, merge_exporters, socket_drops
from shadowcast.collect.worker import (
    DecoderFactory,
    WorkerArgs,
    default_decoder_factory,
    worker_main,
)
from shadowcast.errors import ConfigError
from shadowcast.records import FLOW_SCHEMA
from shadowcast.store.base import Store

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 30.0


def open_udp_sockets(
    bind: str, ports: Sequence[int], copies: int, rcvbuf: int
) -> dict[int, list[socket.socket]]:
    """``copies`` SO_REUSEPORT sockets per port, all bound; port 0 becomes a free port."""
    family = socket.AF_INET6 if ":" in bind else socket.AF_INET
    out: dict[int, list[socket.socket]] = {}
    try:
        for port in ports:
            socks: list[socket.socket] = []
            actual = port
            for _ in range(copies):
                s = socket.socket(family, socket.SOCK_DGRAM)
                socks.append(s)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                if family == socket.AF_INET6:
                    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
                set_rcvbuf(s, rcvbuf)
                s.bind((bind, actual))
                actual = s.getsockname()[1]
            out[actual] = socks
    except OSError as exc:
        for socks in out.values():
            for s in socks:
                s.close()
        raise ConfigError(f"collect.listeners: cannot bind UDP {bind}:{port}: {exc}") from exc
    return out


def set_rcvbuf(sock: socket.socket, size: int) -> int:
    """Ask for ``size`` bytes of receive buffer; beyond net.core.rmem_max this needs
    CAP_NET_ADMIN (SO_RCVBUFFORCE). Returns what the kernel granted."""
    force = getattr(socket, "SO_RCVBUFFORCE", 33)
    try:
        sock.setsockopt(socket.SOL_SOCKET, force, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)
    granted = int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))
    if granted < size:
        log.warning("socket receive buffer smaller than asked", extra={"granted": granted})
    return granted


@dataclass(slots=True)
class _Writer:
    """Writes batches handed over by the supervisor, in its own thread, in order."""

    store: Store
    rows: int = 0
    batches: int = 0
    errors: int = 0
    rows_failed: int = 0
    _q: queue.Queue[tuple[str, pa.Table, list[str]] | None] = field(
        default_factory=lambda: queue.Queue(maxsize=4)
    )
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="collect-writer", daemon=True)
        self._thread.start()

    def put(self, name: str, table: pa.Table, spilled: list[str]) -> None:
        """Queue ``table``; the ``spilled`` files that held it are deleted once written."""
        self._q.put((name, table, spilled))

    def close(self) -> None:
        self._q.put(None)
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        """Write what is queued; batches that queued up while a write ran go in together
        (fewer, larger writes when the store is the bottleneck)."""
        done = False
        while not done:
            item = self._q.get()
            if item is None:
                break
            pending: dict[str, list[pa.Table]] = {item[0]: [item[1]]}
            files = list(item[2])
            while True:
                try:
                    more = self._q.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    done = True
                    break
                pending.setdefault(more[0], []).append(more[1])
                files.extend(more[2])
            for name, tables in pending.items():
                self._write(name, tables[0] if len(tables) == 1 else pa.concat_tables(tables))
            del pending
            for path in files:
                with contextlib.suppress(OSError):
                    os.unlink(path)

    def _write(self, name: str, table: pa.Table) -> None:
        try:
            self.rows += self.store.write(name, table)
            self.batches += 1
        except Exception:
            self.errors += 1
            self.rows_failed += table.num_rows
            log.exception("store write failed", extra={"table": name, "rows": table.num_rows})


@contextlib.contextmanager
def _bare_main() -> Iterator[None]:
    """Spawned children re-import ``__main__`` (for ``shadowcast`` that is the whole CLI,
    seconds on a busy machine); workers need none of it, so hide it while they start."""
    saved = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = saved


class CollectServer:
    """Listens, decodes and stores until ``stop()``, a signal, or ``duration`` seconds."""

    def __init__(
        self,
        config: CollectConfig,
        store: Store,
        decoder_factory: DecoderFactory | None = None,
        extra_sources: Sequence[Callable[[mpc.Connection, Event], None]] = (),
        sinks: Sequence[Callable[[pa.Table], None]] = (),
    ) -> None:
        self.config = config
        self.store = store
        # default: every protocol, with the configured per-exporter sampling overrides
        self.decoder_factory = decoder_factory or default_decoder_factory(config.sampling_overrides)
        self.extra_sources = list(extra_sources)
        # Called with every decoded flow batch as it arrives from a worker (the service's
        # profile stage), in the supervisor thread, before the batch is stored.
        self.sinks = list(sinks)
        self.sockets: dict[int, list[socket.socket]] = {}
        self.protocols: dict[int, str] = {}
        self._ctx = mp.get_context("spawn")
        self._stop_requested = threading.Event()
        self._worker_stats: dict[int, dict[str, dict[str, int]]] = {}
        self._writer = _Writer(store)
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self.failures: list[str] = []

    # -- setup -----------------------------------------------------------------------------

    def bind(self) -> dict[int, str]:
        """Open the sockets (before ``serve``); returns port -> protocol label."""
        wanted = [(lc.port, lc.protocol) for lc in self.config.listeners]
        fixed = [p for p, _ in wanted if p]
        if len(set(fixed)) != len(fixed):
            raise ConfigError("collect.listeners: the same port is listed twice")
        self.sockets = open_udp_sockets(
            self.config.bind, [p for p, _ in wanted], self.config.workers, self.config.rcvbuf_bytes
        )
        self.protocols = {
            actual: proto for actual, (_, proto) in zip(self.sockets, wanted, strict=True)
        }
        return dict(self.protocols)

    def stop(self) -> None:
        """Ask for a clean shutdown (safe from signal handlers and other threads)."""
        self._stop_requested.set()

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal received, shutting down", extra={"signal": signum})
            self.stop()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    # -- accounting ------------------------------------------------------------------------

    def snapshot(self) -> CollectSnapshot:
        with self._lock:
            per_worker = list(self._worker_stats.values())
        return CollectSnapshot(
            exporters=merge_exporters(per_worker),
            socket_drops=socket_drops(self.sockets),
            rows_stored=self._writer.rows,
            batches_stored=self._writer.batches,
            store_errors=self._writer.errors,
            uptime_s=time.monotonic() - self._started,
        )

    # -- run -------------------------------------------------------------------------------

    def serve(
        self,
        duration: float | None = None,
        on_ready: Callable[[dict[int, str]], None] | None = None,
    ) -> CollectSnapshot:
        if not self.sockets:
            self.bind()
        cfg = self.config
        stop_event = self._ctx.Event()
        spill_dir = tempfile.mkdtemp(
            prefix="shadowcast-collect-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
        )
        spilled: dict[str, list[str]] = {}
        procs: list[mp.process.BaseProcess] = []
        conns: dict[mpc.Connection, int] = {}
        n_workers = cfg.workers
        for wid in range(n_workers):
            parent, child = self._ctx.Pipe(duplex=False)
            args = WorkerArgs(
                worker_id=wid,
                sockets=[socks[wid] for socks in self.sockets.values()],
                flush_rows=max(1, min(cfg.flush_rows, 50_000)),
                flush_interval_s=cfg.flush_interval_s / 2,
                decode_packets=cfg.decode_packets,
                decode_wait_s=cfg.decode_wait_s,
                spill_dir=spill_dir,
            )
            p = self._ctx.Process(
                target=worker_main,
                args=(args, self.decoder_factory, child, stop_event),
                name=f"collect-worker-{wid}",
                daemon=True,
            )
            with _bare_main():
                p.start()
            child.close()
            procs.append(p)
            conns[parent] = wid
        for i, source in enumerate(self.extra_sources):
            parent, child = self._ctx.Pipe(duplex=False)
            # not daemonic: a source may start processes of its own (nfstream meters)
            p = self._ctx.Process(
                target=source, args=(child, stop_event), name=f"collect-source-{i}", daemon=False
            )
            with _bare_main():
                p.start()
            child.close()
            procs.append(p)
            conns[parent] = n_workers + i
        self._started = time.monotonic()
        self._writer.start()
        batchers: dict[str, Batcher] = {}
        live = set(conns)
        waiting_ready = set(range(n_workers))
        deadline: float | None = None  # ``duration`` counts from when every worker is ready
        stop_sent_at: float | None = None
        try:
            while live:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    self._stop_requested.set()
                if self._stop_requested.is_set() and stop_sent_at is None:
                    stop_event.set()
                    stop_sent_at = now
                if stop_sent_at is not None and now - stop_sent_at > SHUTDOWN_GRACE_S:
                    log.error("workers did not finish in time; terminating them")
                    for proc in procs:
                        proc.terminate()
                    break
                timeout = min([0.2] + [b.time_left() for b in batchers.values() if b.rows])
                for conn in mpc.wait(list(live), timeout=timeout):
                    assert isinstance(conn, mpc.Connection)
                    try:
                        msg = recv_message(conn)
                    except (EOFError, OSError):
                        live.discard(conn)
                        if stop_sent_at is None:
                            self.failures.append(f"worker {conns[conn]} exited unexpectedly")
                            log.error("collector worker %d exited unexpectedly", conns[conn])
                            self._stop_requested.set()
                        continue
                    self._handle(conns[conn], msg, batchers)
                    if msg.path:
                        spilled.setdefault(msg.name, []).append(msg.path)
                    if msg.kind == "ready" and waiting_ready:
                        waiting_ready.discard(conns[conn])
                        if not waiting_ready:
                            if duration is not None:
                                deadline = time.monotonic() + duration
                            if on_ready is not None:
                                on_ready(dict(self.protocols))
                    elif msg.kind == "done":
                        live.discard(conn)
                for name, b in batchers.items():
                    if b.due():
                        self._writer.put(name, b.take(), spilled.pop(name, []))
        finally:
            stop_event.set()
            for name, b in batchers.items():
                if b.rows:
                    self._writer.put(name, b.take(), spilled.pop(name, []))
            self._writer.close()
            for proc in procs:
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(timeout=5)
            for c in conns:
                c.close()
            shutil.rmtree(spill_dir, ignore_errors=True)
        snap = self.snapshot()
        for socks in self.sockets.values():
            for s in socks:
                s.close()
        return snap

    def _handle(self, wid: int, msg: Message, batchers: dict[str, Batcher]) -> None:
        if msg.kind == "batch" and msg.table is not None:
            b = batchers.get(msg.name)
            if b is None:
                b = batchers[msg.name] = Batcher(
                    msg.table.schema if msg.name != "flows" else FLOW_SCHEMA,
                    self.config.flush_rows,
                    self.config.flush_interval_s / 2,
                )
            b.add(msg.table)
            if msg.name == "flows":
                for sink in self.sinks:
                    sink(msg.table)
        elif msg.kind == "stats" and msg.stats is not None:
            with self._lock:
                self._worker_stats[wid] = msg.stats
        elif msg.kind == "error":
            # A worker that fails stops the collector: running on with part of the
            # sockets unread would drop their exporters' datagrams silently.
            log.error("collector worker %d failed, stopping: %s", wid, msg.name)
            self.failures.append(msg.name)
            self._stop_requested.set()
