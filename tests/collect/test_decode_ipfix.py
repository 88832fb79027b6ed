"""NetFlow v9 / IPFIX: round trips, template scoping and lifecycle, encodings, app identity."""

from __future__ import annotations

import ipaddress
import struct

import numpy as np
import pyarrow as pa
import pytest

from shadowcast.collect.nfv9ipfix import NfV9IpfixDecoder
from shadowcast.collect.synth import (
    APP_NAMES,
    build_ipfix,
    build_v9,
    ipfix_export,
    synth_flows,
)
from shadowcast.collect.wire import (
    data_set,
    ipfix_message,
    template_set,
    v9_options_template,
    v9_packet,
)
from shadowcast.records import FLOW_SCHEMA

EXP = "192.0.2.10"


def _decode(dec: NfV9IpfixDecoder, packets: list[bytes], exporter: str = EXP) -> pa.Table:
    return dec.decode([(p, exporter) for p in packets], 1_700_000_000.0)


@pytest.mark.parametrize("app_mode", ["id", "name"])
def test_ipfix_round_trip_with_application(app_mode: str) -> None:
    flows = synth_flows(200, seed=5)
    dec = NfV9IpfixDecoder()
    t = _decode(dec, build_ipfix(flows, app_mode=app_mode, template_every=3))
    assert t.schema.equals(FLOW_SCHEMA)
    assert t.num_rows == 200
    c = flows.cols
    for name, ie in (("src_port", 7), ("dst_port", 11), ("proto", 4), ("bytes", 1), ("src_as", 16)):
        assert t.column(name).to_numpy().tolist() == np.asarray(c[ie]).tolist(), name
    assert (t.column("time_start").cast("int64").to_numpy() == c[152]).all()
    assert t.column("app").to_pylist() == [APP_NAMES[i] for i in flows.app]
    assert set(t.column("app_source").to_pylist()) == {"exporter"}
    st = dec.stats.of(EXP)
    assert (st.records, st.decode_errors, st.sequence_gaps, st.unknown_sampling) == (200, 0, 0, 0)


def test_v9_sampler_option_table_scales() -> None:
    flows = synth_flows(90, seed=6)
    dec = NfV9IpfixDecoder()
    t = _decode(dec, build_v9(flows, sampling=10))
    assert t.num_rows == 90
    assert set(t.column("sampling_rate").to_pylist()) == {10}
    assert (t.column("bytes").to_numpy() == flows.cols[1] * 10).all()
    assert (t.column("packets").to_numpy() == flows.cols[2] * 10).all()
    # FIRST/LAST_SWITCHED (sysUpTime) back to wall-clock ms
    assert (t.column("time_start").cast("int64").to_numpy() == flows.cols[152]).all()


def _sampler_packets(rates: dict[int, int], ids: list[int]) -> list[bytes]:
    opt = v9_options_template(300, [(1, 4)], [(48, 2), (34, 4)])
    rows = b"".join(struct.pack("!IHI", 0, sid, r) for sid, r in rates.items())
    tmpl = template_set(0, 301, [(8, 4), (12, 4), (1, 4), (2, 4), (48, 2)])
    recs = b"".join(struct.pack("!4s4sIIH", b"\x0a\0\0\1", b"\x0a\0\0\2", 1000, 10, s) for s in ids)
    return [v9_packet([opt, data_set(300, rows), tmpl]), v9_packet([data_set(301, recs)], seq=1)]


def test_v9_sampler_ids_pick_their_rate_and_unknown_is_counted() -> None:
    dec = NfV9IpfixDecoder()
    t = _decode(dec, _sampler_packets({1: 100, 2: 1000}, [1, 2, 3]))
    assert t.column("sampling_rate").to_pylist() == [100, 1000, 1]
    assert t.column("bytes").to_pylist() == [100_000, 1_000_000, 1000]
    assert dec.stats.of(EXP).unknown_sampling == 1
    over = NfV9IpfixDecoder(sampling_overrides={EXP: 64})
    t = _decode(over, _sampler_packets({1: 100}, [1, 3]))
    assert t.column("sampling_rate").to_pylist() == [64, 64]
    assert over.stats.of(EXP).unknown_sampling == 0


