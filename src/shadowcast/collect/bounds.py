"""What bounds a worker's memory however many sources send to it.

The decoders bound their state per exporter (templates, waiting data sets) and in all
(``max_templates``, ``max_pending_bytes``); here the worker bounds the number of exporters
it keeps anything for. :class:`ExporterBounds` sees which sources each batch came from
(least recently heard first) and, past ``max_exporters``, evicts the oldest: the decoder
forgets its state and its counters fold into the exporter named :data:`OTHER`, so totals
stay whole and no address ever costs an entry of its own for long. With an allow-list
(``collect.allow_exporters``), datagrams from other sources are dropped before decoding
and counted as ``rejected_packets`` of :data:`OTHER`.
"""

from __future__ import annotations

import ipaddress
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import fields
from typing import Protocol, runtime_checkable

import numpy as np

from shadowcast.collect.base import DecoderStats, ExporterStats
from shadowcast.collect.datagrams import Datagrams

OTHER = "other"
_ALLOW_CACHE = 65536  # verdicts remembered per worker (cleared when full)
_PAGE = os.sysconf("SC_PAGE_SIZE")


@runtime_checkable
class Forgetful(Protocol):
    """A decoder whose per-exporter state the worker can bound (FlowDecoder is one)."""

    def forget(self, exporter: str) -> None: ...

    def expire(self, now: float) -> None: ...

    def usage(self) -> dict[str, int]: ...


class AllowList:
    """Source addresses inside any of ``prefixes`` (everything when empty)."""

    def __init__(self, prefixes: Sequence[str]) -> None:
        self.networks = [ipaddress.ip_network(p, strict=False) for p in prefixes]
        self._seen: dict[str, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.networks)

    def allows(self, host: str) -> bool:
        ok = self._seen.get(host)
        if ok is None:
            try:
                addr = ipaddress.ip_address(host)
            except ValueError:
                ok = False
            else:
                ok = any(addr in net for net in self.networks)
            if len(self._seen) >= _ALLOW_CACHE:
                self._seen.clear()
            self._seen[host] = ok
        return ok


class ExporterBounds:
    """Admission (allow-list) and least-recently-heard eviction of exporters."""

    def __init__(self, max_exporters: int, allow: Sequence[str] = ()) -> None:
        self.max_exporters = max(1, max_exporters)
        self.allow = AllowList(allow)
        self.evicted = 0
        self._heard: OrderedDict[str, None] = OrderedDict()

    def admit(
        self, packets: list[tuple[bytes, str]], stats: DecoderStats
    ) -> list[tuple[bytes, str]]:
        """The packets from allowed sources; the others counted in ``stats`` as OTHER."""
        if not self.allow:
            return packets
        allows = self.allow.allows
        kept = [p for p in packets if allows(p[1])]
        if len(kept) < len(packets):
            other = stats.of(OTHER)
            other.rejected_packets += len(packets) - len(kept)
            other.packets += len(packets) - len(kept)
            other.bytes += sum(len(p[0]) for p in packets if not allows(p[1]))
        return kept

    def admit_datagrams(self, dg: Datagrams, stats: DecoderStats) -> Datagrams:
        """:meth:`admit` for a batch: one verdict per distinct source."""
        if not self.allow or not len(dg):
            return dg
        verdict = np.array([self.allow.allows(h) for h in dg.exporters], dtype=bool)
        ok = verdict[dg.exporter]
        if ok.all():
            return dg
        other = stats.of(OTHER)
        refused = int((~ok).sum())
        other.rejected_packets += refused
        other.packets += refused
        other.bytes += int(dg.lengths[~ok].sum())
        return dg.take(ok)

    def heard(self, hosts: Iterable[str], stats: DecoderStats, decoder: object) -> list[str]:
        """Mark ``hosts`` as just heard; evict the least recently heard past the bound
        (their state dropped, their counters folded into OTHER). Returns the evicted."""
        order = self._heard
        for host in hosts:
            if host in order:
                order.move_to_end(host)
            else:
                order[host] = None
        out: list[str] = []
        while len(order) > self.max_exporters:
            host, _ = order.popitem(last=False)
            if isinstance(decoder, Forgetful):
                decoder.forget(host)
            fold(stats, host)
            out.append(host)
        self.evicted += len(out)
        return out

    def count(self) -> int:
        return len(self._heard)


_FIELDS = tuple(f.name for f in fields(ExporterStats))


def fold(stats: DecoderStats, exporter: str) -> None:
    """Move ``exporter``'s counters into OTHER's (totals unchanged)."""
    st = stats.exporters.pop(exporter, None)
    if st is None:
        return
    other = stats.of(OTHER)
    for name in _FIELDS:
        setattr(other, name, getattr(other, name) + getattr(st, name))


def process_memory() -> tuple[int, int]:
    """This process's resident and peak resident set sizes, in bytes (Linux)."""
    rss = peak = 0
    try:
        with open("/proc/self/statm") as f:
            rss = int(f.read().split()[1]) * _PAGE
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    peak = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        pass
    return rss, peak
