"""The batched decoders (``FlowDecoder.decode_datagrams``) against the datagram-by-datagram
walks (``FlowDecoder.walk``): the same rows in the same order, the same counters and the
same state afterwards (templates waiting data, sequence numbers, interface counters),
whatever a batch holds: several exporters, gaps, reordering, templates that change or
arrive mid-batch, floods, cut and corrupted datagrams, long sFlow datagrams."""

from __future__ import annotations

import struct

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_vendor_captures import CASES, _mutations, datagrams

from shadowcast.collect import nffast, sflow_batch, tmplsets
from shadowcast.collect.datagrams import Datagrams
from shadowcast.collect.decoders import FlowDecoder
from shadowcast.collect.sflow_synth import counter_sample, datagram, flow_sample
from shadowcast.collect.synth import build_ipfix, build_stream, build_v9, synth_flows
from shadowcast.collect.wire import data_set, encode_records, ipfix_message, template_set, v9_packet

RECEIVED = 1_700_000_000.0
Pairs = list[tuple[bytes, str]]


def assert_same(packets: Pairs, batch: int) -> FlowDecoder:
    """Decode ``packets`` in batches both ways; every table and all state must agree."""
    ref, new = FlowDecoder(), FlowDecoder()
    for i in range(0, max(len(packets), 1), batch):
        part = packets[i : i + batch]
        want = ref.walk(part, RECEIVED + i)
        got = new.decode_datagrams(Datagrams.from_pairs(part), RECEIVED + i)
        assert got.schema.equals(want.schema)
        assert got.equals(want), f"batch at {i}"
    assert new.stats.exporters == ref.stats.exporters
    assert new.nf.seq.expected == ref.nf.seq.expected
    assert new.nf.pending_count() == ref.nf.pending_count()
    assert new.nf.cache.total() == ref.nf.cache.total()
    assert new.sflow.seq == ref.sflow.seq
    assert new.counters().equals(ref.counters())
    return new


def _interleave(streams: dict[str, list[bytes]]) -> Pairs:
    out: Pairs = []
    for i in range(max(len(s) for s in streams.values())):
        out += [(s[i], host) for host, s in streams.items() if i < len(s)]
    return out


def _mixed() -> Pairs:
    flows = synth_flows(900, seed=5)
    return _interleave(
        {
            "192.0.2.1": build_v9(flows, template_every=7),
            "192.0.2.2": build_ipfix(flows, template_every=5),
            "192.0.2.3": build_ipfix(flows, app_mode="name", template_every=11),
            "2001:db8::4": build_stream("sflow", 900, seed=6),
            "192.0.2.5": build_stream("v5", 900, seed=7),
            "192.0.2.6": build_v9(synth_flows(300, seed=8), template_every=1, source_id=3),
        }
    )


@pytest.mark.parametrize("batch", [1, 7, 64, 1024])
def test_mixed_exporters_in_any_batch_size(batch: int) -> None:
    dec = assert_same(_mixed(), batch)
    assert dec.stats.of("192.0.2.1").records == 900


def test_gaps_reordering_and_duplicates() -> None:
    packets = _mixed()
    del packets[40:43]  # lost
    packets[60], packets[67] = packets[67], packets[60]  # reordered
    packets.insert(90, packets[80])  # duplicated
    packets += packets[100:130]  # replayed late
    for batch in (16, 1024):
        dec = assert_same(packets, batch)
    assert sum(s.sequence_gaps for s in dec.stats.exporters.values()) > 0


def test_template_changes_mid_batch() -> None:
    a = [(8, 4), (12, 4), (1, 4), (2, 4)]
    b = [(1, 8), (8, 4), (12, 4), (7, 2), (11, 2)]
    cols = {
        8: np.arange(1, 4, dtype=">u4").view("V4"),
        12: np.arange(5, 8, dtype=">u4").view("V4"),
        1: np.array([100, 200, 300], np.uint64),
        2: np.array([1, 2, 3], np.uint64),
        7: np.array([10, 20, 30], np.uint16),
        11: np.array([40, 50, 60], np.uint16),
    }
    ra, rb = encode_records(a, cols, 3), encode_records(b, cols, 3)
    msgs = [v9_packet([data_set(256, ra)], seq=0)]  # before any template: waits
    msgs += [v9_packet([template_set(0, 256, a)], seq=1)]
    msgs += [v9_packet([data_set(256, ra)], seq=s) for s in range(2, 6)]
    msgs += [v9_packet([template_set(0, 256, b)], seq=6)]  # same id, other fields
    msgs += [v9_packet([data_set(256, rb)], seq=s) for s in range(7, 10)]
    withdraw = ipfix_message([struct.pack("!HHHH", 2, 8, 256, 0)], seq=3, domain=9)
    ipfix = [ipfix_message([template_set(2, 256, a)], seq=0, domain=9)]
    ipfix += [ipfix_message([data_set(256, ra)], seq=3 * i, domain=9) for i in range(1, 2)]
    ipfix += [withdraw, ipfix_message([data_set(256, ra)], seq=3, domain=9)]
    packets = [(m, "10.0.0.1") for m in msgs] + [(m, "10.0.0.2") for m in ipfix]
    dec = assert_same(packets, 1024)
    t = FlowDecoder()
    rows = t.decode_datagrams(Datagrams.from_pairs(packets), RECEIVED).to_pylist()
    assert [r["bytes"] for r in rows[:15]] == [100, 200, 300] * 5
    assert [r["src_port"] for r in rows[15:24]] == [10, 20, 30] * 3
    assert dec.stats.of("10.0.0.2").template_misses == 1