@pytest.mark.parametrize(
    ("fields", "values", "rate"),
    [
        ([(34, 4)], struct.pack("!I", 50), 50),  # samplingInterval
        ([(50, 4)], struct.pack("!I", 20), 20),  # samplerRandomInterval
        ([(305, 4), (306, 4)], struct.pack("!II", 1, 99), 100),  # 1 in, 99 skipped
    ],
)
def test_ipfix_in_record_sampling(fields: list[tuple[int, int]], values: bytes, rate: int) -> None:
    tmpl = template_set(2, 400, [(1, 8), (2, 8), *fields])
    rec = struct.pack("!QQ", 1500, 3) + values
    t = _decode(NfV9IpfixDecoder(), [ipfix_message([tmpl, data_set(400, rec)])])
    assert t.column("sampling_rate").to_pylist() == [rate]
    assert t.column("bytes").to_pylist() == [1500 * rate]
    assert t.column("packets").to_pylist() == [3 * rate]


def _v4_template(tid: int) -> bytes:
    return template_set(2, tid, [(8, 4), (12, 4), (1, 8)])


def _v4_record(src: int, nbytes: int) -> bytes:
    return struct.pack("!IIQ", src, 0x0A000001, nbytes)


def test_templates_are_scoped_by_exporter_and_domain() -> None:
    dec = NfV9IpfixDecoder()
    other = template_set(2, 256, [(1, 8), (8, 4), (12, 4)])  # same id, other layout
    msgs = [
        (ipfix_message([_v4_template(256)], domain=1), "192.0.2.1"),
        (ipfix_message([other], domain=1), "192.0.2.2"),
        (ipfix_message([other], domain=2), "192.0.2.1"),
        (ipfix_message([data_set(256, _v4_record(1, 10))], domain=1), "192.0.2.1"),
        (ipfix_message([data_set(256, struct.pack("!QII", 20, 2, 9))], domain=1), "192.0.2.2"),
        (ipfix_message([data_set(256, struct.pack("!QII", 30, 3, 9))], domain=2), "192.0.2.1"),
    ]
    t = dec.decode(msgs, 0.0)
    got = sorted(zip(t["bytes"].to_pylist(), t["src_addr"].to_pylist(), strict=True))
    assert [(b, a[-1]) for b, a in got] == [(10, 1), (20, 2), (30, 3)]


def test_withdrawal_and_expiry() -> None:
    dec = NfV9IpfixDecoder(template_ttl=60.0)
    _decode(dec, [ipfix_message([_v4_template(256), _v4_template(257)])])
    assert dec.templates(EXP) == 2
    withdraw = struct.pack("!HHHH", 2, 8, 256, 0)
    t = _decode(dec, [ipfix_message([withdraw, data_set(256, _v4_record(1, 1))])])
    assert t.num_rows == 0
    assert dec.stats.of(EXP).template_misses == 1
    # all templates of the domain: withdrawal with template id = set id (2)
    _decode(dec, [ipfix_message([struct.pack("!HHHH", 2, 8, 2, 0)])])
    assert dec.templates(EXP) == 0
    dec.decode([(ipfix_message([_v4_template(258)]), EXP)], 1000.0)
    t = dec.decode([(ipfix_message([data_set(258, _v4_record(1, 1))]), EXP)], 1059.0)
    assert t.num_rows == 1
    t = dec.decode([(ipfix_message([data_set(258, _v4_record(1, 1))]), EXP)], 1200.0)
    assert t.num_rows == 0  # expired


