"""The living service on ClickHouse: a replay gives the same results as on DuckDB, and
``shadowcast run`` serves its read socket and resumes from a ClickHouse store."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from chlocal import config, servers

from shadowcast.replay.driver import ReplayRun, run_replay
from shadowcast.replay.source import TrafficSource
from shadowcast.store.base import Store
from shadowcast.store.config import StoreConfig, open_store
from shadowcast.store.replay_target import open_target, replay_target, reset
from shadowcast.store.shared import SharedStore

pytestmark = pytest.mark.integration


def replay(settings: Any, source: TrafficSource, store: Store, tmp: Path) -> dict[str, Any]:
    """Run the replay; what it stored and what it did, read back before the store closes."""
    t0 = time.perf_counter()
    r: ReplayRun = run_replay(settings, source, store, tmp / "state", ipfix=False)
    r.service.s.writer.close()
    seconds = time.perf_counter() - t0
    od = store.read("od_series")
    by_step = od.group_by("time").aggregate([("mbps", "sum")]).sort_by("time")
    out = {
        "od_rows": od.num_rows,
        "od_times": by_step.column("time").to_pylist(),
        "od_sums": np.asarray(by_step.column("mbps_sum").to_numpy()),
        "decisions": _counts(store.read("decisions"), "action"),
        "alerts": store.read("alerts").num_rows,
        "link_rows": store.read("link_series").num_rows,
        "actions": [_anonymous(a) for a in r.state.actions],
        "state_alerts": [(a.link, a.issued_s) for a in r.state.alerts],
        "acting": dataclasses.asdict(r.state.acting.totals),
        "baseline": dataclasses.asdict(r.state.baseline.totals),
        "plan_counts": dict(r.service.s.plan.counts),
        "rows": sum(r.service.s.writer.rows_written.values()),
        "seconds": seconds,
    }
    store.close()
    return out


def _anonymous(action: dict[str, Any]) -> dict[str, Any]:
    """An action without its plan id (random per run)."""
    pid = str(action.get("plan_id", ""))
    return {
        k: (v.replace(pid, "<plan>") if pid and isinstance(v, str) else v)
        for k, v in action.items()
        if k != "plan_id"
    }


def _counts(tab: pa.Table, col: str) -> dict[str, int]:
    vc = pc.value_counts(tab.column(col)).to_pylist()
    return {str(d["values"]): int(d["counts"]) for d in vc}


def test_a_replay_on_clickhouse_matches_the_one_on_duckdb(
    settings: Any, source: TrafficSource, tmp_path: Path
) -> None:
    duck = replay(
        settings,
        source,
        SharedStore(open_store(StoreConfig(data_dir=tmp_path, path="replay.duckdb"))),
        tmp_path / "duck",
    )
    with servers(tmp_path / "ch") as found:
        target = replay_target(config(found, "prod"), tmp_path)
        assert target.label.endswith("/prod_replay")
        reset(target)  # nothing there yet: a no-op
        ch = replay(settings, source, SharedStore(open_target(target)), tmp_path / "ch1")
        reset(target)  # a new replay drops the earlier one's rows
        with open_target(target) as again:
            assert again.count("od_series") == 0
    assert ch["od_rows"] == duck["od_rows"] and ch["od_times"] == duck["od_times"]
    assert len(ch["od_times"]) == source.steps
    np.testing.assert_allclose(ch["od_sums"], duck["od_sums"], rtol=1e-9)
    for key in ("decisions", "alerts", "link_rows", "actions", "state_alerts", "plan_counts"):
        assert ch[key] == duck[key], key
    assert ch["acting"] == duck["acting"]  # the same steps: the same numbers
    assert ch["baseline"] == duck["baseline"]
    assert duck["decisions"].get("applied", 0) >= 1  # the loop acted: something to compare
    print(
        f"\nreplay: {ch['rows']} stage rows, clickhouse {ch['seconds']:.1f} s "
        f"({ch['rows'] / ch['seconds']:.0f} rows/s end to end), duckdb {duck['seconds']:.1f} s"
    )


def test_run_on_clickhouse_serves_reads_and_resumes(tmp_path: Path) -> None:
    from test_run_service import cli, send
    from test_run_service import setup as run_setup

    cfg, port = run_setup(tmp_path)
    with servers(tmp_path / "ch") as found:
        hosts = json.dumps([s.address for s in found])
        with cfg.open("a") as f:
            f.write(
                f"store:\n  backend: clickhouse\n  clickhouse: {{hosts: {hosts}, database: svc}}\n"
            )
        proc = subprocess.Popen(
            [sys.executable, "-m", "shadowcast.cli", "-c", str(cfg), "run", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        )  # fmt: skip
        try:
            time.sleep(3)
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            sent = send(port, 55)
            stats = cli(cfg, "store", "stats", "--json")  # through the service's socket
            assert stats.returncode == 0, stats.stderr
            doc = json.loads(stats.stdout)
            assert doc["tables"]["flows"]["rows"] > 0 and doc["tables"]["od_series"]["rows"] > 0
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        health = json.loads(out)
        assert health["stages"]["forecast"]["ready"], health
        assert health["stages"]["store"]["rows_lost"] == 0
        assert not health["stages"]["store"]["degraded"]
        assert sent > 0
        with open_store(config(found, "svc")) as store:
            stored_flows = store.count("flows")
            steps = len(set(store.read("od_series").column("time").to_pylist()))
        assert health["stages"]["collector"]["rows_lost"] == 0
        assert health["stages"]["collector"]["rows_stored"] == stored_flows
        intake = health["stages"]["intake"]["records"]
        assert stored_flows == intake, (stored_flows, intake, sent, health["stages"]["rollup"])
        # a restart resumes from the ClickHouse store: models loaded, the next step known
        again = cli(cfg, "run", "--duration", "4", "--json", timeout=120)
        assert again.returncode == 0, again.stderr[-3000:]
        h2 = json.loads(again.stdout)
        assert h2["restored"]["models_loaded"] is True
        assert h2["restored"]["resume_at_s"] is not None
        assert h2["steps"] >= steps


def test_run_replay_on_clickhouse_uses_its_own_database(tmp_path: Path) -> None:
    """``shadowcast run --replay`` honours ``store.backend``: its rows go to
    ``<database>_live_replay`` on the configured servers, not to a DuckDB file."""
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}/api/v1/health"

    def health() -> dict[str, Any]:
        try:
            with urllib.request.urlopen(base, timeout=5) as r:
                return dict(json.load(r))
        except OSError:
            return {}

    with servers(tmp_path / "ch") as found:
        store_cfg = config(found, "svc")
        cfg = tmp_path / "shadowcast.yaml"
        cfg.write_text(
            f"data_dir: {tmp_path / 'var'}\n"
            f"api: {{listen: '127.0.0.1:{port}'}}\n"
            "replay: {weeks: 0.03}\n"
            f"store:\n  backend: clickhouse\n"
            f"  clickhouse: {{hosts: {json.dumps(store_cfg.clickhouse.hosts)}, database: svc}}\n"
        )
        argv = [sys.executable, "-m", "shadowcast.cli", "-c", str(cfg), "run", "--replay",
                "synthetic", "--speed", "max", "--warmup", "1h"]  # fmt: skip
        log = tmp_path / "run.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
        try:
            deadline = time.monotonic() + 300
            while "finished" not in health().get("note", ""):
                assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
            target = replay_target(store_cfg, tmp_path / "var", "live-replay")
            assert target.label.endswith("/svc_live_replay")
            with open_target(target) as st:
                assert st.count("od_series") > 0 and st.count("link_series") > 0
            assert not (tmp_path / "var" / "live-replay.duckdb").exists()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
        assert proc.returncode == 0, log.read_text()[-3000:]
