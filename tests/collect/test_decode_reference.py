"""Cross-check against an independent decoder: the pure-Python ``netflow`` package.

The synthetic streams are encoded by our own builders; a third-party parser reading the
same packets to the same values shows the encoding is standard and our decoding agrees.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from shadowcast.collect.decoders import FlowDecoder
from shadowcast.collect.synth import build_stream

netflow_utils = pytest.importorskip("netflow.utils", reason="PyPI package netflow not installed")

KEYS = {
    "v5": ("IPV4_SRC_ADDR", "IPV4_DST_ADDR", "SRC_PORT", "DST_PORT", "PROTO", "IN_OCTETS",
           "IN_PACKETS", "INPUT", "OUTPUT"),
    "v9": ("IPV4_SRC_ADDR", "IPV4_DST_ADDR", "L4_SRC_PORT", "L4_DST_PORT", "PROTOCOL", "IN_BYTES",
           "IN_PKTS", "INPUT_SNMP", "OUTPUT_SNMP"),
    "ipfix": ("sourceIPv4Address", "destinationIPv4Address", "sourceTransportPort",
              "destinationTransportPort", "protocolIdentifier", "octetDeltaCount",
              "packetDeltaCount", "ingressInterface", "egressInterface"),
}  # fmt: skip
OURS = ("src_addr", "dst_addr", "src_port", "dst_port", "proto", "bytes", "packets", "in_if",
        "out_if")  # fmt: skip


def _norm(v: Any) -> Any:
    if isinstance(v, bytes):
        a = ipaddress.IPv6Address(v)
        return str(a.ipv4_mapped or a)
    return v


def _addr(v: Any) -> str:
    return str(ipaddress.IPv4Address(v))


@pytest.mark.parametrize("proto", ["v5", "v9", "ipfix"])
def test_same_values_as_netflow_package(proto: str) -> None:
    packets = build_stream(proto, 240, seed=11)
    templates: dict[str, dict[int, Any]] = {"netflow": {}, "ipfix": {}}
    theirs = []
    keys = KEYS[proto]
    for p in packets:
        for f in netflow_utils.parse_packet(p, templates).flows:
            d = f.data
            if keys[5] in d:
                theirs.append(
                    (_addr(d[keys[0]]), _addr(d[keys[1]]), *(int(d[k]) for k in keys[2:]))
                )
    t = FlowDecoder().decode([(p, "192.0.2.1") for p in packets], 0.0)
    cols = t.select(list(OURS)).to_pydict()
    ours = [tuple(_norm(cols[c][i]) for c in OURS) for i in range(t.num_rows)]
    assert len(theirs) == 240
    assert ours == theirs