def test_data_before_template_is_held_then_decoded() -> None:
    dec = NfV9IpfixDecoder(pending_max=4, pending_age=30.0)
    early = [ipfix_message([data_set(256, _v4_record(i, i))], seq=i) for i in range(6)]
    t = dec.decode([(m, EXP) for m in early], 100.0)
    assert t.num_rows == 0
    assert dec.pending_count() == 4  # bounded: the two oldest were dropped
    t = dec.decode([(ipfix_message([_v4_template(256)]), EXP)], 110.0)
    assert sorted(t.column("bytes").to_pylist()) == [2, 3, 4, 5]
    assert dec.pending_count() == 0
    dec.decode([(early[0], EXP)], 200.0)
    t = dec.decode([(ipfix_message([_v4_template(300)]), EXP)], 260.0)
    assert dec.pending_count() == 0 and t.num_rows == 0  # too old: dropped


def test_template_flood_is_capped_per_exporter() -> None:
    dec = NfV9IpfixDecoder(max_templates_per_exporter=100)
    msgs = [
        ipfix_message([template_set(2, 256 + i, [(1, 8), (2, 8), (7 + i % 3, 2)])])
        for i in range(1000)
    ]
    _decode(dec, msgs)
    assert dec.templates(EXP) == 100
    assert dec.stats.of(EXP).templates_evicted == 900
    # the newest survive
    t = _decode(dec, [ipfix_message([data_set(1255, struct.pack("!QQH", 5, 1, 80))])])
    assert t.column("bytes").to_pylist() == [5]


def test_varlen_enterprise_and_reduced_size() -> None:
    fields = [
        (8, 4),
        (12, 4),
        (1, 4),  # octetDeltaCount in 4 bytes instead of 8
        (2, 2),  # packetDeltaCount in 2 bytes
        (10, 3),  # ingressInterface in 3 bytes
        (999, 6, 12345),  # unknown enterprise element, fixed length: skipped
        (82, 0xFFFF),  # interfaceName, varlen, not read
        (96, 0xFFFF),  # applicationName, varlen
        (4, 1, 9),  # protocolIdentifier under another PEN: not ours
        (4, 1),
    ]
    long_name = "x" * 300  # 255-escaped 3-byte length
    recs = b""
    for name, proto in (("netflix", 6), (long_name, 17)):
        enc = name.encode()
        vl = bytes([len(enc)]) if len(enc) < 255 else b"\xff" + struct.pack("!H", len(enc))
        recs += struct.pack(
            "!4s4sIH3s6s", b"\x0a\0\0\1", b"\x0a\0\0\2", 7000, 7, b"\0\1\2", b"?" * 6
        )
        recs += b"\x03eth" + vl + enc + bytes([99, proto])
    dec = NfV9IpfixDecoder()
    t = _decode(
        dec, [ipfix_message([template_set(2, 500, fields), data_set(500, recs, pad=False)])]
    )
    assert dec.stats.of(EXP).decode_errors == 0
    assert t.column("bytes").to_pylist() == [7000, 7000]
    assert t.column("packets").to_pylist() == [7, 7]
    assert t.column("in_if").to_pylist() == [258, 258]
    assert t.column("proto").to_pylist() == [6, 17]
    assert t.column("app").to_pylist() == ["netflix", "x" * 64]


def test_ntop_l7_proto_name() -> None:
    fields = [(8, 4), (12, 4), (1, 8), (119, 16, 35632)]
    rec = struct.pack("!4s4sQ16s", b"\x0a\0\0\1", b"\x0a\0\0\2", 10, b"TLS.YouTube")
    t = _decode(
        NfV9IpfixDecoder(), [ipfix_message([template_set(2, 256, fields), data_set(256, rec)])]
    )
    assert t.column("app").to_pylist() == ["TLS.YouTube"]
    assert t.column("app_source").to_pylist() == ["exporter"]


def test_nbar_application_id_without_mapping_keeps_the_id() -> None:
    tmpl = template_set(2, 256, [(8, 4), (1, 8), (95, 4)])
    rec = struct.pack("!4sQI", b"\x0a\0\0\1", 10, (13 << 24) | 453)
    t = _decode(NfV9IpfixDecoder(), [ipfix_message([tmpl, data_set(256, rec)])])
    assert t.column("app").to_pylist() == ["13:453"]


