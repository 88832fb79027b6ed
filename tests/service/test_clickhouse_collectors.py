"""Several collectors, one store: two ``shadowcast collect`` processes, each with its own
port and exporters, fill one two-shard ClickHouse cluster, and a reader of the cluster (as
forecasting reads it) sees the union."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from chlocal import config, servers

from shadowcast.collect.synth import ipfix_export
from shadowcast.replay.export import exporter_address
from shadowcast.store.base import AggQuery
from shadowcast.store.clickhouse_io import Connection
from shadowcast.store.config import open_store
from shadowcast.store.conform import conform
from shadowcast.store.synth import random_table

STEP = 10


def free_udp_port() -> int:
    import socket

    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def send(port: int, routers: list[int], rounds: int) -> int:
    """IPFIX from the ring's ``routers`` (one exporter address each) to ``port``."""
    import socket

    from ringnet import ring

    from shadowcast.replay.export import StepExporter

    topo = ring()
    pairs = [(a, b) for a in topo.nodes for b in topo.nodes if a != b]
    exp = StepExporter(topo, pairs, STEP)
    sent = 0
    socks: dict[str, socket.socket] = {}
    for r in range(rounds):
        t0 = int(time.time()) // STEP * STEP - STEP * (rounds - r)
        flows = exp.flows(t0, {"video": np.full(len(pairs), 5.0)})
        for router, part in exp.by_router(flows):
            if router not in routers:
                continue
            src = exporter_address(router)
            s = socks.get(src)
            if s is None:
                s = socks[src] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((src, 0))
            for msg in ipfix_export(part, app_mode="name"):
                s.sendto(msg, ("127.0.0.1", port))
            sent += part.num_rows
        time.sleep(0.05)
    for s in socks.values():
        s.close()
    return sent


@pytest.mark.integration
def test_two_collectors_fill_one_cluster_and_a_reader_sees_both(tmp_path: Path) -> None:
    with servers(tmp_path / "ch", count=2) as found:
        hosts = json.dumps([s.address for s in found])
        procs, ports = [], []
        for i in range(2):
            port = free_udp_port()
            cfg = tmp_path / f"collector{i}.yaml"
            cfg.write_text(
                f"data_dir: {tmp_path / f'var{i}'}\n"
                "collect: {bind: 127.0.0.1, workers: 1, flush_interval_s: 0.2}\n"
                "store:\n  backend: clickhouse\n"
                f"  clickhouse: {{hosts: {hosts}, database: flows, cluster: svc_test}}\n"
            )
            cmd = [sys.executable, "-m", "shadowcast.cli", "-c", str(cfg), "collect"]
            procs.append(
                subprocess.Popen(
                    [*cmd, "--listen", f"ipfix={port}", "--duration", "15", "--json"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    text=True,
                    cwd=tmp_path,
                )  # fmt: skip
            )
            ports.append(port)
        time.sleep(5)  # both listening (the schema migrated once; the second finds it)
        for p in procs:
            assert p.poll() is None, p.stderr.read() if p.stderr else ""
        sent = [send(ports[0], [0, 1], 6), send(ports[1], [2, 3], 6)]
        docs = []
        for p in procs:
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-3000:]
            docs.append(json.loads(out))
        stored = [int(d["rows_stored"]) for d in docs]
        assert all(s > 0 for s in sent) and stored == sent
        with open_store(config(found, "flows")) as store:
            assert store.count("flows") == sum(sent)
            exporters = set(store.read("flows").column("exporter").to_pylist())
            by = store.aggregate(AggQuery("flows", 300, by=("exporter",), values=("bytes",)))
        assert exporters == {exporter_address(i) for i in range(4)}, exporters
        assert set(by.column("exporter").to_pylist()) == exporters  # the union, aggregated
        # every row is in one shard's local table (sharded by exporter: these four
        # exporters happen to hash to one shard; the store's cluster suite checks the spread)
        per_shard = []
        for s in found:
            host, port = s.address.rsplit(":", 1)
            conn = Connection(host, int(port))
            try:
                per_shard.append(int(conn.scalar("SELECT count() FROM flows.flows_local", "n")))
            finally:
                conn.close()
        assert sum(per_shard) == sum(sent), per_shard


# -- service.flows_from: store ------------------------------------------------------------


def _flows(n: int, t0_ms: int, seed: int) -> pa.Table:
    """Flows starting over 10 minutes from ``t0_ms``, each lasting up to two minutes."""
    t = random_table("flows", n, seed=seed, t0_ms=t0_ms, span_ms=600_000)
    rng = np.random.default_rng(seed)
    start = t.column("time_start").cast(pa.int64()).to_numpy()
    end = start + rng.integers(0, 120_000, n)
    col = pa.array(end).cast(pa.timestamp("ms", tz="UTC"))
    return t.set_column(t.schema.get_field_index("time_end"), "time_end", col)


