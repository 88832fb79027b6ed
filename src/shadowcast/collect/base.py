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
    invalid_records: int = 0  # decoded, then refused by the record checks (collect.validate)
    pending_dropped: int = 0  # data sets dropped unread: no template in time, or no room
    rejected_packets: int = 0  # from sources outside collect.allow_exporters ("other" only)


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
    (Unix seconds) and returns flow columns; counts errors instead of raising."""

    stats: DecoderStats

    def decode(self, packets: Sequence[tuple[bytes, str]], received: float) -> pa.Table: ...


def empty_flows() -> pa.Table:
    return FLOW_SCHEMA.empty_table()