def test_v9_bytes_after_the_flowset_do_not_shift_records() -> None:
    fields = [(8, 4), (12, 4), (1, 4), (2, 4)]
    cols = {8: np.array([1], ">u4").view("V4"), 12: np.array([2], ">u4").view("V4")}
    cols |= {1: np.array([1500], np.uint64), 2: np.array([3], np.uint64)}
    tmpl = v9_packet([template_set(0, 300, fields)], seq=0)
    body = data_set(300, encode_records(fields, cols, 1), pad=False)
    msgs = [tmpl] + [v9_packet([body], seq=s) + b"\0\0" for s in (1, 2)]  # 2 trailing bytes
    dec = assert_same([(m, "10.0.0.9") for m in msgs], 8)
    t = FlowDecoder().decode([(m, "10.0.0.9") for m in msgs], RECEIVED)
    assert t.column("bytes").to_pylist() == [1500, 1500]
    assert dec.stats.of("10.0.0.9").records == 2


def test_template_flood_takes_the_walk_past_the_relookup_bound() -> None:
    flows = synth_flows(300, seed=2)
    floods = [
        ipfix_message([template_set(2, 256 + k, [(8, 4), (12, 4), (1 + k % 2, 4)])], seq=0)
        for k in range(3 * nffast.MAX_RELOOKUPS)
    ]
    packets = [(m, "10.0.1.1") for m in floods]
    packets = _interleave({"10.0.1.2": build_ipfix(flows, template_every=3)}) + packets
    packets += [(m, "10.0.1.2") for m in build_ipfix(flows, template_every=2)]
    assert_same(packets, 1024)


def _sflow_samples(n: int, seq0: int) -> list[bytes]:
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0, 64, 6, 0, b"\n\0\0\1", b"\n\0\0\2")
    frame = bytes(12) + b"\x08\x00" + ip + bytes(20)
    return [flow_sample(seq0 + i, 100, 1, 2, 60, frame, expanded=i % 2 == 1) for i in range(n)]


def _sflow_records(records: list[bytes], rate: int = 64) -> bytes:
    body = struct.pack("!IIIIIIII", 1, 3, rate, 0, 0, 3, 4, len(records)) + b"".join(records)
    return struct.pack("!II", 1, len(body)) + body


def _rec(fmt: int, payload: bytes) -> bytes:
    return struct.pack("!II", fmt, len(payload)) + payload


def test_sflow_long_datagrams_records_and_odd_samples() -> None:
    agent = bytes([192, 0, 2, 9])
    raw4 = struct.pack("!BBHHHBBH4s4sHH", 0x45, 8, 40, 0, 0, 9, 17, 0, b"\1\2\3\4",
                       b"\5\6\7\x08", 53, 5353)  # fmt: skip
    v4rec = struct.pack("!II4s4sIIII", 40, 6, b"\x0a\0\0\7", b"\x0a\0\0\x08", 1, 2, 0x12, 4)
    v6rec = struct.pack("!II16s16sIIII", 60, 17, bytes(15) + b"\1", bytes(15) + b"\2", 3, 4, 0, 8)
    many = [_rec(1001, bytes(16))] * (sflow_batch.MAX_RECORDS + 2) + [_rec(3, v4rec)]
    samples = [
        _sflow_records([_rec(1, struct.pack("!IIII", 11, 80, 4, len(raw4)) + raw4)]),
        _sflow_records([_rec(3, v4rec), _rec(4, v6rec)]),  # first IP record wins
        _sflow_records([_rec(4, v6rec)]),
        _sflow_records(many),  # more records than the batched walk takes
        _sflow_records([_rec(1, struct.pack("!IIII", 99, 80, 4, 0))]),  # unknown protocol
        _sflow_records([_rec(1, struct.pack("!IIII", 1, 80, 4, 900))]),  # header too long
        _sflow_records([struct.pack("!II", 1, 4000)]),  # record past the sample
        struct.pack("!II", 5, 8) + bytes(8),  # drop notification
        counter_sample(1, 3, 10**9, 5, 6, 7, 8),
        _sflow_records([], rate=0),  # no record, unknown rate
    ]
    long = _sflow_samples(sflow_batch.MAX_SAMPLES + 3, 100)
    dgrams = [
        datagram(agent, 1, 0, samples),
        datagram(agent, 2, 0, long),
        datagram(agent, 4, 0, samples[:3] + [counter_sample(2, 4, 10**10, 1, 2, 3, 4)]),
        datagram(agent, 5, 0, samples)[:-7],  # cut inside the last sample
        datagram(agent, 6, 0, []),
        struct.pack("!II16sIIII", 5, 2, bytes(15) + b"\1", 0, 7, 0, 1) + samples[0],  # v6 agent
        datagram(agent, 7, 0, samples[:2])[:30],
    ]
    packets = [(d, "192.0.2.9") for d in dgrams] + [(d, "192.0.2.10") for d in dgrams[:3]]
    for batch in (1, 3, 64):
        dec = assert_same(packets, batch)
    st_ = dec.stats.of("192.0.2.9")
    assert st_.records > sflow_batch.MAX_SAMPLES and st_.decode_errors >= 3
    assert st_.sequence_gaps == 1 and st_.empty_datagrams == 1