def test_the_store_feed_hands_each_ended_flow_over_once(tmp_path: Path) -> None:
    from shadowcast.service.storefeed import StoreFeed
    from shadowcast.store.duckdb import DuckDBStore

    t0 = 1_700_000_000_000
    got: list[pa.Table] = []
    with DuckDBStore(str(tmp_path / "s.duckdb")) as store:
        first, later = _flows(500, t0, 1), _flows(300, t0 + 400_000, 2)
        store.write("flows", first)
        feed = StoreFeed(
            store, got.append, start_s=t0 // 1000, poll_s=1, lateness_s=10, max_duration_s=120
        )
        assert feed.poll(t0 / 1000 + 5) == 0  # nothing has ended lateness ago yet
        n1 = feed.poll(t0 / 1000 + 400)
        store.write("flows", later)  # another collector's rows, stored before they are due
        n2 = feed.poll(t0 / 1000 + 900)
        n3 = feed.poll(t0 / 1000 + 2000)
    everything = pa.concat_tables([first, later])
    assert n1 > 0 and n2 > 0 and n1 + n2 + n3 == everything.num_rows
    handed = pa.concat_tables(got)
    key = ["time_start", "time_end", "bytes", "packets"]
    assert sorted(handed.select(key).to_pylist(), key=str) == sorted(
        conform("flows", everything).select(key).to_pylist(), key=str
    )
    assert feed.stats()["rows"] == everything.num_rows


def send_live(ports: dict[int, int], seconds: float) -> dict[int, int]:
    """IPFIX of the current step from each router ``r`` to ``ports[r]`` for ``seconds``;
    the records sent to each port."""
    import socket

    from ringnet import ring

    from shadowcast.replay.export import StepExporter

    topo = ring()
    pairs = [(a, b) for a in topo.nodes for b in topo.nodes if a != b]
    exp = StepExporter(topo, pairs, STEP)
    sent = dict.fromkeys(ports.values(), 0)
    socks: dict[str, socket.socket] = {}
    end = time.time() + seconds
    while time.time() < end:
        t0 = int(time.time()) // STEP * STEP
        flows = exp.flows(t0, {"video": np.full(len(pairs), 5.0)})
        for router, part in exp.by_router(flows):
            src = exporter_address(router)
            s = socks.get(src)
            if s is None:
                s = socks[src] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((src, 0))
            for msg in ipfix_export(part, app_mode="name"):
                s.sendto(msg, ("127.0.0.1", ports[router]))
            sent[ports[router]] += part.num_rows
        time.sleep(STEP / 2)
    for s in socks.values():
        s.close()
    return sent


@pytest.mark.integration
def test_one_service_rolls_up_every_collectors_flows_from_the_store(tmp_path: Path) -> None:
    from test_run_service import setup as run_setup

    cfg, run_port = run_setup(tmp_path)
    text = cfg.read_text().replace("lateness_s: 2}", "lateness_s: 4}")
    text = text.replace(
        "  checkpoint_every: 20s\n",
        "  checkpoint_every: 20s\n  flows_from: store\n  flows_poll: 1s\n  flows_lateness: 2s\n",
    )
    with servers(tmp_path / "ch") as found:
        store_yaml = (
            f"store:\n  backend: clickhouse\n"
            f"  clickhouse: {{hosts: [{found[0].address}], database: many}}\n"
        )
        cfg.write_text(text + store_yaml)
        other = tmp_path / "other.yaml"
        other.write_text(
            f"data_dir: {tmp_path / 'other'}\n"
            "collect: {bind: 127.0.0.1, workers: 1, flush_interval_s: 0.2}\n" + store_yaml
        )
        col_port = free_udp_port()
        run = subprocess.Popen(
            [sys.executable, "-m", "shadowcast.cli", "-c", str(cfg), "run", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        )  # fmt: skip
        col = subprocess.Popen(
            [sys.executable, "-m", "shadowcast.cli", "-c", str(other), "collect",
             "--listen", f"ipfix={col_port}", "--duration", "45", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        )  # fmt: skip
        try:
            sock = tmp_path / "var" / "shadowcast.sock"
            until = time.monotonic() + 90
            while not sock.exists():
                assert run.poll() is None, run.stderr.read() if run.stderr else ""
                assert time.monotonic() < until, "the service did not start"
                time.sleep(0.2)
            time.sleep(2)
            # routers A, B export to the service's own collector; C, D to the other one
            sent = send_live({0: run_port, 1: run_port, 2: col_port, 3: col_port}, 30)
            time.sleep(4)  # the last flows stored and past flows_lateness
        finally:
            run.send_signal(signal.SIGTERM)
            out, err = run.communicate(timeout=120)
            col.send_signal(signal.SIGTERM)
            col_out, col_err = col.communicate(timeout=120)
        assert run.returncode == 0, err[-3000:]
        assert col.returncode == 0, col_err[-3000:]
        health = json.loads(out)
        with open_store(config(found, "many")) as store:
            flows = store.count("flows")
            od = store.read("od_series")
    feed = health["stages"]["store_feed"]
    assert flows == sum(sent.values()), (flows, sent)
    # the service saw both collectors' flows, each once, through the store
    assert feed["rows"] == health["stages"]["intake"]["records"] <= flows
    assert feed["rows"] > max(sent.values()), (feed, sent)
    assert set(od.column("src").to_pylist()) == {"A", "B", "C", "D"}
