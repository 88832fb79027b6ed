"""Collector accounting: per-exporter counters, kernel socket drops, Prometheus exposition.

Workers each own a decoder whose ``DecoderStats`` only grow; they send snapshots to the
supervisor, which keeps the latest per worker and sums them (an exporter normally stays on
one worker, but the sum is right either way). Kernel drops come from the ``drops`` column
of ``/proc/net/udp`` and ``/proc/net/udp6``, matched by the sockets' inodes.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from shadowcast.collect.base import DecoderStats, ExporterStats
from shadowcast.store.spool import SpoolStats

log = logging.getLogger(__name__)

EXPORTER_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ExporterStats))
PROC_UDP = (Path("/proc/net/udp"), Path("/proc/net/udp6"))
WORKER_COUNTERS = frozenset({"exporters_evicted", "spill_wait_ms"})  # the rest are gauges


def stats_to_dict(stats: DecoderStats) -> dict[str, dict[str, int]]:
    """Plain, picklable form of a decoder's counters."""
    return {ex: dataclasses.asdict(st) for ex, st in stats.exporters.items()}


def merge_exporters(
    snapshots: Iterable[Mapping[str, Mapping[str, int]]],
) -> dict[str, ExporterStats]:
    out: dict[str, ExporterStats] = {}
    for snap in snapshots:
        for ex, counters in snap.items():
            acc = out.setdefault(ex, ExporterStats())
            for name in EXPORTER_FIELDS:
                setattr(acc, name, getattr(acc, name) + int(counters.get(name, 0)))
    return out


@dataclass(slots=True)
class CollectSnapshot:
    """Everything ``collect --stats`` reports.

    ``store_errors`` counts failed write attempts (each retried: see ``spool``);
    ``rows_lost`` rows dropped past the write buffer's bounds, ``rows_rejected`` single
    rows the store kept refusing; ``workers`` what each worker holds now (templates,
    waiting bytes, exporters, memory) and how many exporters it evicted."""

    exporters: dict[str, ExporterStats] = field(default_factory=dict)
    socket_drops: dict[int, int] = field(default_factory=dict)  # per listening port
    rows_stored: int = 0
    batches_stored: int = 0
    store_errors: int = 0
    uptime_s: float = 0.0
    workers: dict[int, dict[str, int]] = field(default_factory=dict)
    spool: SpoolStats = field(default_factory=SpoolStats)
    rows_recovered: int = 0  # rows a crashed run left behind, stored by this one
    fresh_rows: int = 0  # stored rows in fresh segments the store has not compacted yet

    @property
    def rows_lost(self) -> int:
        return self.spool.rows_lost

    def to_json(self) -> dict[str, object]:
        sp = self.spool
        return {
            "exporters": {ex: dataclasses.asdict(st) for ex, st in sorted(self.exporters.items())},
            "socket_drops": {str(p): n for p, n in sorted(self.socket_drops.items())},
            "rows_stored": self.rows_stored,
            "batches_stored": self.batches_stored,
            "store_errors": self.store_errors,
            "write_retries": sp.write_retries,
            "rows_spilled": sp.rows_spilled,
            "rows_lost": sp.rows_lost,
            "rows_rejected": sp.rows_rejected,
            "rows_dropped_by_store": sp.rows_dropped,
            "rows_recovered": self.rows_recovered,
            "fresh_rows": self.fresh_rows,
            "buffered_rows": sp.queued_rows,
            "spilled_bytes": sp.spilled_bytes,
            "workers": {str(w): dict(g) for w, g in sorted(self.workers.items())},
            "uptime_s": round(self.uptime_s, 3),
            "totals": dataclasses.asdict(self.total()),
        }

    def total(self) -> ExporterStats:
        return _sum(self.exporters.values())


def _sum(items: Iterable[ExporterStats]) -> ExporterStats:
    acc = ExporterStats()
    for st in items:
        for name in EXPORTER_FIELDS:
            setattr(acc, name, getattr(acc, name) + getattr(st, name))
    return acc


