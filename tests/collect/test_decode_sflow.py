"""sFlow v5: sampled headers -> 5-tuples scaled by the rate; counters; real captures."""

from __future__ import annotations

import ipaddress
import struct
from pathlib import Path

import numpy as np
import pytest

from shadowcast.collect.pcapfile import read_udp
from shadowcast.collect.sflow import COUNTER_SCHEMA, SFlowDecoder
from shadowcast.collect.sflow_synth import counter_sample, datagram, flow_sample
from shadowcast.collect.synth import build_stream, synth_flows
from shadowcast.records import FLOW_SCHEMA

AGENT = bytes([192, 0, 2, 1])
SFLOW_DIR = Path("flow_export/akvorado/outlet/flow/decoder/sflow/testdata")


def test_synthetic_stream_round_trip() -> None:
    flows = synth_flows(100, seed=1)
    dec = SFlowDecoder()
    t = dec.decode([(p, "192.0.2.1") for p in build_stream("sflow", 100, seed=1)], 1e9)
    assert t.schema.equals(FLOW_SCHEMA)
    assert t.num_rows == 100
    c = flows.cols
    src = np.array([int.from_bytes(b[12:]) for b in t.column("src_addr").to_pylist()])
    assert (src == c[8].view(">u4")).all()
    for name, ie in (("src_port", 7), ("dst_port", 11), ("proto", 4), ("tos", 5), ("in_if", 10)):
        assert t.column(name).to_numpy().tolist() == np.asarray(c[ie]).tolist(), name
    assert set(t.column("sampling_rate").to_pylist()) == {1000}
    assert set(t.column("packets").to_pylist()) == {1000}
    assert (t.column("bytes").to_numpy() % 1000 == 0).all()
    counters = dec.counters()
    assert counters.schema.equals(COUNTER_SCHEMA)
    assert counters.num_rows == 1
    assert counters.column("if_speed").to_pylist() == [10**10]
    assert dec.counters().num_rows == 0  # drained


def _ipv6_tcp_frame(vlans: int) -> bytes:
    eth = b"\x02" * 12
    for v in range(vlans):
        eth += struct.pack("!HH", 0x88A8 if v == 0 and vlans == 2 else 0x8100, 10 + v)
    src = ipaddress.IPv6Address("2001:db8::1").packed
    dst = ipaddress.IPv6Address("2001:db8::2").packed
    ip6 = struct.pack("!IHBB", 6 << 28 | 0x2E << 20, 20, 6, 64) + src + dst
    tcp = struct.pack("!HHIIBBHHH", 40000, 443, 0, 0, 0x50, 0x12, 0, 0, 0)
    return eth + b"\x86\xdd" + ip6 + tcp


@pytest.mark.parametrize("vlans", [0, 1, 2])
def test_ipv6_with_vlan_tags_and_expanded_samples(vlans: int) -> None:
    frame = _ipv6_tcp_frame(vlans)
    samples = [flow_sample(1, 512, 3, 4, 1514, frame, expanded=True)]
    samples.append(counter_sample(1, 3, 10**9, 5000, 6000, 50, 60))
    t = SFlowDecoder().decode([(datagram(AGENT, 1, 0, samples), "192.0.2.1")], 0.0)
    row = t.to_pylist()[0]
    assert ipaddress.IPv6Address(row["src_addr"]) == ipaddress.IPv6Address("2001:db8::1")
    assert (row["src_port"], row["dst_port"], row["proto"], row["tcp_flags"]) == (
        40000,
        443,
        6,
        0x12,
    )
    assert row["tos"] == 0x2E
    assert (row["bytes"], row["packets"], row["in_if"], row["out_if"]) == (1514 * 512, 512, 3, 4)


def test_truncated_header_gives_no_ports() -> None:
    frame = _ipv6_tcp_frame(0)[:56]  # cut inside the TCP ports
    t = SFlowDecoder().decode(
        [(datagram(AGENT, 1, 0, [flow_sample(1, 10, 1, 2, 100, frame)]), "x")], 0.0
    )
    assert t.column("src_port").to_pylist() == [0]


def _capture(data_dir: Path, name: str) -> list[tuple[bytes, str]]:
    return [(p.payload, p.src) for p in read_udp(data_dir / SFLOW_DIR / name)]


def test_akvorado_sflow_captures(data_dir: Path) -> None:
    dec = SFlowDecoder()
    t = dec.decode(_capture(data_dir, "data-sflow-expanded-sample.pcap"), 0.0)
    assert t.num_rows > 0
    assert min(t.column("sampling_rate").to_pylist()) > 1
    assert all(b > 0 for b in t.column("bytes").to_pylist())
    # IPv4 sampled as a raw IPv4 header (header protocol 11), not Ethernet
    t = dec.decode(_capture(data_dir, "data-sflow-raw-ipv4.pcap"), 0.0)
    assert t.num_rows == 2
    assert all(a[:12] == b"\0" * 10 + b"\xff\xff" for a in t.column("src_addr").to_pylist())
    # QinQ: two VLAN tags before IPv4
    t = dec.decode(_capture(data_dir, "data-qinq.pcap"), 0.0)
    assert t.num_rows > 0 and set(t.column("proto").to_pylist()) - {0}
    # counter samples
    dec.decode(_capture(data_dir, "data-1140.pcap"), 0.0)
    assert sum(s.decode_errors for s in dec.stats.exporters.values()) == 0


def test_datagram_sequence_gap() -> None:
    frame = _ipv6_tcp_frame(0)
    dgrams = [datagram(AGENT, s, 0, [flow_sample(s, 10, 1, 2, 100, frame)] * 2) for s in (1, 2, 5)]
    dec = SFlowDecoder()
    dec.decode([(d, "x") for d in dgrams], 0.0)
    st = dec.stats.of("x")
    assert (st.sequence_gaps, st.lost_records_estimate, st.records) == (1, 4, 6)
