"""Hypothesis fuzzing of every decoder: random, truncated and mutated packets.

Never an exception out of ``decode``, never a hang (each example is bounded by the
hypothesis deadline), and memory stays bounded under floods of templates and of data
waiting for templates.
"""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shadowcast.collect.decoders import DECODERS, FlowDecoder
from shadowcast.collect.nfv9ipfix import NfV9IpfixDecoder
from shadowcast.collect.synth import build_ipfix, build_stream, build_v9, synth_flows
from shadowcast.collect.wire import data_set, ipfix_message, template_set
from shadowcast.records import FLOW_SCHEMA

FUZZ = settings(
    max_examples=150,
    deadline=5000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def _pool() -> list[bytes]:
    flows = synth_flows(40, seed=9)
    pool = build_stream("v5", 40, seed=9)[:1] + build_stream("sflow", 20, seed=9)[:1]
    pool += build_v9(flows, template_every=1)[:1]
    pool += build_ipfix(flows, template_every=1)[:1]
    pool += build_ipfix(flows, template_every=1, app_mode="name")[:1]
    varlen = template_set(2, 300, [(8, 4), (96, 0xFFFF), (82, 0xFFFF), (1, 4), (7, 2, 9)])
    rec = b"\x0a\0\0\1" + b"\x03abc" + b"\xff\x00\x05hello" + b"\0\0\0\x10" + b"\0\x50"
    pool.append(ipfix_message([varlen, data_set(300, rec * 3, pad=False)]))
    return pool


POOL = _pool()
VERSIONS = [b"\x00\x05", b"\x00\x09", b"\x00\x0a", b"\x00\x00\x00\x05"]


def _check(dec: FlowDecoder, packets: list[bytes]) -> None:
    table = dec.decode([(p, "192.0.2.1") for p in packets], 1_700_000_000.0)
    assert table.schema.equals(FLOW_SCHEMA)
    st_ = dec.stats.of("192.0.2.1")
    assert st_.packets >= len(packets)


@FUZZ
@given(st.sampled_from(VERSIONS), st.binary(max_size=2048))
def test_random_bytes(prefix: bytes, body: bytes) -> None:
    _check(FlowDecoder(), [prefix + body, body])


@FUZZ
@given(st.sampled_from(POOL), st.integers(min_value=0, max_value=4096))
def test_truncated_valid_packets(pkt: bytes, cut: int) -> None:
    dec = FlowDecoder()
    _check(dec, [pkt[: cut % (len(pkt) + 1)], pkt])


@FUZZ
@given(
    st.sampled_from(POOL),
    st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), min_size=1, max_size=8),
    st.booleans(),
)
def test_mutated_valid_packets(pkt: bytes, edits: list[tuple[int, int]], flip: bool) -> None:
    buf = bytearray(pkt)
    for pos, val in edits:
        i = pos % len(buf)
        buf[i] = buf[i] ^ (1 << (val % 8)) if flip else val
    dec = FlowDecoder()
    # the mutated packet may install a broken template; the valid ones after it must not crash
    _check(dec, [bytes(buf), *POOL])


@pytest.mark.parametrize("name", sorted(DECODERS))
def test_each_registered_decoder_survives_garbage(name: str) -> None:
    dec = DECODERS[name]()
    for pkt in POOL:
        for cut in range(0, len(pkt), 7):
            t = dec.decode([(pkt[:cut], "x"), (pkt[cut:], "x")], 0.0)
            assert t.schema.equals(FLOW_SCHEMA)


@settings(max_examples=20, deadline=5000)
@given(st.integers(min_value=1, max_value=1 << 16))
def test_template_flood_memory_bounded(domain_seed: int) -> None:
    dec = NfV9IpfixDecoder(max_templates_per_exporter=64, pending_max=16)
    msgs = []
    for i in range(600):
        fields = [(1, 8), (2, 4 + i % 5), (8, 4), (1000 + i, 2, 42)]
        dom = (domain_seed + i) % 7
        msgs.append(ipfix_message([template_set(2, 256 + i, fields)], domain=dom))
        # data for templates that never come
        msgs.append(ipfix_message([data_set(40000 + i, b"\0" * 20)], domain=dom))
    dec.decode([(m, "192.0.2.1") for m in msgs], 0.0)
    st_ = dec.stats.of("192.0.2.1")
    assert dec.templates("192.0.2.1") == 64
    assert st_.templates_evicted == 600 - 64
    assert dec.pending_count() <= 16
    assert st_.template_misses == 600


def test_huge_template_is_refused() -> None:
    fields = [(1000 + i, 1) for i in range(2000)]
    body = struct.pack("!HH", 256, len(fields)) + b"".join(struct.pack("!HH", *f) for f in fields)
    msg = ipfix_message([struct.pack("!HH", 2, 4 + len(body)) + body])
    dec = NfV9IpfixDecoder()
    dec.decode([(msg, "x")], 0.0)
    assert dec.templates("x") == 0
    st = dec.stats.of("x")  # refused as unsupported (not malformed), and said so
    assert (st.unsupported_templates, st.decode_errors) == (1, 0)
