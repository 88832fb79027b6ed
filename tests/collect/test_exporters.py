"""Real exporter, real reference collector: softflowd -> (our collector | nfcapd) on loopback.

softflowd meters nDPI's captures and exports NetFlow v9 or IPFIX, once to nfcapd and once
to our collector (same capture, same flows); per flow, the bytes and packets we store
must equal what nfdump reads back from nfcapd's files.
"""

from __future__ import annotations

import csv
import ipaddress
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from shadowcast.collect.config import CollectConfig, ListenerConfig
from shadowcast.collect.server import CollectServer
from shadowcast.store.duckdb import DuckDBStore

TOOLS = ("softflowd", "nfcapd", "nfdump")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        any(shutil.which(t) is None for t in TOOLS),
        reason="needs softflowd and nfdump (apt-get install softflowd nfdump)",
    ),
]
CAPTURES = ("netflix.pcap", "http_ipv6.pcap", "quickplay.pcap", "teams.pcap", "instagram.pcap")
PROTO = {"TCP": 6, "UDP": 17, "ICMP": 1, "IGMP": 2, "ICMP6": 58, "GRE": 47, "ESP": 50}
ICMP = (1, 58)  # nfdump shows ICMP type.code as the destination port; we keep ports 0
Key = tuple[str, str, int, int, int]


def flow_key(sa: str, da: str, sp: int, dp: int, proto: int) -> Key:
    return (sa, da, 0, 0, proto) if proto in ICMP else (sa, da, sp, dp, proto)


Totals = Counter[tuple[Key, str]]  # (flow, "bytes" | "packets") -> total


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def export(pcap: Path, port: int, version: int, tmp: Path) -> None:
    # no -c: softflowd 1.1 with -c SOCKET and -r does not exit at the end of the capture
    subprocess.run(
        ["softflowd", "-r", str(pcap), "-n", f"127.0.0.1:{port}", "-v", str(version)]
        + ["-d", "-m", "300000", "-p", str(tmp / "softflowd.pid")],
        check=True,
        capture_output=True,
        timeout=60,
    )


def nfcapd_flows(pcaps: list[Path], version: int, tmp: Path) -> tuple[Totals, int]:
    """Export to nfcapd, stop it (SIGTERM flushes), read its files with nfdump."""
    port = free_udp_port()
    out = tmp / "nfcapd"
    out.mkdir()
    proc = subprocess.Popen(
        ["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", str(out), "-t", "3600"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        assert proc.poll() is None, "nfcapd did not start"
        for pcap in pcaps:
            export(pcap, port, version, tmp)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = subprocess.run(
        ["nfdump", "-q", "-R", str(out), "-o", "csv"],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    totals: Totals = Counter()
    rows = 0
    for row in csv.reader(text.splitlines()):
        if len(row) < 13 or not row[0][:1].isdigit():
            continue
        sa, da, sp, dp, pr, pkts, byts = row[3], row[4], row[5], row[6], row[7], row[11], row[12]
        proto = PROTO.get(pr.strip(), None)
        key = flow_key(sa, da, int(sp), int(dp), proto if proto is not None else int(pr))
        totals[key, "bytes"] += int(byts)
        totals[key, "packets"] += int(pkts)
        rows += 1
    return totals, rows


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[tuple[CollectServer, DuckDBStore, int]]:
    cfg = CollectConfig(
        bind="127.0.0.1",
        listeners=[ListenerConfig(protocol="ipfix", port=0)],
        workers=2,
        flush_interval_s=0.5,
        # softflowd -r stamps flows from the capture and its own uptime arithmetic: here
        # about 17 days ahead of the clock. A replay, not a live exporter: no time checks.
        max_record_age_s=None,
        max_clock_skew_s=None,
    )
    store = DuckDBStore(tmp_path / "ours.duckdb")
    server = CollectServer(cfg, store)
    port = next(iter(server.bind()))
    ready = threading.Event()
    thread = threading.Thread(
        target=server.serve, kwargs={"on_ready": lambda _: ready.set()}, daemon=True
    )
    thread.start()
    try:
        until = time.monotonic() + 90
        while not ready.is_set() and thread.is_alive() and time.monotonic() < until:
            time.sleep(0.05)
        assert ready.is_set(), f"collector did not start: {server.failures}"
        yield server, store, port
    finally:
        server.stop()
        thread.join(60)
        store.close()


def addr(b: bytes) -> str:
    ip = ipaddress.IPv6Address(b)
    return str(ip.ipv4_mapped) if ip.ipv4_mapped is not None else str(ip)


@pytest.mark.parametrize("version", [9, 10], ids=["netflow9", "ipfix"])
def test_softflowd_flows_agree_with_nfcapd(
    version: int,
    data_dir: Path,
    tmp_path: Path,
    collector: tuple[CollectServer, DuckDBStore, int],
) -> None:
    pcaps = [data_dir / "pcaps" / "ndpi" / "pcap" / name for name in CAPTURES]
    missing = [p.name for p in pcaps if not p.is_file()]
    if missing:
        pytest.skip(f"captures missing: {missing}")
    reference, flows_ref = nfcapd_flows(pcaps, version, tmp_path)
    n_ref = sum(v for (_, what), v in reference.items() if what == "packets")
    assert n_ref > 1000, "nfcapd got (almost) nothing: the reference run failed"

    server, store, port = collector
    for pcap in pcaps:
        export(pcap, port, version, tmp_path)
    until = time.monotonic() + 30
    while time.monotonic() < until and server.snapshot().rows_stored < flows_ref:
        time.sleep(0.1)
    time.sleep(0.5)  # anything beyond the reference would show up now
    snap = server.snapshot()
    st = snap.exporters["127.0.0.1"]
    assert st.decode_errors == 0 and st.template_misses == 0
    assert sum(snap.socket_drops.values()) == 0

    t = store.read("flows")
    ours: Totals = Counter()
    for sa, da, sp, dp, pr, byts, pkts in zip(
        *(t[c].to_pylist() for c in ("src_addr", "dst_addr", "src_port", "dst_port", "proto")),
        t["bytes"].to_pylist(),
        t["packets"].to_pylist(),
        strict=True,
    ):
        key = flow_key(addr(sa), addr(da), sp, dp, pr)
        ours[key, "bytes"] += byts
        ours[key, "packets"] += pkts
    assert t.num_rows == flows_ref
    differ = {k: (ours.get(k), reference.get(k)) for k in set(ours) | set(reference)}
    differ = {k: v for k, v in differ.items() if v[0] != v[1]}
    assert not differ, f"{len(differ)} flow totals differ, e.g. {list(differ.items())[:5]}"