def socket_inode(sock: socket.socket) -> int:
    return os.fstat(sock.fileno()).st_ino


def read_udp_drops(paths: Iterable[Path] = PROC_UDP) -> dict[int, int]:
    """Kernel drop counter of every UDP socket, by inode."""
    drops: dict[int, int] = {}
    for path in paths:
        try:
            lines = path.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 13:
                continue
            try:
                drops[int(cols[9])] = int(cols[12])
            except ValueError:
                continue
    return drops


def socket_drops(sockets: Mapping[int, Iterable[socket.socket]]) -> dict[int, int]:
    """Kernel drops summed per listening port, for the given sockets (port -> sockets)."""
    table = read_udp_drops()
    out: dict[int, int] = {}
    for port, socks in sockets.items():
        out[port] = sum(table.get(socket_inode(s), 0) for s in socks if s.fileno() >= 0)
    return out


class CollectCollector(Collector):
    """Prometheus view of the latest snapshot (counters named ``shadowcast_collect_*``)."""

    def __init__(self, snapshot: Callable[[], CollectSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        snap = self._snapshot()
        for name in EXPORTER_FIELDS:
            fam = CounterMetricFamily(
                f"shadowcast_collect_{name}",
                f"flow-export {name.replace('_', ' ')} per exporter",
                labels=["exporter"],
            )
            for ex, st in sorted(snap.exporters.items()):
                fam.add_metric([ex], float(getattr(st, name)))
            yield fam
        drops = CounterMetricFamily(
            "shadowcast_collect_socket_drops",
            "datagrams the kernel dropped on the listening sockets",
            labels=["port"],
        )
        for port, n in sorted(snap.socket_drops.items()):
            drops.add_metric([str(port)], float(n))
        yield drops
        yield CounterMetricFamily(
            "shadowcast_collect_stored_rows", "flow rows written to the store", snap.rows_stored
        )
        yield CounterMetricFamily(
            "shadowcast_collect_store_batches", "batches written to the store", snap.batches_stored
        )
        yield CounterMetricFamily(
            "shadowcast_collect_store_errors", "failed store write attempts", snap.store_errors
        )
        sp = snap.spool
        for name, value, text in (
            ("write_retries", sp.write_retries, "store writes retried after a failure"),
            ("rows_spilled", sp.rows_spilled, "rows that waited on disk for the store"),
            ("rows_lost", sp.rows_lost, "rows dropped: write buffer and spill folder full"),
            ("rows_rejected", sp.rows_rejected, "single rows the store kept refusing"),
            ("rows_recovered", snap.rows_recovered, "rows a crashed run left, stored"),
        ):
            yield CounterMetricFamily(f"shadowcast_collect_{name}", text, value)
        yield GaugeMetricFamily(
            "shadowcast_collect_buffered_rows", "rows waiting for the store", sp.queued_rows
        )
        yield GaugeMetricFamily(
            "shadowcast_collect_spilled_bytes", "bytes waiting on disk", sp.spilled_bytes
        )
        yield GaugeMetricFamily(
            "shadowcast_collect_store_fresh_rows",
            "stored rows in fresh segments not compacted into Parquet yet",
            snap.fresh_rows,
        )
        names = sorted({k for g in snap.workers.values() for k in g})
        for key in names:
            cls = CounterMetricFamily if key in WORKER_COUNTERS else GaugeMetricFamily
            wfam: CounterMetricFamily | GaugeMetricFamily = cls(
                f"shadowcast_collect_worker_{key}",
                f"per decoding worker: {key.replace('_', ' ')}",
                labels=["worker"],
            )
            for wid, g in sorted(snap.workers.items()):
                if key in g:
                    wfam.add_metric([str(wid)], float(g[key]))
            yield wfam
        yield GaugeMetricFamily(
            "shadowcast_collect_uptime_seconds",
            "seconds since the collector started",
            snap.uptime_s,
        )


def make_registry(snapshot: Callable[[], CollectSnapshot]) -> CollectorRegistry:
    reg = CollectorRegistry(auto_describe=False)
    reg.register(CollectCollector(snapshot))
    return reg
