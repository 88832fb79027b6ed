"""FlowDecoder: one batch of mixed protocols, one shared stats object, unknown versions."""

from __future__ import annotations

from shadowcast.collect.base import DecoderStats
from shadowcast.collect.decoders import FlowDecoder, sniff
from shadowcast.collect.synth import build_stream
from shadowcast.records import FLOW_SCHEMA


def test_mixed_batch_is_dispatched_by_version() -> None:
    streams = {p: build_stream(p, 60, seed=2) for p in ("v5", "v9", "ipfix", "sflow")}
    assert {p: sniff(s[0]) for p, s in streams.items()} == {
        "v5": "netflow5",
        "v9": "netflow9",
        "ipfix": "ipfix",
        "sflow": "sflow",
    }
    batch = [(pkt, f"192.0.2.{i}") for i, s in enumerate(streams.values()) for pkt in s]
    batch.append((b"\x00\x07" + b"\x00" * 40, "192.0.2.99"))  # NetFlow v7: not supported
    stats = DecoderStats()
    dec = FlowDecoder(stats)
    t = dec.decode(batch, 1_700_000_000.0)
    assert t.schema.equals(FLOW_SCHEMA)
    assert t.num_rows == 4 * 60
    assert dec.stats is stats
    assert {e: s.records for e, s in stats.exporters.items()} == {
        "192.0.2.0": 60,
        "192.0.2.1": 60,
        "192.0.2.2": 60,
        "192.0.2.3": 60,
        "192.0.2.99": 0,
    }
    assert stats.of("192.0.2.99").decode_errors == 1
    assert dec.counters().num_rows == 1  # the sFlow stream's counter sample
