"""The Decoder protocol and the column batch decoders produce.

A decoder turns a batch of UDP payloads from exporters into columns (numpy arrays), one
entry per flow record, with the names of ``records.FLOW_SCHEMA``. It never raises on bad
input: malformed packets are counted in its ``stats`` and dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shadowcast.records import FLOW_SCHEMA

Columns = dict[str, npt.NDArray[np.generic]]


@dataclass(slots=True)
class ExporterStats:
    """Per-exporter accounting; every counter only grows."""

    packets: int = 0
    records: int = 0
    bytes: int = 0
    decode_errors: int = 0
    template_misses: int = 0
    templates_evicted: int = 0
    sequence_gaps: int = 0
    lost_records_estimate: int = 0
    unknown_sampling: int = 0
    # Why a datagram gave no flow (besides decode_errors and template_misses):
    template_records: int = 0  # (options) template records read, withdrawals included
    options_records: int = 0  # options data records read (sampler tables, names, boot time)
    counter_samples: int = 0  # sFlow counter samples read (interface counters, no flow)
    unsupported_sets: int = 0  # NetFlow v9 / IPFIX sets with a reserved set id, skipped
    unsupported_templates: int = 0  # templates refused: no usable field, too many fields,
    #   variable-length fields in NetFlow v9
    unsupported_samples: int = 0  # sFlow samples or flow samples we cannot use (drop
    #   notifications, unknown formats, headers of an unknown protocol)
    empty_datagrams: int = 0  # well-formed datagrams that carried nothing of the above
    # Flow records decoded but without an octet or packet counter we know (bytes = 0).
    records_without_counters: int = 0
    invalid_records: int = 0  # decoded, then refused by the record checks (collect.validate)
    pending_dropped: int = 0  # data sets dropped unread: no template in time, or no room
    rejected_packets: int = 0  # from sources outside collect.allow_exporters ("other" only)

    def accounted(self) -> int:
        """Flow records plus every reason counted for a datagram to give none; a datagram
        that leaves this unchanged went unexplained (the decoders never let that happen)."""
        return self.records + sum(int(getattr(self, name)) for name in NO_FLOW_REASONS)


NO_FLOW_REASONS: tuple[str, ...] = (
    "decode_errors",
    "template_misses",
    "template_records",
    "options_records",
    "counter_samples",
    "unsupported_sets",
    "unsupported_templates",
    "unsupported_samples",
    "empty_datagrams",
)


@dataclass(slots=True)
class DecoderStats:
    exporters: dict[str, ExporterStats] = field(default_factory=dict)

    def of(self, exporter: str) -> ExporterStats:
        st = self.exporters.get(exporter)
        if st is None:
            st = self.exporters[exporter] = ExporterStats()
        return st


class Decoder(Protocol):
    """``decode`` takes (payload, exporter address) pairs received at ``received``
    (Unix seconds) and returns flow columns; counts errors instead of raising. A decoder
    that also has ``decode_datagrams`` (:class:`~datagrams.Datagrams`, the same result) is
    given the worker's batches as they were received, without a Python object each."""

    stats: DecoderStats

    def decode(self, packets: Sequence[tuple[bytes, str]], received: float) -> pa.Table: ...


def empty_flows() -> pa.Table:
    return FLOW_SCHEMA.empty_table()
