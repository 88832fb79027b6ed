"""One collector worker process: read UDP bursts, decode them in batches, send Arrow."""

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

import pyarrow as pa

from shadowcast.collect.base import Decoder, ExporterStats
from shadowcast.collect.batcher import Batcher
from shadowcast.collect.ipc import DONE, READY, Spill, encode_error, encode_stats, widen_pipe
from shadowcast.collect.metrics import EXPORTER_FIELDS, merge_exporters, stats_to_dict
from shadowcast.records import FLOW_SCHEMA

log = logging.getLogger(__name__)

DecoderFactory = Callable[[], Decoder]
STATS_EVERY_S = 0.5
FINAL_DRAIN_S = 10.0
MAX_DATAGRAM = 65535


def flow_decoder(sampling_overrides: dict[str, int]) -> Decoder:
    """The production decoder (every protocol, version-dispatched)."""
    from shadowcast.collect.decoders import FlowDecoder

    return FlowDecoder(sampling_overrides=sampling_overrides)


def default_decoder_factory(sampling_overrides: dict[str, int]) -> DecoderFactory:
    """A picklable factory (workers are spawned, not forked)."""
    return functools.partial(flow_decoder, dict(sampling_overrides))


@dataclass(frozen=True, slots=True)
class WorkerArgs:
    worker_id: int
    sockets: list[socket.socket]
    flush_rows: int
    flush_interval_s: float
    decode_packets: int
    decode_wait_s: float
    spill_dir: str


def drain(sock: socket.socket, out: list[tuple[bytes, str]], limit: int) -> int:
    """Read up to ``limit`` datagrams without blocking; returns how many were read."""
    recv = sock.recvfrom
    mapped = sock.family == socket.AF_INET6
    n = 0
    try:
        while n < limit:
            data, addr = recv(MAX_DATAGRAM)
            host: str = addr[0]
            if mapped and host.startswith("::ffff:") and "." in host:
                host = host[7:]
            out.append((data, host))
            n += 1
    except (BlockingIOError, InterruptedError):
        pass
    return n


class _Worker:
    def __init__(self, args: WorkerArgs, decoder: Decoder, conn: Connection, stop: Event) -> None:
        self.args = args
        self.decoder = decoder
        self.conn = conn
        self.stop = stop
        self.stopping = False
        self.batcher = Batcher(FLOW_SCHEMA, args.flush_rows, args.flush_interval_s)
        self.crashed: dict[str, ExporterStats] = {}  # packets a decoder exception lost
        self.spill = Spill(args.spill_dir, f"w{args.worker_id}-")

    def decode(self, packets: list[tuple[bytes, str]]) -> None:
        if not packets:
            return
        try:
            table = self.decoder.decode(packets, time.time())
        except Exception:  # the Decoder contract says never; count it if it happens
            log.exception("decoder raised; packets counted as decode errors")
            for _, host in packets:
                st = self.crashed.setdefault(host, ExporterStats())
                st.packets += 1
                st.decode_errors += 1
            return
        self.batcher.add(table)

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
        self.conn.send_bytes(encode_stats({k: _asdict(v) for k, v in merged.items()}))

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        for s in self.args.sockets:
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ)
        widen_pipe(self.conn)
        ppid = os.getppid()
        want, wait = self.args.decode_packets, self.args.decode_wait_s
        self.conn.send_bytes(READY)
        last_stats = time.monotonic()
        packets: list[tuple[bytes, str]] = []
        first_at = 0.0  # when the oldest undecoded datagram was read
        while not (self.stopping or self.stop.is_set()):
            now = time.monotonic()
            timeout = min(0.2, self.batcher.time_left())
            if packets:
                timeout = min(timeout, max(0.0, first_at + wait - now))
            for key, _ in sel.select(timeout):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                had = len(packets)
                drain(sock, packets, want - had if want > had else 1)
                if not had and packets:
                    first_at = time.monotonic()
            now = time.monotonic()
            if packets and (len(packets) >= want or now - first_at >= wait):
                self.decode(packets)
                packets = []
            if self.batcher.due():
                self.send_batch()
            if now - last_stats >= STATS_EVERY_S:
                self.send_stats()
                last_stats = now
                if os.getppid() != ppid:
                    log.error("collector supervisor is gone; worker stops")
                    break
        # Stop reading new datagrams: decode what the kernel already accepted.
        until = time.monotonic() + FINAL_DRAIN_S
        while time.monotonic() < until:
            got = sum(drain(s, packets, want) for s in self.args.sockets)
            self.decode(packets)
            packets = []
            if got == 0:
                break
        sel.close()
        self.send_batch()
        self.send_stats()


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
