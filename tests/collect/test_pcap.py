"""``ingest pcap`` through nfstream: flows with nDPI applications, features beside them."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from shadowcast.collect.pcap import ingest_pcaps
from shadowcast.records import CATEGORIES
from shadowcast.store.duckdb import DuckDBStore

pytest.importorskip("nfstream")

# one per link type / container seen in the nDPI captures
CAPTURES = {
    "netflix.pcap": "ethernet, pcap",
    "http2.pcapng": "linux-sll, pcapng",
    "hls.pcapng": "raw IP, pcapng",
    "quickplay.pcap": "linux-sll, pcap",
    "codm.pcap": "raw IP, pcap",
    "http_ipv6.pcap": "IPv6",
}


@pytest.fixture(scope="module")
def pcaps(data_dir: Path) -> Path:
    d = data_dir / "pcaps" / "ndpi" / "pcap"
    if not d.is_dir():
        pytest.skip(f"nDPI captures not found in {d}")
    return d


@pytest.fixture(scope="module")
def ingested(pcaps: Path, tmp_path_factory: pytest.TempPathFactory) -> DuckDBStore:
    store = DuckDBStore(tmp_path_factory.mktemp("pcap") / "s.duckdb")
    res = ingest_pcaps([pcaps / name for name in CAPTURES], store)
    assert res.errors == {}
    assert res.files == len(CAPTURES)
    return store


@pytest.mark.parametrize("name", list(CAPTURES))
def test_every_link_type_gives_flows_and_features(ingested: DuckDBStore, name: str) -> None:
    flows = ingested.read("flows", where={"exporter": f"pcap:{name}"})
    feats = ingested.read("flow_features", where={"exporter": f"pcap:{name}"})
    assert flows.num_rows > 0 and feats.num_rows > 0
    assert set(flows["app_source"].to_pylist()) == {"ndpi"}
    assert set(flows["category"].to_pylist()) <= set(CATEGORIES)
    # each bidirectional flow gives one row per direction that carried packets
    up = feats.filter(pc.greater(feats["src2dst_packets"], 0)).num_rows
    down = feats.filter(pc.greater(feats["dst2src_packets"], 0)).num_rows
    assert flows.num_rows == up + down
    total = pc.sum(feats["src2dst_bytes"]).as_py() + pc.sum(feats["dst2src_bytes"]).as_py()
    assert pc.sum(flows["bytes"]).as_py() == total


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("name", ["netflix.pcap", "quickplay.pcap", "http_ipv6.pcap"])
def test_packets_match_tshark(ingested: DuckDBStore, pcaps: Path, name: str) -> None:
    """Every IP packet tshark sees in the capture is in exactly one flow row."""
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(pcaps / name),
            "-Y",
            "ip or ipv6",
            "-T",
            "fields",
            "-e",
            "frame.number",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    flows = ingested.read("flows", where={"exporter": f"pcap:{name}"})
    assert pc.sum(flows["packets"]).as_py() == len(out.split())


def test_applications_features_and_splt(ingested: DuckDBStore) -> None:
    feats = ingested.read("flow_features", where={"exporter": "pcap:netflix.pcap"})
    apps = set(feats["app"].to_pylist())
    assert {"TLS.NetFlix", "DNS.NetFlix"} <= apps
    netflix = feats.filter(pc.equal(feats["app"], "TLS.NetFlix"))
    assert set(netflix["category"].to_pylist()) == {"video"}
    row = max(netflix.to_pylist(), key=lambda r: r["src2dst_packets"] + r["dst2src_packets"])
    assert (
        row["bidirectional_min_ps"] <= row["bidirectional_mean_ps"] <= row["bidirectional_max_ps"]
    )
    assert row["dst2src_max_ps"] >= row["dst2src_mean_ps"] > 0
    assert row["bidirectional_mean_piat_ms"] >= 0
    splt = [row[f"splt_ps_{i}"] for i in range(1, 11)]
    assert splt[0] > 0  # the first packet goes from the flow's source
    assert any(s < 0 for s in splt)  # and the server answers within ten packets
    assert row["splt_piat_ms_1"] == 0


def test_bad_files_are_named_and_others_still_go_in(pcaps: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all" * 10)
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        res = ingest_pcaps([junk, tmp_path / "missing.pcap", pcaps / "dns.pcap"], store)
        assert set(res.errors) == {str(junk), str(tmp_path / "missing.pcap")}
        assert "junk.pcap" in res.errors[str(junk)]
        assert res.files == 1 and store.count("flow_features") == res.flows > 0


def test_cli_json(pcaps: Path, tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    proc = subprocess.run(
        [sys.executable, "-m", "shadowcast.cli", "ingest", "pcap", str(pcaps / "dns.pcap")]
        + ["--store", str(db), "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["files"] == 1 and doc["errors"] == {}
    with DuckDBStore(db) as store:
        assert store.count("flows") == doc["flow_rows"] > 0


@pytest.mark.slow
def test_every_ndpi_capture_ingests(pcaps: Path, tmp_path: Path) -> None:
    files = sorted(p for p in pcaps.iterdir() if p.suffix in (".pcap", ".pcapng"))
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        res = ingest_pcaps(files, store)
    assert res.errors == {}
    assert res.files == len(files)


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="live capture needs root (CAP_NET_RAW)")
def test_collect_interface_captures_live_flows(tmp_path: Path) -> None:
    """``collect --interface lo``: a UDP exchange on loopback becomes a stored flow.
    nfstream expires idle flows as later packets arrive, so ticks follow the exchange."""
    db = tmp_path / "live.duckdb"
    env = {**os.environ, "SHADOWCAST_COLLECT__CAPTURE_IDLE_TIMEOUT_S": "1"}
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shadowcast.cli", "collect", "--bind", "127.0.0.1"]
            + ["--listen", "netflow=0", "--workers", "1", "--interface", "lo"]
            + ["--store", str(db), "--json"],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            until = time.monotonic() + 90
            while "collector ready" not in (tmp_path / "stderr.txt").read_text():
                assert proc.poll() is None and time.monotonic() < until, (
                    tmp_path / "stderr.txt"
                ).read_text()
                time.sleep(0.1)
            # The capture opens some time after the collector says ready (longer on a loaded
            # machine) and says nothing when it does: the same exchange goes out in several
            # rounds, each on its own port pair; the rounds after the capture opened are whole.
            ports = []
            for _ in range(10):  # 20 s: a loaded machine (load 9) missed 5 rounds
                time.sleep(2)
                with (
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a,
                    socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b,
                ):
                    a.bind(("127.0.0.1", 0))
                    b.bind(("127.0.0.1", 0))
                    for _ in range(25):
                        a.sendto(b"y" * 100, b.getsockname())
                        time.sleep(0.005)
                    ports.append(b.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a:
                for _ in range(16):
                    time.sleep(0.5)
                    a.sendto(b"tick", ("127.0.0.1", 9))
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    assert proc.returncode == 0, (tmp_path / "stderr.txt").read_text()
    assert json.loads(out)["rows_stored"] > 0
    with DuckDBStore(db) as store:
        flows = store.read("flows", where={"exporter": "if:lo"})
        assert store.count("flow_features") > 0
    mine = flows.filter(pc.is_in(flows["dst_port"], pa.array(ports, flows["dst_port"].type)))
    assert mine.num_rows >= 1, (
        f"none of the {len(ports)} rounds was captured: "
        + (tmp_path / "stderr.txt").read_text()[-3000:]
    )
    assert len(set(mine["dst_port"].to_pylist())) == mine.num_rows  # one flow per round
    assert max(mine["packets"].to_pylist()) == 25 >= min(mine["packets"].to_pylist())
    last = mine.filter(pc.equal(mine["packets"], 25)).slice(0, 1)
    assert last["bytes"][0].as_py() == 25 * (100 + 8 + 20 + 14)  # payload+UDP+IPv4+Ethernet
    mine = last
    assert mine["app_source"][0].as_py() == "ndpi"
