"""Hypothesis fuzzing of every decoder: random, truncated and mutated packets.

Never an exception out of ``decode`` (each decoder is also driven directly, without
FlowDecoder's last-resort handler, which must never fire), never a hang (pytest-timeout bounds
a test), and memory stays bounded under floods of templates and of data waiting for
templates. The pcap reader gives DataError or packets.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from hostile import EDITS, Edit, mutate
from shadowcast.collect.decoders import DECODERS, FlowDecoder
from shadowcast.collect.nfv9ipfix import NfV9IpfixDecoder
from shadowcast.collect.pcapfile import read_udp
from shadowcast.collect.synth import build_ipfix, build_stream, build_v9, synth_flows
from shadowcast.collect.wire import data_set, ipfix_message, template_set
from shadowcast.errors import DataError
from shadowcast.records import FLOW_SCHEMA

pytestmark = pytest.mark.fuzz

# examples and deadline come from the hypothesis profile (tests/conftest.py)
FUZZ = settings(
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
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


@pytest.fixture(autouse=True)
def _no_decoder_bug(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """FlowDecoder's last-resort handler hides a decoder's exception: it must not fire."""
    with caplog.at_level(logging.ERROR, logger="shadowcast.collect.decoders"):
        yield
    assert not [r for r in caplog.records if "failed on a batch" in r.getMessage()]


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


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
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


@FUZZ
@given(st.sampled_from(sorted(DECODERS)), st.sampled_from(POOL), EDITS)
def test_each_decoder_directly_under_hostile_edits(
    name: str, pkt: bytes, edits: list[Edit]
) -> None:
    dec = DECODERS[name]()  # no FlowDecoder around it: an exception would escape here
    for batch in ([mutate(pkt, edits)], [mutate(pkt, edits), *POOL]):
        t = dec.decode([(p, "192.0.2.9") for p in batch], 1_700_000_000.0)
        assert t.schema.equals(FLOW_SCHEMA)


def _pcap(payloads: list[bytes]) -> bytes:
    """A classic little-endian Ethernet pcap of IPv4/UDP datagrams carrying ``payloads``."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for i, data in enumerate(payloads):
        udp = struct.pack("!HHHH", 40000 + i, 2055, 8 + len(data), 0) + data
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), i, 0, 64, 17, 0,
                         bytes([192, 0, 2, 1]), bytes([192, 0, 2, 2])) + udp  # fmt: skip
        frame = b"\x00" * 12 + b"\x08\x00" + ip
        out.append(struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame)
    return b"".join(out)


PCAP = _pcap(POOL[:3])


def test_the_pcap_sample_reads() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "x.pcap"
        p.write_bytes(PCAP)
        got = list(read_udp(p))
    assert [g.payload for g in got] == POOL[:3] and got[0].src == "192.0.2.1"


@FUZZ
@given(EDITS)
@example([("put", 20, 0, b"\x65")]).via("raw IP link type")
@example([("put", 24 + 16 + 14, 0, b"\x60")]).via("IPv6 version on an IPv4 header")
def test_pcap_reader_under_hostile_edits(tmp_path: Path, edits: list[Edit]) -> None:
    p = tmp_path / "x.pcap"
    p.write_bytes(mutate(PCAP, edits))
    try:
        packets = list(read_udp(p))
    except DataError as exc:
        assert str(p) in str(exc) and "\n" not in str(exc)
    else:
        FlowDecoder().decode([(u.payload, u.src) for u in packets], 1_700_000_000.0)
