"""NetFlow v5 decoding: round trip of synthetic packets, sampling, sequence gaps, bad input."""

from __future__ import annotations

import struct

import numpy as np

from shadowcast.collect.decoders import FlowDecoder
from shadowcast.collect.netflow5 import NetflowV5Decoder
from shadowcast.collect.synth import build_v5, synth_flows
from shadowcast.records import FLOW_SCHEMA


def _u32_addrs(col: list[bytes]) -> np.ndarray:
    return np.array([int.from_bytes(b[12:]) for b in col], dtype=np.uint32)


def test_v5_round_trip() -> None:
    flows = synth_flows(95, seed=3)
    packets = build_v5(flows)
    assert len(packets) == 4
    dec = NetflowV5Decoder()
    t = dec.decode([(p, "192.0.2.1") for p in packets], 0.0)
    assert t.schema.equals(FLOW_SCHEMA)
    assert t.num_rows == 95
    c = flows.cols
    assert (_u32_addrs(t.column("src_addr").to_pylist()) == c[8].view(">u4")).all()
    assert (_u32_addrs(t.column("dst_addr").to_pylist()) == c[12].view(">u4")).all()
    assert t.column("src_addr")[0].as_py()[:12] == b"\x00" * 10 + b"\xff\xff"
    for name, ie in (("src_port", 7), ("dst_port", 11), ("proto", 4), ("in_if", 10)):
        assert t.column(name).to_numpy().tolist() == np.asarray(c[ie]).tolist(), name
    assert t.column("bytes").to_numpy().tolist() == np.minimum(c[1], 2**32 - 1).tolist()
    assert t.column("packets").to_numpy().tolist() == c[2].tolist()
    start = t.column("time_start").cast("int64").to_numpy()
    assert (start == c[152]).all()
    assert (t.column("time_end").cast("int64").to_numpy() == c[153]).all()
    assert set(t.column("exporter").to_pylist()) == {"192.0.2.1"}
    st = dec.stats.of("192.0.2.1")
    assert (st.packets, st.records, st.decode_errors, st.sequence_gaps) == (4, 95, 0, 0)


def _with_sampling(pkt: bytes, mode: int, interval: int) -> bytes:
    return pkt[:22] + struct.pack("!H", (mode << 14) | interval) + pkt[24:]


def test_v5_sampling_scales_and_override_wins() -> None:
    flows = synth_flows(30, seed=1)
    pkt = _with_sampling(build_v5(flows)[0], 1, 100)
    dec = NetflowV5Decoder(sampling_overrides={"198.51.100.9": 7})
    t = dec.decode([(pkt, "192.0.2.1"), (pkt, "198.51.100.9")], 0.0)
    rate = dict(zip(t["exporter"].to_pylist(), t["sampling_rate"].to_pylist(), strict=True))
    assert rate == {"192.0.2.1": 100, "198.51.100.9": 7}
    b = t.column("bytes").to_numpy()
    assert (b[:30] == flows.cols[1] * 100).all()
    assert (b[30:] == flows.cols[1] * 7).all()
    # no rate in the header: unknown, counted, treated as 1
    t = dec.decode([(_with_sampling(pkt, 0, 0), "192.0.2.1")], 0.0)
    assert dec.stats.of("192.0.2.1").unknown_sampling == 30
    assert set(t.column("sampling_rate").to_pylist()) == {1}


def test_v5_sequence_gap_estimates_lost_records() -> None:
    packets = build_v5(synth_flows(150, seed=2))
    dec = NetflowV5Decoder()
    dec.decode([(p, "192.0.2.1") for i, p in enumerate(packets) if i != 2], 0.0)
    st = dec.stats.of("192.0.2.1")
    assert st.sequence_gaps == 1
    assert st.lost_records_estimate == 30


def test_v5_bad_packets_counted_not_raised() -> None:
    good = build_v5(synth_flows(30, seed=4))[0]
    bad = [
        good[:10],  # shorter than the header
        good[:-1],  # count says 30 records, fewer present
        struct.pack("!HH", 5, 5000) + good[4:],  # absurd count
    ]
    dec = FlowDecoder()
    t = dec.decode([(b, "192.0.2.1") for b in bad] + [(good, "192.0.2.1")], 0.0)
    assert t.num_rows == 30
    assert dec.stats.of("192.0.2.1").decode_errors == 3