def test_ipfix_sequence_gap() -> None:
    flows = synth_flows(150, seed=8)
    packets = build_ipfix(flows, template_every=100)
    dec = NfV9IpfixDecoder()
    _decode(dec, [p for i, p in enumerate(packets) if i != 3])
    st = dec.stats.of(EXP)
    assert st.sequence_gaps == 1
    assert st.lost_records_estimate == 30


def test_ipfix_export_round_trip_mixed_families() -> None:
    n = 50
    rng = np.random.default_rng(0)
    v4 = [b"\0" * 10 + b"\xff\xff" + bytes([10, 0, 0, i]) for i in range(n // 2)]
    v6 = [ipaddress.IPv6Address(f"2001:db8::{i + 1:x}").packed for i in range(n - n // 2)]
    addrs = v4 + v6
    table = pa.table(
        {
            "time_start": pa.array(np.arange(n) * 1000 + 1_700_000_000_000, pa.int64()).cast(
                FLOW_SCHEMA.field("time_start").type
            ),
            "time_end": pa.array(np.arange(n) * 1000 + 1_700_000_001_000, pa.int64()).cast(
                FLOW_SCHEMA.field("time_end").type
            ),
            "src_addr": pa.array(addrs, pa.binary(16)),
            "dst_addr": pa.array(addrs[::-1], pa.binary(16)),
            "src_port": pa.array(rng.integers(1, 65535, n), pa.uint16()),
            "dst_port": pa.array(np.full(n, 443), pa.uint16()),
            "proto": pa.array(np.full(n, 6), pa.uint8()),
            "bytes": pa.array(np.arange(n) * 200 + 200, pa.uint64()),
            "packets": pa.array(np.full(n, 4), pa.uint64()),
            "sampling_rate": pa.array(np.full(n, 2), pa.uint32()),
            "app": pa.array(["youtube", "", "zoom", "dns", "youtube"] * 10),
        }
    )
    for mode in ("id", "name"):
        dec = NfV9IpfixDecoder()
        t = _decode(dec, ipfix_export(table, app_mode=mode, per_packet=7))
        assert t.num_rows == n
        t = t.sort_by([("time_start", "ascending")])
        for col in ("src_addr", "dst_addr", "src_port", "dst_port", "bytes", "packets", "app"):
            assert t.column(col).to_pylist() == table.column(col).to_pylist(), (mode, col)
        assert set(t.column("sampling_rate").to_pylist()) == {2}
        assert t.column("time_end").equals(table.column("time_end"))


def test_data_before_template_is_not_a_sequence_gap() -> None:
    packets = build_ipfix(synth_flows(300, seed=1), template_every=5)
    dec = NfV9IpfixDecoder()
    t = _decode(dec, packets[1:])  # the stream is joined mid-way: templates come later
    st = dec.stats.of(EXP)
    assert t.num_rows == 270
    assert (st.template_misses, st.sequence_gaps, st.lost_records_estimate) == (4, 0, 0)


def test_v9_exporter_restart_restarts_the_sequence() -> None:
    """A sequence number far behind the expectation is a restart, not a late packet: the
    tracker follows it, so a gap after the restart is seen (it used to wait until the
    new counter caught up with the old one, every packet counted as late)."""
    packets = build_v9(synth_flows(600, seed=3), template_every=5)

    def with_seq(p: bytes, add: int) -> bytes:
        seq = struct.unpack_from("!I", p, 12)[0]
        return p[:12] + struct.pack("!I", seq + add) + p[16:]

    dec = NfV9IpfixDecoder()
    before = _decode(dec, [with_seq(p, 100_000) for p in packets])
    assert before.num_rows == 600 and dec.stats.of(EXP).sequence_gaps == 0
    dropped = 7  # a data packet (templates go out every 5th)
    after = _decode(dec, [p for i, p in enumerate(packets) if i != dropped])
    st = dec.stats.of(EXP)
    assert after.num_rows == 570
    assert st.sequence_gaps == 1
    assert st.lost_records_estimate > 0
