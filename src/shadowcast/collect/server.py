"""UDP listeners, decoding workers and the one writer that owns the store.

Life of a datagram::

    exporter --UDP--> kernel socket (SO_REUSEPORT, one per worker per port, large SO_RCVBUF)
             --> worker process: recvfrom until 1024 datagrams or 50 ms -> allow-list
             -> Decoder.decode -> record checks (collect.validate) -> Batcher
             --Arrow IPC file in /dev/shm, its name over a pipe--> supervisor (this
             process): Batcher per table
             --> Spool (store.spool): one writer thread, Store.write(table, batch),
                 retried with backoff; memory, then spill_dir, while the store fails

The kernel hashes each exporter's (address, port) to one worker, so an exporter's
templates live in one decoder. DuckDB takes one writing process per file, so only the
supervisor touches the store. A full pipe blocks its worker, which stops reading; the
socket buffer absorbs the burst and the kernel counts what overflows (``socket_drops``).

Shutdown (SIGTERM/SIGINT or ``duration``): workers stop waiting for new datagrams, read
what the kernel already accepted until the sockets are empty, decode it, send it, and say
``done``; the supervisor writes everything it holds and closes the store.

A batch file leaves the folder only once its rows are stored (or spilled to ``spill_dir``):
after a crash, even SIGKILL, the next start stores what the dead run's folder still holds
(:mod:`collect.shm`). A stored file is given back to its worker, which overwrites it with a
later batch (:func:`shm.recycle`): the supervisor reads batches as copies.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import multiprocessing.connection as mpc
import os
import signal
import socket
import sys
import threading
import time
import types
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.synchronize import Event
from types import FrameType

import pyarrow as pa

from shadowcast.collect.batcher import Batcher
from shadowcast.collect.config import CollectConfig
from shadowcast.collect.ipc import Message, recv_message
from shadowcast.collect.metrics import CollectSnapshot, merge_exporters, socket_drops
from shadowcast.collect.shm import (
    make_folder,
    orphans,
    recycle,
    release_folder,
    store_identity,
)
from shadowcast.collect.steer import steer_by_exporter
from shadowcast.collect.validate import RecordChecks
from shadowcast.collect.worker import (
    DecoderFactory,
    WorkerArgs,
    default_decoder_factory,
    worker_main,
)
from shadowcast.errors import ConfigError, StoreError
from shadowcast.records import FLOW_SCHEMA
from shadowcast.store.base import Store
from shadowcast.store.spool import Spool

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_S = 30.0
# A worker waits once its batch files not yet stored weigh the write buffer and this much
# more: while the store fails, the spool moves files to spill_dir (or drops them, counted)
# before any worker waits; while it is slow, the wait is the back-pressure.
WORKER_SLACK_BYTES = 64 << 20


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
            steer_by_exporter(socks)  # an exporter's datagrams: one worker, by its address
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
        # default: every protocol, with the configured sampling overrides and state bounds
        self.decoder_factory = decoder_factory or default_decoder_factory(
            config.sampling_overrides,
            max_templates_per_exporter=config.max_templates_per_exporter,
            max_templates=config.max_templates,
            pending_age=config.pending_age_s,
            pending_bytes=config.max_pending_bytes,
        )
        self.extra_sources = list(extra_sources)
        # Called with every decoded flow batch as it arrives from a worker (the service's
        # profile stage), in the supervisor thread, before the batch is stored.
        self.sinks = list(sinks)
        self.sockets: dict[int, list[socket.socket]] = {}
        self.protocols: dict[int, str] = {}
        self._ctx = mp.get_context("spawn")
        self._stop_requested = threading.Event()
        self._worker_stats: dict[int, dict[str, dict[str, int]]] = {}
        self._worker_gauges: dict[int, dict[str, int]] = {}
        self.spool = Spool(
            store,
            memory_bytes=config.buffer_bytes,
            spill_dir=config.spill_dir,
            spill_max_bytes=config.spill_max_bytes,
            retry_max_s=config.retry_max_s,
            nice=config.writer_nice,
            release=recycle,
        )
        self.recovered_rows = 0  # rows a crashed run left in shared memory, stored now
        self.worker_pids: list[int] = []
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
            gauges = {wid: dict(g) for wid, g in self._worker_gauges.items()}
        sp = self.spool.stats()
        return CollectSnapshot(
            exporters=merge_exporters(per_worker),
            socket_drops=socket_drops(self.sockets),
            rows_stored=sp.rows_written,
            batches_stored=sp.batches_written,
            store_errors=sp.write_errors,
            uptime_s=time.monotonic() - self._started,
            workers=gauges,
            spool=sp,
            rows_recovered=self.recovered_rows + sp.rows_recovered,
            fresh_rows=self._fresh_rows(),
        )

    def _fresh_rows(self) -> int:
        """Rows the store holds in fresh segments (0 where it has none, or is closed)."""
        fresh = getattr(self.store, "fresh_rows", None)
        if not callable(fresh):
            return 0
        try:
            return int(fresh())
        except StoreError:
            return 0

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
        store_id = store_identity(self.store)
        spill_dir = make_folder(store_id)
        spilled: dict[str, list[str]] = {}
        batchers: dict[str, Batcher] = {}
        self.spool.start()
        self._adopt_orphans(store_id, spill_dir, batchers, spilled)
        procs: list[mp.process.BaseProcess] = []
        conns: dict[mpc.Connection, int] = {}
        n_workers = cfg.workers
        for wid in range(n_workers):
            parent, child = self._ctx.Pipe(duplex=False)
            args = WorkerArgs(
                worker_id=wid,
                sockets=[socks[wid] for socks in self.sockets.values()],
                flush_rows=max(1, min(cfg.flush_rows, 50_000)),
                flush_interval_s=cfg.handoff_s or cfg.flush_interval_s / 2,
                decode_packets=cfg.decode_packets,
                decode_wait_s=cfg.decode_wait_s,
                spill_dir=spill_dir,
                checks=RecordChecks(
                    cfg.max_record_age_s, cfg.max_clock_skew_s, cfg.max_packet_bytes
                ),
                max_exporters=cfg.max_exporters,
                allow_exporters=tuple(cfg.allow_exporters),
                spill_max_bytes=cfg.buffer_bytes + WORKER_SLACK_BYTES,
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
            self.worker_pids.append(p.pid or 0)
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
                        self.spool.put(name, b.take(), spilled.pop(name, []))
        finally:
            stop_event.set()
            for name, b in batchers.items():
                if b.rows:
                    self.spool.put(name, b.take(), spilled.pop(name, []))
            stats = self.spool.close()
            for proc in procs:
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.terminate()
                    proc.join(timeout=5)
            for c in conns:
                c.close()
            if stats.rows_lost or stats.rows_rejected:
                log.error(
                    "collector: %d rows lost, %d refused by the store",
                    stats.rows_lost,
                    stats.rows_rejected,
                )
            release_folder(spill_dir)
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
                if msg.worker:
                    self._worker_gauges[wid] = msg.worker
        elif msg.kind == "error":
            # A worker that fails stops the collector: running on with part of the
            # sockets unread would drop their exporters' datagrams silently.
            log.error("collector worker %d failed, stopping: %s", wid, msg.name)
            self.failures.append(msg.name)
            self._stop_requested.set()

    def _adopt_orphans(
        self,
        store_id: str,
        folder: str,
        batchers: dict[str, Batcher],
        spilled: dict[str, list[str]],
    ) -> None:
        """Batches a crashed run of this store left in shared memory: moved into this
        run's folder and queued like any worker's (the files go once stored)."""
        for orphan in orphans(store_id):
            for i, (name, path) in enumerate(orphan.batches):
                moved = os.path.join(folder, f"r{i:06d}-{path.name}")
                try:
                    os.rename(path, moved)
                    msg = Message("batch", name=name, table=_read_batch(moved), path=moved)
                except (OSError, pa.ArrowException) as exc:
                    log.error("cannot recover %s: %s", path, exc)
                    continue
                self._handle(-1, msg, batchers)
                spilled.setdefault(name, []).append(moved)
                self.recovered_rows += msg.table.num_rows if msg.table is not None else 0
            release_folder(orphan.folder)
            log.warning(
                "a collector of this store died leaving %d rows in %s: queued for the store",
                orphan.rows,
                orphan.folder,
            )


def _read_batch(path: str) -> pa.Table:
    return pa.ipc.open_stream(pa.memory_map(path)).read_all()
