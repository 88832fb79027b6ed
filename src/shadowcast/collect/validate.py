"""Checks on decoded records, at the decoders' edge: one bad record never costs its batch.

A decoder turns whatever the wire says into columns; a record whose values cannot be a
flow (a start in year 144,000, an end before its start, 10 MB per packet) would poison the
store write of everything decoded with it. :func:`check_records` finds them with numpy
masks over the whole batch and returns the batch without them, with their count per
exporter (``invalid_records``) and per reason (for the log).

Times are checked against the receive time, so a replay of old data needs
``max_record_age_s=None``; with both sides lifted the range is still bounded to what the
store can hold (1970 to 9999).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute

pc: Any = pyarrow.compute

MAX_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999, the store's last representable time
MAX_RECORD_PACKETS = 1 << 40  # a trillion packets in one record is a decoding accident
MAX_RECORD_BYTES = 1 << 56  # with no packet count to divide by (64 PiB)
REASONS = ("too_old", "in_future", "ends_before_start", "bytes_per_packet", "too_many")


@dataclass(frozen=True, slots=True)
class RecordChecks:
    """Limits for :func:`check_records` (``collect`` settings of the same names)."""

    max_record_age_s: float | None = 365 * 86400.0
    max_clock_skew_s: float | None = 86400.0
    max_packet_bytes: int = 65_664


@dataclass(slots=True)
class Rejected:
    """Records refused in one batch, by exporter and by reason (a record counts once per
    exporter, and under each reason it fails)."""

    by_exporter: dict[str, int]
    by_reason: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_exporter.values())


def _ints(col: pa.ChunkedArray, dtype: str) -> npt.NDArray[Any]:
    """The column's values as ``dtype`` (nulls as 0), without a copy where it can."""
    arr = col.cast(pa.int64()) if pa.types.is_timestamp(col.type) else col
    if arr.null_count:
        arr = pc.fill_null(arr, 0)
    return np.asarray(arr.to_numpy(), dtype=dtype)


def masks(
    table: pa.Table, received: float, checks: RecordChecks
) -> Mapping[str, npt.NDArray[np.bool_]]:
    """Per reason, which rows fail it (a time or count that is null fails)."""
    now_ms = int(received * 1000)
    lo = 0 if checks.max_record_age_s is None else now_ms - int(checks.max_record_age_s * 1000)
    hi = MAX_MS if checks.max_clock_skew_s is None else now_ms + int(checks.max_clock_skew_s * 1000)
    start = table.column("time_start")
    end = table.column("time_end")
    nulls = np.zeros(table.num_rows, dtype=bool)
    if start.null_count or end.null_count:
        either = pc.or_(pc.is_null(start), pc.is_null(end))
        nulls = np.asarray(either.to_numpy(zero_copy_only=False), dtype=bool)
    ts = _ints(start, "int64")
    te = _ints(end, "int64")
    byts = _ints(table.column("bytes"), "uint64")
    pkts = _ints(table.column("packets"), "uint64")
    per = np.uint64(checks.max_packet_bytes)
    # bytes / packets > max  <=>  ceil(bytes / max) > packets (no overflow)
    ceil = byts // per + (byts % per != 0)
    return {
        "too_old": (ts < max(lo, 0)) | nulls,
        "in_future": (te > min(hi, MAX_MS)) | (ts > min(hi, MAX_MS)),
        "ends_before_start": te < ts,
        "bytes_per_packet": ((pkts > 0) & (ceil > pkts)) | ((byts > 0) & (byts < pkts)),
        "too_many": (pkts > MAX_RECORD_PACKETS) | ((pkts == 0) & (byts > MAX_RECORD_BYTES)),
    }


def check_records(
    table: pa.Table, received: float, checks: RecordChecks
) -> tuple[pa.Table, Rejected | None]:
    """``table`` without the records that fail a check; None when all pass."""
    if table.num_rows == 0:
        return table, None
    fails = masks(table, received, checks)
    bad = np.zeros(table.num_rows, dtype=bool)
    for m in fails.values():
        bad |= m
    if not bad.any():
        return table, None
    exporters = table.column("exporter").filter(pa.array(bad))
    counts = pc.value_counts(exporters).to_pylist()
    rejected = Rejected(
        {str(c["values"]): int(c["counts"]) for c in counts},
        {r: int(m.sum()) for r, m in fails.items() if m.any()},
    )
    return table.filter(pa.array(~bad)), rejected
