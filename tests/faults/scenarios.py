"""The attacks, each a function of its scale that checks the outcome and returns figures.

tests/faults runs them small (``make test``); bench/faults.py runs them at scale
(``make faults``) and prints the figures as JSON. A failed check raises AssertionError.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pyarrow as pa
from faultlib import (
    STARTUP_S,
    children,
    poisoned_start,
    proc_memory,
    send,
    spoofed,
    sums,
    target,
    template_flood,
    templateless_data,
    valid_ipfix,
    wait_for,
)

from shadowcast.errors import StoreError
from shadowcast.store.duckdb import DuckDBStore

MiB = 1 << 20
Figures = dict[str, Any]


def _mb(n: int) -> float:
    return round(n / MiB, 1)


def bad_record(tmp: Path, n_good: int = 10_000) -> Figures:
    """Exporter A sends ``n_good`` valid records while B sends one whose start is 2^52 ms:
    all of A's are stored, B's record is counted invalid."""
    good, want = valid_ipfix(n_good, seed=1)
    bad = poisoned_start()
    t0 = time.monotonic()
    with target(tmp) as t:
        half = len(good) // 2
        send(good[:half], t.port, "127.0.5.1")
        send(bad, t.port, "127.0.5.2")
        send(good[half:], t.port, "127.0.5.1")
        wait_for(lambda: t.rows("127.0.5.1") == n_good, 60, "A's records in the store")
        t.settle(["127.0.5.2"], len(bad))
        wait_for(lambda: t.snap().exporters["127.0.5.2"].invalid_records == 1, 10, "B counted")
        got = t.stored("127.0.5.1")
        snap = t.snap()
        b_rows = t.rows("127.0.5.2")
    assert sums(got) == sums(want), "A's rows or byte sums differ from what was sent"
    assert b_rows == 0
    return {
        "good_sent": n_good,
        "good_stored": got.num_rows,
        "bytes_match": True,
        "invalid_records": snap.exporters["127.0.5.2"].invalid_records,
        "store_errors": snap.store_errors,
        "seconds": round(time.monotonic() - t0, 2),
    }


def _after_flood_valid_traffic_is_exact(t: Any, n: int, src: str) -> Figures:
    packets, want = valid_ipfix(n, seed=11)
    send(packets, t.port, src)
    wait_for(lambda: t.rows(src) == n, 60, "the valid records after the flood")
    got = t.stored(src)
    assert sums(got) == sums(want), "valid traffic after the flood not stored exactly"
    return {"valid_after": n, "valid_stored": got.num_rows}


def template_flood_attack(
    tmp: Path, n_addrs: int, n_templates: int, max_templates: int, ceiling_mb: float
) -> Figures:
    """``n_addrs`` spoofed exporters announce ``n_templates`` templates each: the worker's
    templates stay under ``max_templates`` and its memory under ``ceiling_mb`` of growth."""
    t0 = time.monotonic()
    with target(tmp, max_templates=max_templates, max_exporters=4096) as t:
        pid = t.server.worker_pids[0]
        time.sleep(0.5)
        base = proc_memory(pid)[0]
        sent = 0
        for a in range(n_addrs):
            msgs = template_flood(a, n_templates)
            send(msgs, t.port, spoofed(a, base=100))
            sent += len(msgs)
        t.settle([spoofed(a, base=100) for a in range(n_addrs)], sent, timeout=600)
        drops = t.drops()
        held = t.gauge("templates")
        rss, peak = proc_memory(pid)
        evicted = sum(st.templates_evicted for st in t.snap().exporters.values())
        out = _after_flood_valid_traffic_is_exact(t, 3000, "127.0.6.1")
    growth = peak - base
    assert held <= max_templates, f"{held} templates held, cap {max_templates}"
    if drops == 0:
        assert evicted == n_addrs * n_templates - held, "every eviction counted"
    else:  # some template datagrams never reached the worker
        assert evicted + held <= n_addrs * n_templates
    assert growth <= ceiling_mb * MiB, f"worker grew by {_mb(growth)} MB > {ceiling_mb}"
    return {
        "addresses": n_addrs,
        "templates_sent": n_addrs * n_templates,
        "templates_held": held,
        "socket_drops": drops,
        "templates_evicted": evicted,
        "worker_rss_base_mb": _mb(base),
        "worker_rss_peak_growth_mb": _mb(growth),
        "ceiling_growth_mb": ceiling_mb,
        "seconds": round(time.monotonic() - t0, 2),
        **out,
    }


def pending_flood_attack(
    tmp: Path, n_addrs: int, n_msgs: int, max_pending_mb: int, age_s: float, ceiling_mb: float
) -> Figures:
    """``n_addrs`` spoofed exporters send ``n_msgs`` 64 KB data sets for templates that
    never come: held bytes stay under the cap, and all are gone ``age_s`` later even
    though nothing else arrives."""
    t0 = time.monotonic()
    with target(tmp, max_pending_bytes=max_pending_mb * MiB, pending_age_s=age_s) as t:
        pid = t.server.worker_pids[0]
        time.sleep(0.5)
        base = proc_memory(pid)[0]
        msgs = templateless_data(n_msgs)
        for a in range(n_addrs):
            send(msgs, t.port, spoofed(a, base=110), burst=16)
        flooders = [spoofed(a, base=110) for a in range(n_addrs)]
        t.settle(flooders, n_addrs * n_msgs, timeout=600)
        received = t.counted(flooders)
        held_bytes = t.gauge("pending_bytes")
        quiet = time.monotonic()
        wait_for(lambda: t.gauge("pending_sets") == 0, age_s + 10, "waiting sets aged out")
        aged_after = time.monotonic() - quiet
        rss, peak = proc_memory(pid)
        dropped = sum(st.pending_dropped for st in t.snap().exporters.values())
        out = _after_flood_valid_traffic_is_exact(t, 3000, "127.0.6.2")
    growth = peak - base
    assert held_bytes <= max_pending_mb * MiB
    assert dropped == received, f"{dropped} of {received} waiting sets counted as dropped"
    assert growth <= ceiling_mb * MiB, f"worker grew by {_mb(growth)} MB > {ceiling_mb}"
    return {
        "addresses": n_addrs,
        "datagrams": n_addrs * n_msgs,
        "datagrams_received": received,
        "bytes_sent_mb": _mb(n_addrs * n_msgs * len(msgs[0])),
        "pending_bytes_held_mb": _mb(held_bytes),
        "pending_dropped": dropped,
        "aged_out_after_s": round(aged_after, 1),
        "worker_rss_base_mb": _mb(base),
        "worker_rss_peak_growth_mb": _mb(growth),
        "worker_rss_end_mb": _mb(rss),
        "ceiling_growth_mb": ceiling_mb,
        "seconds": round(time.monotonic() - t0, 2),
        **out,
    }


def exporter_flood(tmp: Path, n_addrs: int, max_exporters: int) -> Figures:
    """``n_addrs`` sources send one valid record each: every record is stored, the
    worker tracks at most ``max_exporters`` and the rest fold into "other"."""
    packets, _ = valid_ipfix(1, seed=3)
    t0 = time.monotonic()
    with target(tmp, max_exporters=max_exporters) as t:
        srcs = [spoofed(a, base=120) for a in range(n_addrs)]
        for src in srcs:
            send(packets, t.port, src)
        wait_for(lambda: t.snap().total().packets >= n_addrs * len(packets), 120, "all counted")
        wait_for(lambda: t.store.count("flows") == n_addrs, 60, "every record stored")
        snap = t.snap()
    tracked = sum(g["exporters"] for g in snap.workers.values())
    assert tracked <= max_exporters
    assert len(snap.exporters) <= max_exporters + 1
    assert snap.total().records == n_addrs and "other" in snap.exporters
    return {
        "sources": n_addrs,
        "tracked": tracked,
        "evicted": sum(g["exporters_evicted"] for g in snap.workers.values()),
        "counter_entries": len(snap.exporters),
        "records_counted": snap.total().records,
        "rows_stored": n_addrs,
        "seconds": round(time.monotonic() - t0, 2),
    }


def allow_list(tmp: Path, n_addrs: int) -> Figures:
    """Only 127.0.7.0/24 may export: ``n_addrs`` other sources are counted as rejected
    packets of "other" (no entry each) and nothing of theirs is stored."""
    good, want = valid_ipfix(600, seed=4)
    with target(tmp, allow_exporters=["127.0.7.0/24"]) as t:
        for a in range(n_addrs):
            send(good[:1], t.port, spoofed(a, base=130))
        send(good, t.port, "127.0.7.9")
        wait_for(lambda: t.rows("127.0.7.9") == 600, 60, "the allowed exporter's rows")
        wait_for(
            lambda: (
                t.snap().exporters.get("other") is not None
                and t.snap().exporters["other"].rejected_packets == n_addrs
            ),
            30,
            "rejected packets counted",
        )
        snap = t.snap()
        count = t.store.count("flows")
        got = t.stored("127.0.7.9")
    assert set(snap.exporters) == {"127.0.7.9", "other"}
    assert count == 600 and sums(got) == sums(want)
    return {"rejected_packets": snap.exporters["other"].rejected_packets, "stored": count}


class Outage:
    """A real DuckDB store that refuses writes while ``down`` (a server that is away)."""

    def __init__(self, store: DuckDBStore) -> None:
        self.store = store
        self.down = threading.Event()

    def write(self, table: str, batch: pa.Table) -> int:
        if self.down.is_set():
            raise StoreError("write failed: the server is away")
        return self.store.write(table, batch)

    def count(self, table: str) -> int:
        if self.down.is_set():
            raise StoreError("the server is away")
        return self.store.count(table)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


def store_outage(tmp: Path, n_records: int, outage_s: float, **spool: Any) -> Figures:
    """The store is away for ``outage_s`` while ``n_records`` arrive. With room in the
    buffer (``spool`` settings), every row is stored once it returns; without, what is
    lost is exactly what was received and not stored, and counted in rows."""
    packets, want = valid_ipfix(n_records, seed=5)
    with DuckDBStore(tmp / "flows.duckdb") as real:
        store = Outage(real)
        with target(tmp, store=store, retry_max_s=0.5, flush_rows=20_000, **spool) as t:  # type: ignore[arg-type]
            store.down.set()
            t0 = time.monotonic()
            send(packets, t.port, "127.0.8.1")
            t.settle(["127.0.8.1"], len(packets))
            wait_for(lambda: t.snap().store_errors > 0, 30, "a failed write")
            time.sleep(max(0.0, outage_s - (time.monotonic() - t0)))
            during = t.snap().spool
            store.down.clear()
            wait_for(
                lambda: t.snap().spool.queued_rows == 0 and t.snap().spool.spilled_bytes == 0,
                120,
                "the buffer written out",
            )
            snap = t.snap()
        stored = real.read("flows")
    sp = snap.spool
    assert stored.num_rows + sp.rows_lost == n_records, "every row stored or counted lost"
    if sp.rows_lost == 0:
        assert sums(stored) == sums(want)
    return {
        "records": n_records,
        "outage_s": outage_s,
        "rows_stored": stored.num_rows,
        "rows_spilled": sp.rows_spilled,
        "rows_lost": sp.rows_lost,
        "write_errors": snap.store_errors,
        "write_retries": sp.write_retries,
        "buffered_rows_during": during.queued_rows,
        "spilled_mb_during": _mb(during.spilled_bytes),
    }


def _cli(tmp: Path, db: Path, *extra: str) -> subprocess.Popen[str]:
    err = open(tmp / f"stderr-{time.monotonic_ns()}.txt", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "shadowcast.cli", "collect", "--bind", "127.0.0.1"]
        + ["--listen", "ipfix=0", "--workers", "2", "--store", str(db), *extra],
        cwd=tmp,
        stdout=subprocess.PIPE,
        stderr=err,
        text=True,
    )
    proc.stderr_path = err.name  # type: ignore[attr-defined]
    err.close()
    return proc


def _cli_port(proc: subprocess.Popen[str]) -> int:
    path = Path(proc.stderr_path)  # type: ignore[attr-defined]

    def ready() -> bool:
        assert proc.poll() is None, path.read_text()
        return "collector ready" in path.read_text()

    wait_for(ready, STARTUP_S, "the collector to start")
    line = next(x for x in path.read_text().splitlines() if x.startswith("listening udp"))
    return int(line.split()[2].rsplit(":", 1)[1])


def _records_seen(mport: int, exporter: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(f'shadowcast_collect_records_total{{exporter="{exporter}"}}'):
                return int(float(line.split()[-1]))
    return 0


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")


def _run_folder(pid: int) -> Path:
    for owner in Path("/dev/shm").glob("shadowcast-collect-*/owner.json"):
        try:
            if json.loads(owner.read_text()).get("pid") == pid:
                return owner.parent
        except (OSError, ValueError):
            continue
    raise AssertionError(f"no shared-memory folder for pid {pid}")


def _rows_in(folder: Path) -> int:
    n = 0
    for path in folder.glob("*.arrow"):
        with pa.memory_map(str(path)) as src:
            n += sum(b.num_rows for b in pa.ipc.open_stream(src))
    return n


def kill9(tmp: Path, n_records: int, mport: int) -> Figures:
    """SIGKILL the collector's supervisor with ``n_records`` decoded but not stored (hour
    long batches): the next start stores every one of them from the shared-memory files."""
    db = tmp / "k.duckdb"
    packets, want = valid_ipfix(n_records, seed=6)
    srcs = ("127.0.9.1", "127.0.9.2")
    proc = _cli(
        tmp, db, "--flush-rows", "10000000", "--flush-interval", "60", "--metrics-port", str(mport)
    )
    try:
        port = _cli_port(proc)
        kids = children(proc.pid)
        half = len(packets) // 2
        send(packets[:half], port, srcs[0])
        send(packets[half:], port, srcs[1])
        wait_for(
            lambda: sum(_records_seen(mport, s) for s in srcs) == n_records, 60, "records decoded"
        )
        folder = _run_folder(proc.pid)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()
    wait_for(lambda: all(_gone(k) for k in kids), 30, "the workers to notice and exit")
    workers_exit_s = time.monotonic() - t0
    left_files = len(list(folder.glob("*.arrow")))
    left_rows = _rows_in(folder)
    with DuckDBStore(db) as store:
        before = store.count("flows")
    assert before == 0, "hour-long batches: nothing was stored before the kill"
    assert left_rows == n_records, f"{left_rows} of {n_records} rows left in {folder}"
    again = _cli(tmp, db, "--duration", "1", "--json")
    try:
        out, _ = again.communicate(timeout=180)
    finally:
        if again.poll() is None:
            again.kill()
            again.communicate()
    assert again.returncode == 0, Path(again.stderr_path).read_text()  # type: ignore[attr-defined]
    doc = json.loads(out)
    with DuckDBStore(db) as store:
        stored = store.read("flows")
    assert doc["rows_recovered"] == n_records and doc["rows_stored"] == n_records
    assert sums(stored) == sums(want), "the recovered rows differ from what was sent"
    assert not folder.exists(), "the dead run's folder was not removed"
    return {
        "records": n_records,
        "files_left_by_the_dead_run": left_files,
        "rows_left_by_the_dead_run": left_rows,
        "workers_exited_after_s": round(workers_exit_s, 1),
        "rows_recovered": doc["rows_recovered"],
        "rows_stored": stored.num_rows,
        "bytes_match": True,
    }
