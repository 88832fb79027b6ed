"""One collector worker process: read UDP bursts, decode them in batches, send Arrow.

The sockets are read with ``recvmmsg`` into one matrix of slots (:mod:`collect.recv`);
a batch is decoded once ``decode_packets`` datagrams are in or the oldest has waited
``decode_wait_s``, as :class:`~datagrams.Datagrams` when the decoder takes them
(``decode_datagrams``), else as (payload, exporter) pairs."""

from __future__ import annotations

import functools
import logging
import os
import selectors
import signal
import socket
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from types import FrameType
from typing import Any

import pyarrow as pa

from shadowcast.collect.base import Decoder, ExporterStats
from shadowcast.collect.batcher import Batcher
from shadowcast.collect.bounds import OTHER, ExporterBounds, Forgetful, process_memory
from shadowcast.collect.datagrams import Datagrams
from shadowcast.collect.ipc import DONE, READY, Spill, encode_error, encode_stats, widen_pipe
from shadowcast.collect.metrics import EXPORTER_FIELDS, merge_exporters, stats_to_dict
from shadowcast.collect.recv import Receiver
from shadowcast.collect.shm import hold_shared
from shadowcast.collect.validate import RecordChecks, Rejected, check_records
from shadowcast.records import FLOW_SCHEMA

log = logging.getLogger(__name__)

DecoderFactory = Callable[[], Decoder]
STATS_EVERY_S = 0.5
EXPIRE_EVERY_S = 1.0
LOG_EVERY_S = 10.0
FINAL_DRAIN_S = 10.0
MAX_SLOTS = 4096  # datagrams read before a decode, at most (64 KiB of address space each)


def flow_decoder(sampling_overrides: dict[str, int], **nf_options: Any) -> Decoder:
    """The production decoder (every protocol, version-dispatched)."""
    from shadowcast.collect.decoders import FlowDecoder

    return FlowDecoder(sampling_overrides=sampling_overrides, **nf_options)


def default_decoder_factory(
    sampling_overrides: dict[str, int], **nf_options: Any
) -> DecoderFactory:
    """A picklable factory (workers are spawned, not forked); ``nf_options`` bound the
    NetFlow v9 / IPFIX state (see :class:`~shadowcast.collect.decoders.FlowDecoder`)."""
    return functools.partial(flow_decoder, dict(sampling_overrides), **nf_options)


@dataclass(frozen=True, slots=True)
class WorkerArgs:
    worker_id: int
    sockets: list[socket.socket]
    flush_rows: int
    flush_interval_s: float
    decode_packets: int
    decode_wait_s: float
    spill_dir: str
    checks: RecordChecks = RecordChecks()
    max_exporters: int = 2048
    allow_exporters: tuple[str, ...] = ()
    spill_max_bytes: int = 256 << 20  # IPC files not yet stored before the worker waits