@pytest.mark.parametrize("name", [pytest.param(c, id=c) for c in CASES])
def test_vendor_capture_in_one_batch(name: str) -> None:
    packets = [(d, "192.0.2.1") for d in datagrams(name)]
    assert_same(packets, 1024)
    cut = [(bad, host) for data, host in packets for bad in _mutations(data)]
    assert_same(packets + cut + packets, 4096)


@settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255), st.booleans()), max_size=6),
    st.integers(1, 300),
)
def test_edited_batches_agree(edits: list[tuple[int, int, bool]], batch: int) -> None:
    packets = _mixed()[:400]
    for pos, val, drop in edits:
        i = pos % len(packets)
        data, host = packets[i]
        if drop:
            del packets[i]
            continue
        j = (pos // len(packets)) % len(data)
        packets[i] = (data[:j] + bytes([val]) + data[j + 1 :], host)
    assert_same(packets, batch)


def test_batched_output_owns_its_memory() -> None:
    packets = _mixed()[:200]
    dg = Datagrams.from_pairs(packets)
    buf = dg.buf.copy()
    dg = Datagrams(buf, dg.rows, dg.lengths, dg.exporter, dg.exporters)
    table = FlowDecoder().decode_datagrams(dg, RECEIVED)
    before = table.to_pydict()
    buf[:] = 0xAB  # the receiver reuses its slots for the next batch
    assert table.to_pydict() == before
    assert isinstance(table, pa.Table) and table.num_rows > 0


def _template_sets() -> Pairs:
    """Template sets seen again and again: fine, withdrawn, cut short, refused (NetFlow v9
    has no variable-length fields)."""
    a = template_set(2, 256, [(8, 4), (12, 4), (1, 4)])
    v = template_set(2, 257, [(1, 4), (96, 0xFFFF)])
    bad = struct.pack("!HHHH", 2, 12, 300, 9) + struct.pack("!HH", 8, 4)  # 9 fields, 1 given
    withdraw = struct.pack("!HHHH", 2, 8, 256, 0)
    none = template_set(2, 258, [(3000, 4)])  # no field we read
    v9 = [v9_packet([template_set(0, 300, [(8, 4), (96, 0xFFFF)])], seq=s) for s in range(3)]
    msgs = [ipfix_message(sets, seq=0) for sets in ([a, v], [bad], [withdraw, a], [none])]
    return [(m, "10.0.2.1") for m in (msgs * 3 + v9 * 2)]


def test_template_sets_read_again_are_replayed_exactly() -> None:
    packets = _template_sets()
    warm = FlowDecoder()
    warm.walk(packets, RECEIVED)
    cold = FlowDecoder()
    for pair in packets:
        tmplsets._MEMO.clear()
        tmplsets._MEMO_TEMPLATES[0] = 0
        cold.walk([pair], RECEIVED)
    assert warm.stats.exporters == cold.stats.exporters
    assert warm.nf.cache.total() == cold.nf.cache.total() == 3
    st_ = warm.stats.of("10.0.2.1")
    assert (st_.decode_errors, st_.unsupported_templates, st_.template_records) == (3, 6, 15)


def test_the_template_set_memo_stays_bounded() -> None:
    dec = FlowDecoder()
    for k in range(3 * tmplsets.MEMO_MAX_TEMPLATES // 30):
        sets = [
            template_set(2, 256 + j, [(8, 4), (12, 4), (1000 + k * 30 + j, 4)]) for j in range(30)
        ]
        dec.walk([(ipfix_message(sets), "10.0.2.2")], RECEIVED)
        assert tmplsets._MEMO_TEMPLATES[0] <= tmplsets.MEMO_MAX_TEMPLATES
        assert sum(len(v) for v in tmplsets._MEMO.values()) == tmplsets._MEMO_TEMPLATES[0]
