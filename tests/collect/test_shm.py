"""The shared-memory batch folders: live ones untouched, dead ones recovered or removed."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest

from shadowcast.collect import shm
from shadowcast.collect.ipc import Spill
from shadowcast.store.duckdb import DuckDBStore
from shadowcast.store.memory import MemoryStore
from shadowcast.store.synth import random_table


def die(folder: str) -> None:
    """What the kernel does to the locks of a process killed by SIGKILL."""
    for fd in shm._held.pop(folder, []):
        os.close(fd)


def batch(folder: str, prefix: str, rows: int, table: str = "flows") -> Path:
    sp = Spill(folder, prefix)
    return Path(sp.write(table, random_table(table, rows, seed=rows)))


def test_a_live_folder_is_left_alone(tmp_path: Path) -> None:
    folder = shm.make_folder("DuckDBStore:/x.duckdb", root=str(tmp_path))
    batch(folder, "w0-", 10)
    assert shm.orphans("DuckDBStore:/x.duckdb", root=str(tmp_path)) == []
    shm.release_folder(folder)
    assert not Path(folder).exists()


def test_a_dead_folder_of_the_same_store_is_recovered_in_order(tmp_path: Path) -> None:
    folder = shm.make_folder("DuckDBStore:/x.duckdb", root=str(tmp_path))
    a = batch(folder, "w0-", 10)
    time.sleep(0.01)
    b = batch(folder, "w1-", 7, "interface_counters")
    (Path(folder) / "w0-000000009.flows.arrow.tmp").write_bytes(b"cut short")
    (Path(folder) / "w0-000000010.flows.arrow").write_bytes(b"garbage")
    die(folder)
    found = shm.orphans("DuckDBStore:/x.duckdb", root=str(tmp_path))
    assert len(found) == 1
    assert found[0].batches == [("flows", a), ("interface_counters", b)]
    assert found[0].rows == 17
    assert shm.orphans("DuckDBStore:/x.duckdb", root=str(tmp_path)) == []  # we hold it now
    shm.release_folder(found[0].folder)
    assert not Path(folder).exists()


def test_dead_folders_of_other_stores_wait_a_day_unless_nothing_can_claim_them(
    tmp_path: Path,
) -> None:
    other = shm.make_folder("DuckDBStore:/other.duckdb", root=str(tmp_path))
    nobody = shm.make_folder("", root=str(tmp_path))
    for f in (other, nobody):
        batch(f, "w0-", 5)
        die(f)
    assert shm.orphans("DuckDBStore:/x.duckdb", root=str(tmp_path)) == []
    assert Path(other).exists() and not Path(nobody).exists()
    later = time.time() + shm.ORPHAN_TTL_S + 60
    assert shm.orphans("DuckDBStore:/x.duckdb", root=str(tmp_path), now=later) == []
    assert not Path(other).exists()


def test_an_older_collectors_folder_without_a_lock_goes_after_a_day(tmp_path: Path) -> None:
    old = tmp_path / "shadowcast-collect-old"
    old.mkdir()
    (old / "w0-1.arrow").write_bytes(b"x")
    assert shm.orphans("s", root=str(tmp_path)) == []
    assert old.exists()
    shm.orphans("s", root=str(tmp_path), now=time.time() + shm.ORPHAN_TTL_S + 60)
    assert not old.exists()


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (lambda _: MemoryStore(), False),
        (lambda _: DuckDBStore(":memory:"), False),
        (lambda tmp: DuckDBStore(tmp / "s.duckdb"), True),
    ],
)
def test_only_stores_that_outlive_the_process_can_recover(
    make: Callable[[Path], MemoryStore | DuckDBStore], named: bool, tmp_path: Path
) -> None:
    store = make(tmp_path)
    try:
        ident = shm.store_identity(store)
    finally:
        store.close()
    assert ident == (f"DuckDBStore:{tmp_path / 's.duckdb'}" if named else "")


def test_batch_files_are_whole_or_absent(tmp_path: Path) -> None:
    sp = Spill(str(tmp_path), "w3-")
    path = sp.write("flows", random_table("flows", 50))
    assert path.endswith("w3-000000001.flows.arrow") and shm.batch_table(path) == "flows"
    assert not list(tmp_path.glob("*.tmp"))
    got = pa.ipc.open_stream(pa.memory_map(path)).read_all()
    assert got.num_rows == 50
    assert sp.pending() == (1, os.path.getsize(path))


def test_stored_batch_files_are_given_back_and_overwritten(tmp_path: Path) -> None:
    """Once stored, a worker's file is renamed for it (not deleted) and its next batch
    overwrites it; what the supervisor read earlier is a copy, unchanged by that."""
    from multiprocessing import Pipe

    from shadowcast.collect.ipc import MAX_FREE, recv_message

    sp = Spill(str(tmp_path), "w0-")
    big, small = random_table("flows", 400, seed=1), random_table("flows", 30, seed=2)
    a, b = Pipe()
    sp.send(a, "flows", big)
    first = recv_message(b)
    assert first.table is not None and first.table.equals(big)
    shm.recycle(first.path)  # stored
    assert not os.path.exists(first.path)
    assert [p.name for p in tmp_path.iterdir()] == ["w0-free-000000001.buf"]
    sp.send(a, "flows", small)  # overwrites the given-back file, cut to its new length
    second = recv_message(b)
    assert sp.reused == 1 and second.table is not None and second.table.equals(small)
    assert not list(tmp_path.glob("*.buf"))
    assert first.table.equals(big)  # a copy: the overwrite did not reach it
    # files that are not a worker's batch are deleted; a worker keeps MAX_FREE at most
    other = tmp_path / "r000001-w9-000000001.flows.arrow"
    other.write_bytes(b"x")
    shm.recycle(str(other))
    assert not other.exists()
    for i in range(MAX_FREE + 3):
        (tmp_path / shm.free_name("w0-", i)).write_bytes(b"old")
    assert sp.pending() == (1, os.path.getsize(second.path))
    assert len(sp.free) == MAX_FREE and len(list(tmp_path.glob("*.buf"))) == MAX_FREE
