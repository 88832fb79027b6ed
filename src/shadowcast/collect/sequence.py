"""Sequence-number tracking: gaps -> estimated lost records, per (exporter, domain)."""

from __future__ import annotations

from shadowcast.collect.base import ExporterStats

_MOD = 1 << 32
_WINDOW = 1 << 20  # a jump larger than this is a restart or reordering, not a loss
# A packet at most this far behind the expectation arrived late (reordered): the
# expectation stays. Further back, the exporter restarted (its counter started again):
# the expectation follows it, or every later packet would count as late, miss the
# decoders' in-sequence fast path, and no gap would be seen until the counter caught up.
_LATE = 1 << 12


class SequenceTracker:
    """Expected next sequence number per scope; bounded by the number of scopes seen."""

    def __init__(self, max_scopes: int = 65536) -> None:
        self._next: dict[tuple[str, int], int] = {}
        self.max_scopes = max_scopes
        # the decoders' fast path reads and advances this directly when in sequence
        self.expected = self._next

    def check(
        self, st: ExporterStats, key: tuple[str, int], seq: int, advance: int, per_unit: int
    ) -> None:
        """``advance``: how far this packet moves the counter (records, or 1 packet for v9);
        ``per_unit``: records lost per missing unit (1 for record counters)."""
        expected = self._next.get(key)
        if expected is not None and seq != expected:
            gap = (seq - expected) % _MOD
            if gap < _WINDOW:
                st.sequence_gaps += 1
                st.lost_records_estimate += gap * per_unit
            elif (expected - seq) % _MOD < _LATE:
                return  # late (reordered) packet: keep the expectation
        if expected is None and len(self._next) >= self.max_scopes:
            self._next.clear()
        self._next[key] = (seq + advance) % _MOD

    def forget(self, key: tuple[str, int]) -> None:
        """Drop the expectation (the packet's record count was not known in full)."""
        self._next.pop(key, None)
