"""Exporters we have no device for, from other collectors' test suites (testdata/vendors).

One test per capture, matched by name: ``<name>.hex`` (datagrams) against ``<name>.json``
(record count, counters, key fields of a few records, cross-checked against the upstream
suites' own assertions: see testdata/vendors/SOURCES.md). Every datagram must either give
flows or say in the per-exporter counters why it gave none. The same captures, cut and
corrupted in a fixed, deterministic way, must never raise and must stay accounted for.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from shadowcast.collect.base import NO_FLOW_REASONS, ExporterStats
from shadowcast.collect.decoders import FlowDecoder, sniff
from shadowcast.records import FLOW_SCHEMA

VENDORS = Path(__file__).parent / "testdata" / "vendors"
CASES = sorted(p.stem for p in VENDORS.glob("*.hex"))
EXPORTER = "192.0.2.1"
RECEIVED = 1_700_000_000.0  # datagram i is received at RECEIVED + i (sFlow times come from it)
FLOW_KEYS = (
    "src_port",
    "dst_port",
    "proto",
    "bytes",
    "packets",
    "sampling_rate",
    "in_if",
    "out_if",
    "src_as",
    "dst_as",
    "tos",
    "tcp_flags",
)


def datagrams(name: str) -> list[bytes]:
    text = (VENDORS / f"{name}.hex").read_text()
    return [bytes.fromhex(line) for line in text.splitlines() if line and line[0] != "#"]


def _addr(raw: bytes) -> str:
    a = ipaddress.IPv6Address(raw)
    return str(a.ipv4_mapped or a)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decode(packets: list[bytes]) -> tuple[FlowDecoder, list[pa.Table], list[int]]:
    """Feed one datagram per batch; returns the tables and how much each one accounted for."""
    dec = FlowDecoder()
    st = dec.stats.of(EXPORTER)
    tables, accounted = [], []
    for i, data in enumerate(packets):
        before = st.accounted()
        tables.append(dec.decode([(data, EXPORTER)], RECEIVED + i))
        accounted.append(st.accounted() - before)
    return dec, tables, accounted


def test_every_capture_has_its_expectation_and_source() -> None:
    assert len(CASES) >= 10
    assert sorted(p.stem for p in VENDORS.glob("*.json")) == CASES
    sources = (VENDORS / "SOURCES.md").read_text()
    for name in CASES:
        assert f"`{name}`" in sources, f"{name} is not attributed in SOURCES.md"


@pytest.mark.parametrize("name", [pytest.param(c, id=c) for c in CASES])
def test_vendor_capture(name: str) -> None:
    exp: dict[str, Any] = json.loads((VENDORS / f"{name}.json").read_text())
    packets = datagrams(name)
    assert len(packets) == exp["datagrams"]
    assert {sniff(p) for p in packets} == {exp["protocol"]}
    dec, tables, accounted = decode(packets)
    for i, (table, n) in enumerate(zip(tables, accounted, strict=True)):
        assert table.schema.equals(FLOW_SCHEMA)
        assert n > 0, f"{name}: datagram {i} gave no flow and no reason"
    table = pa.concat_tables(tables)
    st = dec.stats.of(EXPORTER)
    assert table.num_rows == exp["flows_total"] == st.records
    assert {k: getattr(st, k) for k in exp["stats"]} == exp["stats"]
    assert dec.nf.pending_count() == exp["pending"]
    rows = table.to_pylist()
    for want in exp["flows"]:
        row = rows[want["index"]]
        got = {k: row[k] for k in FLOW_KEYS}
        got["src_addr"], got["dst_addr"] = _addr(row["src_addr"]), _addr(row["dst_addr"])
        got["time_start"], got["time_end"] = _iso(row["time_start"]), _iso(row["time_end"])
        assert got == {k: v for k, v in want.items() if k != "index"}, (name, want["index"])


def _mutations(data: bytes) -> list[bytes]:
    """Fixed cuts and corruptions of one datagram (no random draws: the same every run)."""
    n = len(data)
    cuts = sorted({max(0, n * k // 16) for k in range(16)} | {n - 1, n - 2, n - 3} - {n})
    out = [data[:c] for c in cuts if c >= 0]
    for pos in range(0, n, max(1, n // 24)):
        for val in (0x00, 0xFF, data[pos] ^ 0x80):
            out.append(data[:pos] + bytes([val]) + data[pos + 1 :])
    return out


@pytest.mark.parametrize("name", [pytest.param(c, id=c) for c in CASES])
def test_cut_and_corrupted_captures_are_accounted(name: str) -> None:
    """Every cut or corrupted datagram, fed after the intact ones (templates known), decodes
    without raising into FLOW_SCHEMA and leaves a counted trace: flows or a reason."""
    packets = datagrams(name)
    dec, _, _ = decode(packets)
    st = dec.stats.of(EXPORTER)
    for i, data in enumerate(packets):
        for bad in _mutations(data):
            before = st.accounted()
            table = dec.decode([(bad, EXPORTER)], RECEIVED + 100 + i)
            assert table.schema.equals(FLOW_SCHEMA)
            assert st.accounted() > before or not bad, (name, i, bad.hex())
            assert table.num_rows <= st.records


def test_no_flow_reasons_are_exporter_counters() -> None:
    names = {f.name for f in dataclasses.fields(ExporterStats)}
    assert set(NO_FLOW_REASONS) <= names
    st = ExporterStats(records=2, template_records=3, unsupported_samples=1, bytes=99)
    assert st.accounted() == 6


# -- why a datagram gave no flow: one crafted datagram per reason ----------------------------
def _reasons(packets: list[bytes]) -> dict[str, int]:
    dec = FlowDecoder()
    for data in packets:
        assert dec.decode([(data, EXPORTER)], RECEIVED).num_rows == 0
    st = dec.stats.of(EXPORTER)
    return {k: getattr(st, k) for k in NO_FLOW_REASONS if getattr(st, k)}


def test_each_reason_for_no_flow_is_counted() -> None:
    from shadowcast.collect.wire import (
        data_set,
        ipfix_message,
        ipfix_options_template,
        template_set,
        v9_packet,
    )

    opts = ipfix_options_template(300, [(302, 4)], [(305, 4), (306, 4)])  # selector 1-in-10
    opts_data = data_set(300, bytes.fromhex("00000001 00000001 00000009"))
    assert _reasons([ipfix_message([opts]), ipfix_message([opts_data])]) == {
        "template_records": 1,
        "options_records": 1,
    }
    assert _reasons([ipfix_message([data_set(400, b"\0" * 8)])]) == {"template_misses": 1}
    assert _reasons([ipfix_message([data_set(7, b"\0" * 8)])]) == {"unsupported_sets": 1}
    assert _reasons([v9_packet([template_set(0, 300, [(1, 4), (96, 0xFFFF)])])]) == {
        "unsupported_templates": 1  # NetFlow v9 has no variable-length fields
    }
    assert _reasons([v9_packet([], count=0), ipfix_message([])]) == {"empty_datagrams": 2}
    v5_empty = bytes.fromhex("0005 0000") + b"\0" * 20
    assert _reasons([v5_empty]) == {"empty_datagrams": 1}
    sflow_counters = bytes.fromhex(
        "00000005 00000001 c0000201 00000000 00000001 00000001"  # header, agent 192.0.2.1
        "00000001"  # one sample
        "00000002 0000000c 00000001 00000001 00000000"  # counter sample, no records
    )
    assert _reasons([sflow_counters]) == {"counter_samples": 1}


def test_firewall_event_time_and_initiator_octets() -> None:
    """Cisco ASA 9.x NSEL: flowStartMilliseconds, observationTimeMilliseconds (event time)
    and initiatorOctets (fwd_flow_delta_bytes): 69 bytes from 1469109036395 to ...6495 ms,
    as in logstash-codec-netflow's "Netflow 9 Cisco ASA #2" expectation."""
    from shadowcast.collect.wire import data_set, template_set, v9_packet

    fields = [(8, 4), (12, 4), (4, 1), (152, 8), (323, 8), (231, 4), (232, 4)]
    rec = bytes.fromhex("c0a80001 c0a80012 06") + (1469109036395).to_bytes(8, "big")
    rec += (1469109036495).to_bytes(8, "big") + (69).to_bytes(4, "big") + (14178).to_bytes(4, "big")
    dec = FlowDecoder()
    dec.decode([(v9_packet([template_set(0, 263, fields)], seq=30), EXPORTER)], RECEIVED)
    table = dec.decode([(v9_packet([data_set(263, rec)], seq=31), EXPORTER)], RECEIVED)
    row = table.to_pylist()[0]
    assert (_addr(row["src_addr"]), _addr(row["dst_addr"]), row["bytes"]) == (
        "192.168.0.1",
        "192.168.0.18",
        69,
    )
    assert _iso(row["time_start"]) == "2016-07-21T13:50:36.395Z"
    assert _iso(row["time_end"]) == "2016-07-21T13:50:36.495Z"
    assert dec.stats.of(EXPORTER).records_without_counters == 0


def test_palo_alto_app_id_name() -> None:
    """PAN-OS NetFlow v9 carries the App-ID name in type 56701 (32-byte string)."""
    from shadowcast.collect.wire import data_set, template_set, v9_packet

    fields = [(8, 4), (12, 4), (4, 1), (1, 4), (2, 4), (56701, 32)]
    rec = bytes.fromhex("0a000001 0a000002 06 000005dc 00000003")
    rec += b"web-browsing".ljust(32, b"\0")
    dec = FlowDecoder()
    pkt = v9_packet([template_set(0, 256, fields), data_set(256, rec)], count=2)
    row = dec.decode([(pkt, EXPORTER)], RECEIVED).to_pylist()[0]
    assert (row["app"], row["app_source"], row["bytes"], row["packets"]) == (
        "web-browsing",
        "exporter",
        1500,
        3,
    )
