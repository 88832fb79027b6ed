"""The decoder registry and :class:`FlowDecoder`, which dispatches on the version field.

``DECODERS`` maps a protocol name to its decoder class; every class takes
``(stats=None, sampling_overrides=None)`` and implements :class:`base.Decoder`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

import numpy as np
import pyarrow as pa

from shadowcast.collect.base import Decoder, DecoderStats
from shadowcast.collect.columns import concat
from shadowcast.collect.datagrams import Datagrams, gather, pair_batches
from shadowcast.collect.netflow5 import NetflowV5Decoder
from shadowcast.collect.nfv9ipfix import NfV9IpfixDecoder
from shadowcast.collect.sflow import SFlowDecoder

log = logging.getLogger(__name__)
Walk = Callable[[Sequence[tuple[bytes, str]], float], pa.Table]

DECODERS: Final[dict[str, type[Any]]] = {
    "netflow5": NetflowV5Decoder,
    "netflow9": NfV9IpfixDecoder,
    "ipfix": NfV9IpfixDecoder,
    "sflow": SFlowDecoder,
}


def sniff(data: bytes) -> str | None:
    """Which protocol a datagram is, from its version field (None: unknown)."""
    if len(data) < 4:
        return None
    if data[:4] == b"\x00\x00\x00\x05":
        return "sflow"
    return _VERSIONS.get((data[0] << 8) | data[1])


_VERSIONS: Final = {5: "netflow5", 9: "netflow9", 10: "ipfix"}


class FlowDecoder:
    """Any of NetFlow v5 / v9, IPFIX and sFlow v5 in one batch; one shared ``stats``.

    ``nf_options`` go to :class:`NfV9IpfixDecoder` (``max_templates_per_exporter``,
    ``template_ttl``, ``pending_max``, ``pending_age``, ``max_templates``, ``pending_bytes``).
    v9 and IPFIX share one template cache keyed (exporter, domain, template id): an
    exporter speaks one of them.
    """

    def __init__(
        self,
        stats: DecoderStats | None = None,
        sampling_overrides: Mapping[str, int] | None = None,
        **nf_options: Any,
    ) -> None:
        self.stats = stats if stats is not None else DecoderStats()
        self.v5 = NetflowV5Decoder(self.stats, sampling_overrides)
        self.nf = NfV9IpfixDecoder(self.stats, sampling_overrides, **nf_options)
        self.sflow = SFlowDecoder(self.stats, sampling_overrides)
        self._by_proto: dict[str, Decoder] = {
            "netflow5": self.v5,
            "netflow9": self.nf,
            "ipfix": self.nf,
            "sflow": self.sflow,
        }

    def forget(self, exporter: str) -> None:
        """Drop the state held for ``exporter`` (templates, waiting data, options)."""
        self.nf.forget(exporter)

    def expire(self, now: float) -> None:
        """Drop templates and waiting data sets past their age (on a timer)."""
        self.nf.expire(now)

    def usage(self) -> dict[str, int]:
        """What the decoder holds now: templates, waiting data sets and their bytes."""
        p = self.nf.pending
        return {
            "templates": self.nf.cache.total(),
            "pending_sets": p.count(),
            "pending_bytes": p.bytes,
        }

    def counters(self) -> pa.Table:
        """sFlow interface counters seen since the last call (``sflow.COUNTER_SCHEMA``)."""
        return self.sflow.counters()

    def decode(self, packets: Sequence[tuple[bytes, str]], received: float) -> pa.Table:
        """``packets`` in batches (:func:`datagrams.pair_batches`) through
        :meth:`decode_datagrams`."""
        return concat([self.decode_datagrams(dg, received) for dg in pair_batches(packets)])

    def decode_datagrams(self, dg: Datagrams, received: float) -> pa.Table:
        """One batch: NetFlow v9 / IPFIX through the batched fast path, sFlow batched,
        NetFlow v5 from the payloads (rows in that order); unknown versions counted as
        decode errors."""
        head = gather(dg, 0, 4).astype(np.int64)
        version = (head[:, 0] << 8) | head[:, 1]
        sflow = (version == 0) & (head[:, 2] == 0) & (head[:, 3] == 5) & (dg.lengths >= 4)
        nf = ((version == 9) | (version == 10)) & (dg.lengths >= 4)
        v5 = (version == 5) & (dg.lengths >= 4)
        bad = ~(sflow | nf | v5)
        if bad.any():
            odd = dg.take(bad)
            for host, k in odd.per_exporter().items():
                st = self.stats.of(host)
                st.packets += k
                st.decode_errors += k
            for host, k in odd.per_exporter(odd.lengths).items():
                self.stats.of(host).bytes += k
        tables = []
        for mask, run in (
            (nf, self.nf.decode_datagrams),
            (sflow, self.sflow.decode_datagrams),
            (v5, lambda d, r: self.v5.decode(d.pairs(), r)),
        ):
            if not mask.any():
                continue
            part = dg.take(mask)
            try:
                tables.append(run(part, received))
            except Exception:  # last resort: a decoder bug must not stop the collector
                log.exception("decoder failed on a batch of %d datagrams", len(part))
                for host, k in part.per_exporter().items():
                    self.stats.of(host).decode_errors += k
        return concat(tables)

    def walk(self, packets: Sequence[tuple[bytes, str]], received: float) -> pa.Table:
        """Datagram by datagram, dispatched on the version: the reference the batched
        :meth:`decode_datagrams` is tested against (same rows, counters and state)."""
        walks: dict[str, tuple[int, Walk]] = {
            "netflow9": (0, self.nf.decode),
            "ipfix": (0, self.nf.decode),
            "sflow": (1, self.sflow.walk),
            "netflow5": (2, self.v5.decode),
        }
        groups: dict[int, tuple[Walk, list[tuple[bytes, str]]]] = {}
        for data, exporter in packets:
            proto = sniff(data)
            if proto is None:
                st = self.stats.of(exporter)
                st.packets += 1
                st.bytes += len(data)
                st.decode_errors += 1
                continue
            key, fn = walks[proto]
            groups.setdefault(key, (fn, []))[1].append((data, exporter))
        return concat([fn(batch, received) for _, (fn, batch) in sorted(groups.items())])
