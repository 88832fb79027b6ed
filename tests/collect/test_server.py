"""The collector server: real UDP on 127.0.0.x, real worker processes, a real DuckDB store."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from shadowcast.collect.config import CollectConfig, ListenerConfig
from shadowcast.collect.decoders import FlowDecoder
from shadowcast.collect.loopback import loopback_ingest
from shadowcast.collect.metrics import CollectSnapshot
from shadowcast.collect.server import CollectServer
from shadowcast.collect.synth import build_stream
from shadowcast.store.duckdb import DuckDBStore

STARTUP_S = 90.0
# The synthetic streams start in November 2023: lift the record-age check for the CLI.
HISTORIC = {**os.environ, "SHADOWCAST_COLLECT__MAX_RECORD_AGE_S": "null"}


def wait_for(cond: Callable[[], bool], timeout: float, what: str) -> None:
    until = time.monotonic() + timeout
    while time.monotonic() < until:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def send(packets: list[bytes], port: int, src: str = "127.0.0.1") -> None:
    family = socket.AF_INET6 if ":" in src else socket.AF_INET
    dst = "::1" if family == socket.AF_INET6 else "127.0.0.1"
    with socket.socket(family, socket.SOCK_DGRAM) as s:
        s.bind((src, 0))
        for i, p in enumerate(packets):
            s.sendto(p, (dst, port))
            if i % 100 == 99:
                time.sleep(0.001)


def expected(packets: list[bytes]) -> pa.Table:
    return FlowDecoder().decode([(p, "x") for p in packets], time.time())


class Running:
    def __init__(self, server: CollectServer, store: DuckDBStore, ports: dict[str, int]) -> None:
        self.server, self.store, self.ports = server, store, ports
        self.result: CollectSnapshot | None = None

    def rows(self, exporter: str) -> int:
        t = self.store.read("flows", where={"exporter": exporter})
        return int(t.num_rows)


@pytest.fixture
def running(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Running]:
    params: dict[str, Any] = {
        "bind": "127.0.0.1",
        "workers": 2,
        "flush_interval_s": 0.5,
        "max_record_age_s": None,  # the synthetic streams start in November 2023
    }
    params.update(getattr(request, "param", {}))
    cfg = CollectConfig(
        listeners=[
            ListenerConfig(protocol="netflow", port=0),
            ListenerConfig(protocol="ipfix", port=0),
        ],
        **params,
    )
    store = DuckDBStore(tmp_path / "flows.duckdb")
    server = CollectServer(cfg, store)
    ports = {proto: port for port, proto in server.bind().items()}
    ready = threading.Event()
    run = Running(server, store, ports)

    def serve() -> None:
        run.result = server.serve(on_ready=lambda _: ready.set())

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        wait_for(lambda: ready.is_set() or not thread.is_alive(), STARTUP_S, "workers")
        assert ready.is_set(), f"collector workers did not start: {server.failures}"
        yield run
    finally:
        server.stop()
        thread.join(60)
        store.close()
    assert not thread.is_alive(), "collector did not stop"


def test_receives_real_udp_and_stores_every_record(running: Running) -> None:
    v5 = build_stream("v5", 3000, seed=1)
    ipfix = build_stream("ipfix", 3000, seed=2)
    send(v5, running.ports["netflow"], src="127.0.0.2")
    send(ipfix, running.ports["ipfix"], src="127.0.0.3")
    wait_for(lambda: running.rows("127.0.0.2") == 3000, 30, "v5 rows in the store")
    wait_for(lambda: running.rows("127.0.0.3") == 3000, 30, "ipfix rows in the store")
    for exporter, packets in (("127.0.0.2", v5), ("127.0.0.3", ipfix)):
        stored = running.store.read("flows", where={"exporter": exporter})
        want = expected(packets)
        assert pc.sum(stored["bytes"]).as_py() == pc.sum(want["bytes"]).as_py()
        assert pc.sum(stored["packets"]).as_py() == pc.sum(want["packets"]).as_py()
    snap = running.server.snapshot()
    assert snap.exporters["127.0.0.2"].packets == len(v5)
    assert snap.exporters["127.0.0.2"].records == 3000
    assert snap.exporters["127.0.0.3"].records == 3000
    assert set(snap.socket_drops) == set(running.ports.values())


def test_sflow_counter_samples_become_interface_series(running: Running) -> None:
    packets = build_stream("sflow", 600, seed=4)
    dec = FlowDecoder()
    dec.decode([(p, "x") for p in packets], time.time())
    want = dec.counters()
    assert want.num_rows > 0
    send(packets, running.ports["ipfix"], src="127.0.0.4")
    wait_for(lambda: running.rows("127.0.0.4") == 600, 30, "sflow flow rows")
    wait_for(
        lambda: running.store.count("interface_counters") == want.num_rows,
        30,
        "interface counter rows",
    )
    got = running.store.read("interface_counters")
    assert set(got.column("exporter").to_pylist()) == {"127.0.0.4"}
    for col in ("if_index", "if_speed", "in_octets", "out_octets", "in_packets", "out_packets"):
        assert sorted(got.column(col).to_pylist()) == sorted(want.column(col).to_pylist()), col


def test_malformed_packets_are_counted_and_dropped(running: Running) -> None:
    good = build_stream("v5", 300, seed=3)
    header_only = struct.pack("!HHIIIIBBH", 5, 30, 0, 0, 0, 0, 0, 0, 0)  # says 30, has 0
    bad = [
        b"",
        b"\x00",
        os.urandom(700),
        header_only,
        good[0][:100],
        b"\x00\x0a\xff\xff" + os.urandom(200),  # IPFIX with a length beyond the datagram
        b"\x00\x09\x00\x01" + b"\x00" * 16 + b"\x00\x00\x00\x03",  # v9: flowset length 3
    ]
    port = running.ports["netflow"]
    send(bad, port, src="127.0.0.4")
    send(good[:5], port, src="127.0.0.4")
    send(bad, port, src="127.0.0.4")
    send(good[5:], port, src="127.0.0.4")
    wait_for(lambda: running.rows("127.0.0.4") == 300, 30, "the good records")
    wait_for(
        lambda: running.server.snapshot().exporters["127.0.0.4"].packets == 2 * len(bad) + 10,
        10,
        "every datagram accounted",
    )
    st = running.server.snapshot().exporters["127.0.0.4"]
    assert st.records == 300
    assert st.decode_errors >= 2 * (len(bad) - 1)  # the empty datagram may count or not
    # still serving after the garbage
    send(build_stream("v5", 30, seed=4), port, src="127.0.0.5")
    wait_for(lambda: running.rows("127.0.0.5") == 30, 30, "records after the garbage")


def test_sequence_gaps_estimate_lost_records(running: Running) -> None:
    v5 = build_stream("v5", 600, seed=5)  # 20 packets of 30
    sent = v5[:7] + v5[9:]  # two packets lost on the way
    send(sent, running.ports["netflow"], src="127.0.0.6")
    wait_for(lambda: running.rows("127.0.0.6") == 540, 30, "rows")
    st = running.server.snapshot().exporters["127.0.0.6"]
    assert st.sequence_gaps == 1
    assert st.lost_records_estimate == 60


@pytest.mark.parametrize("running", [{"flush_rows": 10_000_000}], indirect=True)
def test_flushes_by_time(running: Running) -> None:
    send(build_stream("v5", 30, seed=6), running.ports["netflow"], src="127.0.0.7")
    t0 = time.monotonic()
    wait_for(lambda: running.rows("127.0.0.7") == 30, 10, "a time-based flush")
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("running", [{"flush_rows": 300, "flush_interval_s": 60.0}], indirect=True)
def test_flushes_by_size(running: Running) -> None:
    send(build_stream("v5", 900, seed=7), running.ports["netflow"], src="127.0.0.8")
    # 60 s batches: rows can only reach the store this soon because batches fill up
    wait_for(lambda: running.rows("127.0.0.8") >= 600, 20, "size-based flushes")


@contextlib.contextmanager
def cli(tmp_path: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """``shadowcast collect ARGS`` in a subprocess (stderr to a file); killed if left running."""
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "shadowcast.cli", "collect", *args],
            cwd=tmp_path,
            env=HISTORIC,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


def _port(tmp_path: Path, proc: subprocess.Popen[str]) -> int:
    def ready() -> bool:
        assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
        return "collector ready" in (tmp_path / "stderr.txt").read_text()

    wait_for(ready, STARTUP_S, "the collector to start")
    for line in (tmp_path / "stderr.txt").read_text().splitlines():
        if line.startswith("listening udp"):
            return int(line.split()[2].rsplit(":", 1)[1])
    raise AssertionError("no listening line")


@pytest.mark.slow
def test_sigterm_flushes_everything_accepted(tmp_path: Path) -> None:
    """Batches are an hour long, so every row in the store was flushed at SIGTERM."""
    db = tmp_path / "s.duckdb"
    with cli(
        tmp_path,
        *("--bind", "127.0.0.1", "--listen", "netflow=0", "--workers", "2"),
        *("--flush-rows", "10000000", "--flush-interval", "60", "--store", str(db), "--json"),
    ) as proc:
        port = _port(tmp_path, proc)
        streams = [build_stream("v5", 3000, seed=10 + i) for i in range(3)]
        senders = [
            threading.Thread(target=send, args=(s, port, f"127.0.1.{i + 1}"))
            for i, s in enumerate(streams)
        ]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        proc.send_signal(signal.SIGTERM)  # at once: most datagrams still sit in the sockets
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, (tmp_path / "stderr.txt").read_text()
    doc = json.loads(out)
    assert sum(doc["socket_drops"].values()) == 0
    assert doc["totals"]["records"] == 9000
    assert doc["rows_stored"] == 9000
    for i in range(3):
        assert doc["exporters"][f"127.0.1.{i + 1}"]["packets"] == 100
    with DuckDBStore(db) as store:
        assert store.count("flows") == 9000
        stored = store.read("flows")
    want = expected([p for s in streams for p in s])
    assert pc.sum(stored["bytes"]).as_py() == pc.sum(want["bytes"]).as_py()


@pytest.mark.slow
def test_stats_table_and_duration(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        mport = probe.getsockname()[1]
    n_packets = len(build_stream("ipfix", 600, seed=20)) + 1
    with cli(
        tmp_path,
        *("--bind", "127.0.0.1", "--listen", "ipfix=0", "--workers", "1", "--duration", "5"),
        *("--store", str(tmp_path / "s.duckdb"), "--stats", "--metrics-port", str(mport)),
    ) as proc:
        port = _port(tmp_path, proc)
        send(build_stream("ipfix", 600, seed=20), port, src="127.0.2.1")
        send([b"garbage"], port, src="127.0.2.1")
        want = f'shadowcast_collect_packets_total{{exporter="127.0.2.1"}} {float(n_packets)}'

        def scraped() -> bool:
            url = f"http://127.0.0.1:{mport}/metrics"
            with urllib.request.urlopen(url, timeout=5) as r:
                return want in r.read().decode()

        wait_for(scraped, 4, "the Prometheus counters")
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, (tmp_path / "stderr.txt").read_text()
    row = next(line for line in out.splitlines() if "127.0.2.1" in line)
    cells = [c.strip() for c in row.split("│") if c.strip()]
    assert cells[:3] == ["127.0.2.1", str(n_packets), "600"]
    assert cells[4] == "1"  # one decode error


@pytest.mark.parametrize("running", [{"sampling_overrides": {"127.0.0.9": 10}}], indirect=True)
def test_sampling_override_reaches_the_workers(running: Running) -> None:
    v5 = build_stream("v5", 60, seed=8)
    send(v5, running.ports["netflow"], src="127.0.0.9")
    wait_for(lambda: running.rows("127.0.0.9") == 60, 30, "rows")
    stored = running.store.read("flows", where={"exporter": "127.0.0.9"})
    assert set(stored["sampling_rate"].to_pylist()) == {10}
    assert pc.sum(stored["bytes"]).as_py() == 10 * pc.sum(expected(v5)["bytes"]).as_py()


def test_loopback_ingest_keeps_every_flow_and_application(tmp_path: Path) -> None:
    flows = expected(build_stream("ipfix", 900, seed=30))
    assert set(flows["app"].to_pylist()) - {""}, "the stream should carry applications"
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        snap = loopback_ingest(flows, store)
        stored = store.read("flows")
    assert snap.rows_stored == 900 and sum(snap.socket_drops.values()) == 0
    assert sorted(stored["app"].to_pylist()) == sorted(flows["app"].to_pylist())
    assert pc.sum(stored["bytes"]).as_py() == pc.sum(flows["bytes"]).as_py()


@pytest.mark.parametrize("running", [{"bind": "::", "workers": 1}], indirect=True)
def test_dual_stack_listener_names_exporters_by_family(running: Running) -> None:
    """Bound to ``::``, IPv4 exporters arrive v4-mapped and are named as plain IPv4."""
    send(build_stream("v5", 30, seed=40), running.ports["netflow"], src="::1")
    send(build_stream("v5", 60, seed=41), running.ports["netflow"], src="127.0.0.10")
    wait_for(lambda: running.rows("::1") == 30, 30, "IPv6 exporter rows")
    wait_for(lambda: running.rows("127.0.0.10") == 60, 30, "IPv4 exporter rows")
