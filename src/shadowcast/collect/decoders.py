"""The decoder registry and :class:`FlowDecoder`, which dispatches on the version field.

``DECODERS`` maps a protocol name to its decoder class; every class takes
``(stats=None, sampling_overrides=None)`` and implements :class:`base.Decoder`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, Final

import pyarrow as pa

from shadowcast.collect.base import Decoder, DecoderStats
from shadowcast.collect.columns import concat
from shadowcast.collect.netflow5 import NetflowV5Decoder
from shadowcast.collect.nfv9ipfix import NfV9IpfixDecoder
from shadowcast.collect.sflow import SFlowDecoder

log = logging.getLogger(__name__)

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
        groups: dict[int, list[tuple[bytes, str]]] = {}
        order: list[Decoder] = []
        for data, exporter in packets:
            proto = sniff(data)
            if proto is None:
                st = self.stats.of(exporter)
                st.packets += 1
                st.bytes += len(data)
                st.decode_errors += 1
                continue
            dec = self._by_proto[proto]
            lst = groups.get(id(dec))
            if lst is None:
                lst = groups[id(dec)] = []
                order.append(dec)
            lst.append((data, exporter))
        tables = []
        for dec in order:
            batch = groups[id(dec)]
            try:
                tables.append(dec.decode(batch, received))
            except Exception:  # last resort: a decoder bug must not stop the collector
                log.exception("decoder %s failed on a batch of %d packets", dec, len(batch))
                for _, exporter in batch:
                    self.stats.of(exporter).decode_errors += 1
        return concat(tables)
