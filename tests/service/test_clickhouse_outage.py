"""The store goes away under the service: the stage writer keeps every row (bounded in
memory, spilled to disk), the service says it is degraded while it retries, and every row
arrives once the store is back.

The unit tests use a real DuckDB store behind a thin wrapper that fails while told to; the
integration test kills a real clickhouse-server in the middle of a replay and restarts it
on the same data folder.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from chlocal import config, servers

from shadowcast.errors import StoreError
from shadowcast.replay import driver
from shadowcast.replay.source import TrafficSource
from shadowcast.service.writer import StageWriter
from shadowcast.store import clickhouse_local
from shadowcast.store.config import open_store
from shadowcast.store.conform import conform
from shadowcast.store.duckdb import DuckDBStore
from shadowcast.store.shared import SharedStore
from shadowcast.store.synth import random_table

T0_MS = 1_700_000_000_000


class Flaky:
    """A real DuckDB store whose writes and transactions fail while ``down`` is set."""

    def __init__(self, store: DuckDBStore) -> None:
        self.store = store
        self.down = threading.Event()

    def _check(self) -> None:
        if self.down.is_set():
            raise StoreError("write failed: the server is away")

    def write(self, table: str, batch: pa.Table) -> int:
        self._check()
        return self.store.write(table, batch)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        self._check()
        with self.store.transaction():
            yield

    def count(self, table: str) -> int:
        self._check()
        return self.store.count(table)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[Flaky]:
    s = DuckDBStore(str(tmp_path / "w.duckdb"))
    yield Flaky(s)
    s.close()


def rows(n: int, seed: int) -> pa.Table:
    return random_table("alerts", n, seed=seed, t0_ms=T0_MS)


def stored(f: Flaky) -> pa.Table:
    return f.store.read("alerts")


def same_rows(a: pa.Table, b: pa.Table) -> bool:
    return sorted(map(str, a.to_pylist())) == sorted(map(str, b.select(a.column_names).to_pylist()))


def wait_caught_up(w: StageWriter, timeout_s: float = 30.0) -> None:
    until = time.monotonic() + timeout_s
    while True:
        try:
            w.flush()
            if not w.degraded:
                return
        except StoreError:
            pass
        assert time.monotonic() < until, w.health()
        time.sleep(0.05)


def test_a_failed_flush_spills_and_every_row_arrives_when_the_store_returns(
    flaky: Flaky, tmp_path: Path
) -> None:
    w = StageWriter(flaky, buffer_bytes=1, spill_dir=tmp_path / "spool", retry_max_s=0.05)
    sent = [rows(50, seed=i) for i in range(6)]
    w.add("alerts", sent[0])
    assert w.flush() == 50 and not w.degraded  # a healthy store: one transaction
    flaky.down.set()
    for i in (1, 2, 3):
        w.add("alerts", sent[i])
        with pytest.raises(StoreError, match="queued for retry"):
            w.flush()
        assert w.degraded
    h = w.health()
    assert h["degraded"] and h["queued_rows"] == 150 and h["rows_lost"] == 0
    assert h["rows_spilled"] >= 100  # past one byte of memory, batches wait on disk
    assert list((tmp_path / "spool").glob("*.arrow"))
    w.add("alerts", sent[4])  # still down: queued behind the others, not written first
    with pytest.raises(StoreError):
        w.flush()
    flaky.down.clear()
    w.add("alerts", sent[5])
    wait_caught_up(w)
    assert stored(flaky).num_rows == 300
    want = conform("alerts", pa.concat_tables(sent))
    assert same_rows(stored(flaky), want)
    assert not list((tmp_path / "spool").glob("*.arrow"))
    through_spool = w.health()["rows_retried_written"]
    w.add("alerts", rows(10, seed=9))
    assert w.flush() == 10  # caught up: one transaction again, not through the spool
    assert w.health()["rows_retried_written"] == through_spool
    assert stored(flaky).num_rows == 310
    w.close()


def test_closed_while_the_store_is_away_the_next_writer_writes_the_rows_first(
    flaky: Flaky, tmp_path: Path
) -> None:
    spool = tmp_path / "spool"
    w = StageWriter(flaky, spill_dir=spool, retry_max_s=0.05, close_timeout_s=0.2)
    flaky.down.set()
    w.add("alerts", rows(40, seed=1))
    with pytest.raises(StoreError):
        w.flush()
    w.close()  # the store still away: the rows go to the spill folder
    assert len(list(spool.glob("*.arrow"))) == 1 and stored(flaky).num_rows == 0
    flaky.down.clear()
    w2 = StageWriter(flaky, spill_dir=spool, retry_max_s=0.05)
    assert w2.health()["rows_recovered"] == 40
    wait_caught_up(w2)
    assert stored(flaky).num_rows == 40
    w2.close()


# -- a real server killed and restarted in the middle of a replay ---------------------------


def _count_by(tab: pa.Table, keys: list[str]) -> int:
    return int(tab.group_by(keys).aggregate([]).num_rows)


@pytest.mark.integration
def test_a_clickhouse_server_killed_mid_replay_loses_no_row(
    settings: Any, source: TrafficSource, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = settings.service.model_copy(update={"flush_s": 0.1, "retry_max": "1s"})
    settings = settings.model_copy(update={"service": svc})
    with servers(tmp_path / "ch") as (server,):
        cfg = config([server], "outage", connect_timeout_s=1, timeout_s=10)
        store = SharedStore(open_store(cfg))
        seen: dict[str, Any] = {"step": 0, "down_at": None, "up_at": None}
        box: list[Any] = []

        def progress(n: int) -> None:
            seen["step"] += n
            step = seen["step"]
            if step == 110:
                server.process.kill()
                server.process.wait(30)
                seen["down_at"] = time.monotonic()
            if seen["up_at"] is not None and "drained_s" not in seen:
                if not box[0].s.writer.degraded:  # the spool has stored its backlog
                    seen["drained_s"] = time.monotonic() - seen["up_at"]
            if seen["down_at"] is not None and seen["up_at"] is None:
                time.sleep(0.05)  # wall time for flushes to fail while it is away
                if step == 170:
                    svc = box[0]
                    seen["health"] = svc.health()
                    seen["status"] = svc.status
                    restarted = clickhouse_local.start(server.folder, server.port)
                    box.append(restarted)
                    seen["up_at"] = time.monotonic()

        orig_build = driver.build_service

        def build(rs: Any, env: Any) -> Any:
            s = orig_build(rs, env)
            box.insert(0, s)
            return s

        monkeypatch.setattr(driver, "build_service", build)
        r = driver.run_replay(
            settings, source, store, tmp_path / "state", ipfix=False, progress=progress
        )
        w = r.service.s.writer
        wait_caught_up(w, 120)
        drained_s = seen.get("drained_s", time.monotonic() - seen["up_at"])
        health = r.service.health()["stages"]["store"]
        w.close()
        od = store.read("od_series")
        decisions = store.read("decisions")
        alerts = store.read("alerts")
        store.close()
        for extra in box[1:]:
            clickhouse_local.stop(extra)
    # while the server was away, the service said so and held the rows
    away = seen["health"]["stages"]["store"]
    assert seen["status"] == "degraded", seen["status"]
    assert away["degraded"] and away["queued_rows"] > 0 and away["write_errors"] > 0
    assert health["rows_lost"] == 0 and not health["degraded"]
    # every step's rows arrived, each once
    assert _count_by(od, ["time", "src", "dst", "app"]) == od.num_rows
    assert len(set(od.column("time").to_pylist())) == source.steps
    total = pc.sum(od.filter(pc.equal(od.column("app"), "")).column("mbps")).as_py()
    assert total == pytest.approx(r.state.acting.totals.carried_mbit / source.step_s, rel=1e-6)
    assert decisions.num_rows == sum(r.service.s.plan.counts.values())
    assert alerts.num_rows == len(r.state.alerts)
    print(
        f"\noutage: {away['queued_rows']} rows queued while away "
        f"({away['write_errors']} failed writes), all stored {drained_s:.2f} s after the restart"
    )


@pytest.mark.integration
def test_run_keeps_every_flow_while_its_clickhouse_server_is_away(tmp_path: Path) -> None:
    import json
    import signal
    import subprocess
    import sys

    from test_run_service import send
    from test_run_service import setup as run_setup

    from shadowcast.store.remote import RemoteStore

    cfg, port = run_setup(tmp_path)
    text = cfg.read_text()
    text = text.replace(
        "  flush_interval_s: 0.2\n",
        f"  flush_interval_s: 0.2\n  retry_max_s: 1\n  spill_dir: {tmp_path / 'spill'}\n",
    )
    text = text.replace("  checkpoint_every: 20s\n", "  checkpoint_every: 20s\n  retry_max: 1s\n")
    with servers(tmp_path / "ch") as (server,):
        ch = f"{{hosts: [{server.address}], database: away, connect_timeout_s: 1, timeout_s: 5}}"
        cfg.write_text(text + f"store:\n  backend: clickhouse\n  clickhouse: {ch}\n")
        proc = subprocess.Popen(
            [sys.executable, "-m", "shadowcast.cli", "-c", str(cfg), "run", "--json"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
        )  # fmt: skip
        restarted = None
        sock = tmp_path / "var" / "shadowcast.sock"
        try:
            until = time.monotonic() + 90
            while not sock.exists():  # the service is up (restored, collector listening)
                assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
                assert time.monotonic() < until, "the service did not start"
                time.sleep(0.2)
            sent = send(port, 10)
            server.process.kill()
            server.process.wait(30)
            sent += send(port, 16)
            assert proc.poll() is None, proc.stderr.read()[-3000:] if proc.stderr else ""
            away = RemoteStore(sock, 30).get_json("/health")
            restarted = clickhouse_local.start(server.folder, server.port)
            t_up = time.monotonic()
            sent += send(port, 10)
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=120)
        try:
            assert proc.returncode == 0, err[-3000:]
            health = json.loads(out)
            with open_store(config([server], "away")) as store:
                flows = store.count("flows")
                od = store.read("od_series")
        finally:
            if restarted is not None:
                clickhouse_local.stop(restarted)
    # while the server was away: degraded, the collector's rows queued, nothing lost
    assert away["status"] == "degraded", away["status"]
    col = away["stages"]["collector"]
    assert col["store_away"] and col["queued_rows"] > 0, col
    # after it came back: every flow the collector took is stored, once
    end = health["stages"]["collector"]
    assert end["rows_lost"] == 0 and end["store_errors"] > 0, end
    assert flows == end["rows_stored"] == health["stages"]["intake"]["records"]
    assert health["stages"]["store"]["rows_lost"] == 0
    assert _count_by(od, ["time", "src", "dst", "app"]) == od.num_rows
    print(
        f"\nrun outage: {col['queued_rows']} flow rows queued while away, {flows} of {sent} "
        f"sent stored, {time.monotonic() - t_up:.1f} s from restart to shutdown"
    )
