"""``shadowcast run`` as an operator runs it: a real process, real IPFIX over loopback UDP,
the store read by other commands while the service holds it, SIGTERM, and a restart."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from shadowcast.collect.synth import ipfix_export
from shadowcast.datasets.topology import write_node_link
from shadowcast.replay.export import StepExporter, exporter_address, router_prefix

pytestmark = pytest.mark.integration
STEP = 10


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = int(s.getsockname()[1])
    s.close()
    return port


def setup(tmp: Path) -> tuple[Path, int]:
    from ringnet import ring

    topo = ring()
    write_node_link(topo, tmp / "topo.json")
    sites = {
        "sites": {n: {"prefixes": [router_prefix(i)]} for i, n in enumerate(topo.nodes)},
        "exporters": {exporter_address(i): {"site": n} for i, n in enumerate(topo.nodes)},
    }
    (tmp / "sites.json").write_text(json.dumps(sites))
    port = free_udp_port()
    cfg = tmp / "shadowcast.yaml"
    cfg.write_text(
        f"""
data_dir: {tmp / "var"}
collect:
  bind: 127.0.0.1
  listeners: [{{protocol: ipfix, port: {port}}}]
  workers: 1
  flush_interval_s: 0.2
profile:
  sites_file: {tmp / "sites.json"}
  use_model: false
  tiers: {{"1m": {{grain_s: 60, retention_s: 86400}}}}
rollup: {{step: {STEP}s, lateness_s: 2}}
forecast: {{model: persistence, horizons: [10s, 1m]}}
alert: {{within_s: 60, notifiers: [log]}}
api: {{listen: "127.0.0.1:0"}}
service:
  topology: {tmp / "topo.json"}
  mode: observe
  warmup: 30s
  plan_horizon: 1m
  checkpoint_every: 20s
"""
    )
    return cfg, port


def cli(cfg: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shadowcast.cli", "-c", str(cfg), *args],
        capture_output=True, text=True, timeout=timeout, cwd=cfg.parent,
    )  # fmt: skip


def send(port: int, seconds: float, unknown: bool = False) -> int:
    """IPFIX from every router of the ring (one exporter address each) for ``seconds``."""
    from ringnet import ring

    topo = ring()
    pairs = [(a, b) for a in topo.nodes for b in topo.nodes if a != b]
    exp = StepExporter(topo, pairs, STEP)
    socks: dict[str, socket.socket] = {}
    sent = 0
    end = time.time() + seconds
    while time.time() < end:
        t0 = int(time.time()) // STEP * STEP
        flows = exp.flows(t0, {"video": np.full(len(pairs), 5.0)})
        for router, part in exp.by_router(flows):
            src = "127.9.9.9" if unknown else exporter_address(router)
            s = socks.get(src)
            if s is None:
                s = socks[src] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                s.bind((src, 0))
            for msg in ipfix_export(part, app_mode="name"):
                s.sendto(msg, ("127.0.0.1", port))
            sent += part.num_rows
        time.sleep(STEP / 2)
    for s in socks.values():
        s.close()
    return sent


def test_service_runs_is_read_while_running_and_resumes(tmp_path: Path) -> None:
    cfg, port = setup(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "shadowcast.cli", "-c", str(cfg), "run", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
    )  # fmt: skip
    try:
        time.sleep(3)
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        sent = send(port, 50)
        sent_unknown = send(port, 6, unknown=True)
        # the service holds the store: other commands read it through its socket
        stats = cli(cfg, "store", "stats", "--json")
        assert stats.returncode == 0, stats.stderr
        doc = json.loads(stats.stdout)
        assert doc["tables"]["flows"]["rows"] > 0 and doc["tables"]["od_series"]["rows"] > 0
        top = cli(cfg, "profile", "top", "--by", "category", "--last", "1h", "--json")
        assert top.returncode == 0, top.stderr
        assert {r["category"] for r in json.loads(top.stdout)["rows"]} == {"video"}
        db = str(tmp_path / "var" / "shadowcast.duckdb")
        direct = subprocess.run(  # and nothing can open the file directly meanwhile
            [sys.executable, "-c", f"import duckdb; duckdb.connect({db!r})"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert direct.returncode != 0 and "lock" in direct.stderr.lower()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-3000:]
    health = json.loads(out)
    assert health["status"] in ("ready", "starting")
    rollup = health["stages"]["rollup"]
    assert rollup["mapped_records"] > 0
    # an exporter nobody described: counted and reported, never guessed
    assert rollup["unmapped_records"]["ingress_unmapped"] == sent_unknown
    assert any("127.9.9.9" in k for k in rollup["unmapped_edges"])
    assert health["stages"]["forecast"]["ready"], health
    version = health["stages"]["forecast"]["version"]
    assert (tmp_path / "var" / "state" / "models" / "forecast-cycle.json").is_file()
    assert sent > 0
    # a restart resumes: the models are loaded, not refitted from nothing
    again = cli(cfg, "run", "--duration", "4", "--json", timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    h2 = json.loads(again.stdout)
    assert h2["restored"]["models_loaded"] is True
    assert h2["restored"]["resume_at_s"] is not None
    assert h2["stages"]["forecast"]["ready"] and h2["stages"]["forecast"]["version"] >= version
    assert not (tmp_path / "var" / "shadowcast.sock").exists()  # removed on the way out
