"""Several collectors, one store: two ``shadowcast collect`` processes, each with its own
port and exporters, fill one two-shard ClickHouse cluster, and a reader of the cluster (as
forecasting reads it) sees the union."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from chlocal import config, servers

from shadowcast.collect.synth import ipfix_export
from shadowcast.replay.export import exporter_address
from shadowcast.store.base import AggQuery
from shadowcast.store.clickhouse_io import Connection
from shadowcast.store.config import open_store

pytestmark = pytest.mark.integration
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
