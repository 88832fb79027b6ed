"""The write-behind spool: nothing dropped on an error, bounded, spilled, recovered.

The store behind it is a real DuckDB store; outages are made by a thin wrapper that raises
while told to (like a server that is away), and, as root, by a real full file system.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from shadowcast.errors import StoreError
from shadowcast.store.base import AggQuery
from shadowcast.store.duckdb import DuckDBStore
from shadowcast.store.spool import Spool
from shadowcast.store.synth import random_table

FAST = {"retry_initial_s": 0.005, "retry_max_s": 0.02}


class Flaky:
    """A real store that fails while ``down`` (and, ``away``, does not even answer), or
    refuses any batch holding a row with ``poison`` bytes; ``delay_s`` slows each write."""

    def __init__(self, store: DuckDBStore) -> None:
        self.store = store
        self.down = threading.Event()
        self.away = threading.Event()
        self.poison: int | None = None
        self.delay_s = 0.0
        self.calls = 0

    def write(self, table: str, batch: pa.Table) -> int:
        self.calls += 1
        if self.down.is_set() or self.away.is_set():
            raise StoreError("write failed: the server is away")
        if self.poison is not None and pc.any(pc.equal(batch["bytes"], self.poison)).as_py():
            raise StoreError("write failed: a value this backend cannot take")
        time.sleep(self.delay_s)
        return self.store.write(table, batch)

    def count(self, table: str) -> int:
        if self.away.is_set():
            raise StoreError("the server is away")
        return self.store.count(table)

    def __getattr__(self, name: str) -> object:
        return getattr(self.store, name)


@pytest.fixture
def flaky(tmp_path: Path) -> Iterator[Flaky]:
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        yield Flaky(store)


def batches(n: int, rows: int = 100) -> list[pa.Table]:
    return [random_table("flows", rows, seed=i) for i in range(n)]


def stored_equals(store: DuckDBStore, parts: list[pa.Table]) -> None:
    got = store.read("flows")
    want = pa.concat_tables(parts)
    assert got.num_rows == want.num_rows
    assert got.equals(want), "rows stored out of order or changed"


def wait_calls(flaky: Flaky, n: int) -> None:
    until = time.monotonic() + 10
    while flaky.calls < n:
        assert time.monotonic() < until, "the spool never tried to write"
        time.sleep(0.005)


def test_an_outage_loses_nothing_and_keeps_the_order(flaky: Flaky) -> None:
    spool = Spool(flaky, **FAST)  # type: ignore[arg-type]
    spool.start()
    parts = batches(20)
    flaky.away.set()
    for b in parts:
        spool.put("flows", b)
    wait_calls(flaky, 5)  # several failed attempts
    flaky.away.clear()
    assert spool.flush(30)
    st = spool.close()
    stored_equals(flaky.store, parts)
    assert st.rows_written == 2000 and st.rows_lost == 0 and st.rows_spilled == 0
    assert st.write_errors >= 5 and st.write_retries >= 5
    assert st.batches_written < 20  # batches queued during the outage went in together


def test_past_memory_batches_wait_on_disk_and_are_written_when_the_store_returns(
    flaky: Flaky, tmp_path: Path
) -> None:
    parts = batches(30)
    one = parts[0].nbytes
    spill = tmp_path / "spill"
    spool = Spool(flaky, memory_bytes=5 * one, spill_dir=spill, **FAST)  # type: ignore[arg-type]
    spool.start()
    flaky.away.set()
    for b in parts:
        spool.put("flows", b)  # never blocks while the store is failing
    st = spool.stats()
    assert st.rows_spilled == 25 * 100 and st.rows_lost == 0
    assert st.queued_bytes <= 5 * one and st.spilled_bytes > 0
    assert len(list(spill.glob("*.arrow"))) == 25
    flaky.away.clear()
    assert spool.flush(30)
    st = spool.close()
    stored_equals(flaky.store, parts)
    assert st.rows_written == 3000 and st.spilled_bytes == 0
    assert not list(spill.glob("*.arrow"))


def spilled_size(batch: pa.Table, tmp: Path) -> int:
    opts = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.OSFile(str(tmp), "wb") as sink, pa.ipc.new_file(sink, batch.schema, options=opts) as w:
        w.write_table(batch)
    return tmp.stat().st_size


def test_past_both_bounds_loss_is_counted_in_rows_and_logged(
    flaky: Flaky, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    parts = batches(12)
    spool = Spool(
        flaky,  # type: ignore[arg-type]
        memory_bytes=3 * parts[0].nbytes,
        spill_dir=tmp_path / "spill",
        spill_max_bytes=int(2.5 * spilled_size(parts[3], tmp_path / "probe")),
        **FAST,
    )
    spool.start()
    flaky.away.set()
    spool.put("flows", parts[0])
    wait_calls(flaky, 1)  # the spool has seen the store fail
    with caplog.at_level(logging.ERROR, logger="shadowcast.store.spool"):
        for b in parts[1:]:
            spool.put("flows", b)
    st = spool.stats()
    assert st.rows_spilled == 200 and st.rows_lost == 700  # 3 in memory, 2 on disk
    assert caplog.text.count("rows of 'flows' LOST") == 7
    flaky.away.clear()
    assert spool.flush(30)
    st = spool.close()
    stored_equals(flaky.store, parts[:5])
    assert st.rows_written == 500 and st.rows_lost == 700


def test_without_a_spill_folder_memory_is_the_bound(flaky: Flaky) -> None:
    parts = batches(10)
    spool = Spool(flaky, memory_bytes=4 * parts[0].nbytes, **FAST)  # type: ignore[arg-type]
    spool.start()
    flaky.down.set()
    for b in parts:
        spool.put("flows", b)
    assert spool.stats().rows_lost == 600
    flaky.down.clear()
    assert spool.flush(30)
    assert spool.close().rows_written == 400
    stored_equals(flaky.store, parts[:4])


def test_what_is_left_at_close_is_spilled_and_the_next_spool_writes_it(
    flaky: Flaky, tmp_path: Path
) -> None:
    parts = batches(6)
    spill = tmp_path / "spill"
    first = Spool(flaky, spill_dir=spill, close_timeout_s=0.2, **FAST)  # type: ignore[arg-type]
    first.start()
    flaky.away.set()
    for b in parts:
        first.put("flows", b)
    st = first.close()  # the store never came back
    assert st.rows_written == 0 and st.rows_lost == 0 and st.rows_spilled == 600
    assert len(list(spill.glob("*.arrow"))) == 6
    flaky.away.clear()
    second = Spool(flaky.store, spill_dir=spill, **FAST)
    second.start()
    second.put("flows", extra := random_table("flows", 10, seed=99))
    assert second.flush(30)
    st = second.close()
    assert st.rows_recovered == 600 and st.rows_written == 610
    stored_equals(flaky.store, [*parts, extra])
    assert not list(spill.glob("*.arrow"))


def test_a_corrupt_spill_file_is_counted_and_the_others_written(
    flaky: Flaky, tmp_path: Path
) -> None:
    spill = tmp_path / "spill"
    first = Spool(flaky, spill_dir=spill, close_timeout_s=0.1, **FAST)  # type: ignore[arg-type]
    first.start()
    flaky.away.set()
    parts = batches(3)
    for b in parts:
        first.put("flows", b)
    first.close()
    middle = sorted(spill.glob("*.arrow"))[1]
    middle.write_bytes(middle.read_bytes()[:100])
    (spill / "000000000009-flows-5.tmp").write_bytes(b"cut short")
    second = Spool(flaky.store, spill_dir=spill, **FAST)
    second.start()
    assert second.flush(30)
    st = second.close()
    assert st.rows_written == 200 and st.rows_lost == 100
    stored_equals(flaky.store, [parts[0], parts[2]])
    assert not list(spill.iterdir()) or [p.name for p in spill.iterdir()] == [".lock"]


def test_one_spill_folder_one_spool(flaky: Flaky, tmp_path: Path) -> None:
    a = Spool(flaky, spill_dir=tmp_path / "spill")  # type: ignore[arg-type]
    a.start()
    try:
        with pytest.raises(StoreError, match="in use by another process"):
            Spool(flaky, spill_dir=tmp_path / "spill").start()  # type: ignore[arg-type]
    finally:
        a.close()


def test_a_row_the_store_refuses_is_isolated_and_the_rest_stored(flaky: Flaky) -> None:
    data = random_table("flows", 1000, seed=5)
    poison = 987_654_321_987
    col = data["bytes"].to_pylist()
    col[613] = poison
    data = data.set_column(
        data.schema.get_field_index("bytes"), "bytes", pa.array(col, pa.uint64())
    )
    flaky.poison = poison
    spool = Spool(flaky, split_after=2, **FAST)  # type: ignore[arg-type]
    spool.start()
    spool.put("flows", data)
    after = random_table("flows", 50, seed=6)
    spool.put("flows", after)
    assert spool.flush(30)
    st = spool.close()
    assert st.rows_rejected == 1 and st.rows_lost == 0
    assert st.rows_written == 1049
    stored_equals(flaky.store, [data.slice(0, 613), data.slice(614), after])


def test_a_store_that_is_away_is_never_split(flaky: Flaky) -> None:
    spool = Spool(flaky, split_after=1, **FAST)  # type: ignore[arg-type]
    spool.start()
    flaky.away.set()
    spool.put("flows", data := random_table("flows", 64, seed=7))
    wait_calls(flaky, 10)
    flaky.away.clear()
    assert spool.flush(30)
    st = spool.close()
    assert st.rows_rejected == 0 and st.rows_written == 64 and st.batches_written == 1
    stored_equals(flaky.store, [data])


def test_a_slow_healthy_store_slows_the_producer_instead_of_spilling(
    flaky: Flaky, tmp_path: Path
) -> None:
    parts = batches(10)
    flaky.delay_s = 0.05
    spool = Spool(
        flaky,  # type: ignore[arg-type]
        memory_bytes=2 * parts[0].nbytes,
        spill_dir=tmp_path / "spill",
        max_write_rows=100,
        **FAST,
    )
    spool.start()
    t0 = time.monotonic()
    for b in parts:
        spool.put("flows", b)
    assert time.monotonic() - t0 >= 0.3  # put waited for room
    assert spool.flush(30)
    st = spool.close()
    assert st.rows_spilled == 0 and st.rows_lost == 0 and st.rows_written == 1000
    stored_equals(flaky.store, parts)


def test_released_files_go_once_their_rows_are_handled(flaky: Flaky, tmp_path: Path) -> None:
    files = [tmp_path / f"ipc-{i}" for i in range(3)]
    for f in files:
        f.write_bytes(b"x")
    spool = Spool(flaky, **FAST)  # type: ignore[arg-type]
    spool.start()
    flaky.away.set()
    spool.put("flows", random_table("flows", 5), release=[str(files[0])])
    spool.put("flows", random_table("flows", 0), release=[str(files[1])])  # empty: at once
    assert files[0].exists() and not files[1].exists()
    flaky.away.clear()
    assert spool.flush(30)
    assert not files[0].exists()
    spool.close()


def test_rows_the_store_filters_are_counted(flaky: Flaky) -> None:
    data = random_table("flows", 10, seed=8)
    starts = data["time_start"].cast(pa.int64()).to_pylist()
    starts[3] = 2**52
    data = data.set_column(
        0, "time_start", pa.array(starts, pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    )
    spool = Spool(flaky, **FAST)  # type: ignore[arg-type]
    spool.start()
    spool.put("flows", data)
    assert spool.flush(30)
    st = spool.close()
    assert st.rows_written == 9 and st.rows_dropped == 1 and st.write_errors == 0


@pytest.mark.integration
def test_a_full_file_system_is_waited_out(tmp_path: Path) -> None:
    """A DuckDB store on a 3 MiB tmpfs: writes fail with ENOSPC; once the file system is
    grown (remount), the spool writes every row it held."""
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a tmpfs")
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], check=False)
    if r.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        store = DuckDBStore(mnt / "s.duckdb", flows_format="parquet", compression="none")
        spool = Spool(store, retry_initial_s=0.01, retry_max_s=0.05)
        spool.start()
        parts = [random_table("flows", 5000, seed=i) for i in range(12)]  # ~9 MB
        for b in parts:
            spool.put("flows", b)
        until = time.monotonic() + 30
        while spool.stats().write_errors == 0:
            assert time.monotonic() < until, "the file system never filled"
            time.sleep(0.01)
        subprocess.run(["mount", "-o", "remount,size=256m", str(mnt)], check=True)
        assert spool.flush(60)
        st = spool.close()
        assert st.rows_written == 60_000 and st.rows_lost == 0 and st.rows_rejected == 0
        assert store.count("flows") == 60_000
        total = store.aggregate(AggQuery("flows", 86400 * 3650, values=["bytes"]))
        want = sum(pc.sum(b["bytes"]).as_py() for b in parts)
        assert pc.sum(total["bytes"]).as_py() == want
        store.close()
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_the_writer_thread_runs_nicer_than_its_process(flaky: Flaky) -> None:
    """The collector's writer yields the CPU to the socket readers (collect.writer_nice)."""
    base = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    spool = Spool(flaky, nice=5, **FAST)
    spool.start()
    try:
        spool.put("flows", batches(1)[0])
        wait_calls(flaky, 1)
        assert spool._thread is not None and spool._thread.native_id is not None
        assert os.getpriority(os.PRIO_PROCESS, spool._thread.native_id) == min(19, base + 5)
        assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base
    finally:
        spool.close()