class _Worker:
    def __init__(self, args: WorkerArgs, decoder: Decoder, conn: Connection, stop: Event) -> None:
        self.args = args
        self.decoder = decoder
        self.conn = conn
        self.stop = stop
        self.stopping = False
        self.orphaned = False  # the supervisor is gone
        self.rx = Receiver(max(1, min(args.decode_packets, MAX_SLOTS)))
        self.batcher = Batcher(FLOW_SCHEMA, args.flush_rows, args.flush_interval_s)
        self.crashed: dict[str, ExporterStats] = {}  # packets a decoder exception lost
        self.spill = Spill(args.spill_dir, f"w{args.worker_id}-", max_bytes=args.spill_max_bytes)
        self.bounds = ExporterBounds(args.max_exporters, args.allow_exporters)
        self.invalid: dict[str, int] = {}  # reasons since the last log line
        self.invalid_from: set[str] = set()  # a few of the exporters that sent them
        self.logged_at = 0.0

    def decode(self, dg: Datagrams) -> None:
        stats = self.decoder.stats
        dg = self.bounds.admit_datagrams(dg, stats)
        if not len(dg):
            return
        received = time.time()
        table: pa.Table | None = None
        batched = getattr(self.decoder, "decode_datagrams", None)
        try:
            if callable(batched):
                table = batched(dg, received)
            else:
                table = self.decoder.decode(dg.pairs(), received)
        except Exception:  # the Decoder contract says never; count it if it happens
            log.exception("decoder raised; packets counted as decode errors")
            for host, n in dg.per_exporter().items():
                if host not in self.crashed and len(self.crashed) >= self.args.max_exporters:
                    host = OTHER
                st = self.crashed.setdefault(host, ExporterStats())
                st.packets += n
                st.decode_errors += n
        if table is not None:
            table, rejected = check_records(table, received, self.args.checks)
            if rejected is not None:
                self.count_invalid(rejected)
        # after every counter of this batch is in: evicted exporters fold whole into OTHER
        self.bounds.heard(dg.first_seen(), stats, self.decoder)
        if table is not None:
            self.batcher.add(table)

    def count_invalid(self, rejected: Rejected) -> None:
        for exporter, n in rejected.by_exporter.items():
            self.decoder.stats.of(exporter).invalid_records += n
        for reason, n in rejected.by_reason.items():
            self.invalid[reason] = self.invalid.get(reason, 0) + n
        if len(self.invalid_from) < 4:
            self.invalid_from.update(rejected.by_exporter)
        self.log_invalid()

    def log_invalid(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.invalid and (force or now - self.logged_at >= LOG_EVERY_S):
            self.logged_at = now
            what = ", ".join(f"{k} {v}" for k, v in self.invalid.items())
            log.warning(
                "worker %d: decoded records refused (%s), from %s",
                self.args.worker_id,
                what,
                ", ".join(sorted(self.invalid_from)[:4]),
            )
            self.invalid, self.invalid_from = {}, set()

    def send_batch(self) -> None:
        """Counters first, so accounting never lags what reaches the store. sFlow interface
        counter samples travel with each flow batch (and at shutdown)."""
        counters = getattr(self.decoder, "counters", None)
        iface = counters() if callable(counters) else None
        has_iface = isinstance(iface, pa.Table) and iface.num_rows > 0
        if self.batcher.rows or has_iface:
            self.send_stats()
        if self.batcher.rows:
            self.spill.send(self.conn, "flows", self.batcher.take())
        if has_iface:
            assert isinstance(iface, pa.Table)
            self.spill.send(self.conn, "interface_counters", iface)

    def send_stats(self) -> None:
        snaps = [stats_to_dict(self.decoder.stats)]
        if self.crashed:
            snaps.append({k: _asdict(v) for k, v in self.crashed.items()})
        merged = merge_exporters(snaps)
        self.conn.send_bytes(
            encode_stats({k: _asdict(v) for k, v in merged.items()}, self.gauges())
        )

    def gauges(self) -> dict[str, int]:
        """What this worker holds now (and its peak memory)."""
        rss, peak = process_memory()
        out = {
            "exporters": self.bounds.count(),
            "exporters_evicted": self.bounds.evicted,
            "rss_bytes": rss,
            "peak_rss_bytes": peak,
            "spill_wait_ms": int(self.spill.waited_s * 1000),
        }
        if isinstance(self.decoder, Forgetful):
            out.update(self.decoder.usage())
        return out

    def expire(self) -> None:
        if isinstance(self.decoder, Forgetful):
            self.decoder.expire(time.time())

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        for s in self.args.sockets:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        widen_pipe(self.conn)
        self.spill.parent = os.getppid()
        self.conn.send_bytes(READY)
        try:
            self.loop(sel)
        except (BrokenPipeError, ConnectionResetError):
            self.orphaned = True
        if self.orphaned:
            log.error("collector supervisor is gone: worker keeps its batches for the next start")
        # Stop reading new datagrams: decode what the kernel already accepted.
        rx = self.rx
        until = time.monotonic() + FINAL_DRAIN_S
        while time.monotonic() < until:
            got = sum(rx.fill(s) for s in self.args.sockets)
            if rx.count:
                self.decode(rx.batch())
                rx.clear()
            if got == 0:
                break
        sel.close()
        self.log_invalid(force=True)
        if self.orphaned:
            self.keep_batch()
            return
        self.send_batch()
        self.send_stats()

    def loop(self, sel: selectors.BaseSelector) -> None:
        """Read, decode, send until told to stop (or the supervisor is gone)."""
        rx, wait = self.rx, self.args.decode_wait_s
        last_stats = last_expire = time.monotonic()
        first_at = 0.0  # when the oldest undecoded datagram was read
        while not (self.stopping or self.stop.is_set()):
            now = time.monotonic()
            timeout = min(0.2, self.batcher.time_left())
            if rx.count:
                timeout = min(timeout, max(0.0, first_at + wait - now))
            for key, _ in sel.select(timeout):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                had = rx.count
                while rx.fill(sock) and not rx.full:
                    pass
                if not had and rx.count:
                    first_at = time.monotonic()
                if rx.full:
                    break
            now = time.monotonic()
            if rx.count and (rx.full or now - first_at >= wait):
                self.decode(rx.batch())
                rx.clear()
            if self.batcher.due():
                self.send_batch()
            if now - last_expire >= EXPIRE_EVERY_S:  # even when nothing arrives
                self.expire()
                last_expire = now
            if now - last_stats >= STATS_EVERY_S:
                self.send_stats()
                last_stats = now
                if os.getppid() != self.spill.parent:
                    self.orphaned = True
                    break

    def keep_batch(self) -> None:
        """With no supervisor: leave what is decoded as files in the folder (stored by
        the next collector of the same store)."""
        counters = getattr(self.decoder, "counters", None)
        iface = counters() if callable(counters) else None
        for name, table in (("flows", self.batcher.take()), ("interface_counters", iface)):
            if isinstance(table, pa.Table) and table.num_rows:
                self.spill.write(name, table)


def _asdict(st: ExporterStats) -> dict[str, int]:
    return {name: getattr(st, name) for name in EXPORTER_FIELDS}


def worker_main(args: WorkerArgs, factory: DecoderFactory, conn: Connection, stop: Event) -> None:
    """Process entry point. SIGTERM/SIGINT start the same clean shutdown as the supervisor's."""
    signalled: list[int] = []
    worker: _Worker | None = None

    def handler(signum: int, frame: FrameType | None) -> None:
        signalled.append(signum)
        if worker is not None:
            worker.stopping = True

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    try:
        hold_shared(args.spill_dir)  # the folder is not an orphan while this process lives
        worker = _Worker(args, factory(), conn, stop)
        worker.stopping = bool(signalled)
        worker.run()
    except (BrokenPipeError, ConnectionResetError):
        return
    except Exception:
        try:
            conn.send_bytes(encode_error(traceback.format_exc()))
        except OSError:
            return
    try:
        conn.send_bytes(DONE)
        conn.close()
    except OSError:
        return
