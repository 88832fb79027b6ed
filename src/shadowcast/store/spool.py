"""A bounded, retrying write-behind queue in front of any :class:`~shadowcast.store.base.Store`.

A producer (the collector's supervisor; a backend whose server may be away) hands batches
to :meth:`Spool.put` and goes on; one thread writes them to the store in order. When a
write fails, the batch stays at the head of the queue and is retried with exponential
backoff (``retry_initial_s`` doubling up to ``retry_max_s``) until the store takes it; a
batch is never dropped on an error. Meanwhile new batches wait in memory (up to
``memory_bytes``), then in Arrow IPC files under ``spill_dir`` (up to ``spill_max_bytes``),
which a later spool on the same folder writes first (after a crash too). Only past both
bounds is a batch lost: counted in rows (``rows_lost``) and logged as an error.

While the store is healthy, a full memory queue makes :meth:`put` wait instead (the
producer slows down, as it would without the spool); once a write has failed it never
waits, so a producer keeps accepting while the store is away.

One bad row must not hold up everything behind it: a batch that failed ``split_after``
times while the store still answers (``count``) is split in halves, and a single row the
store keeps refusing is dropped (``rows_rejected``, logged). Rows a write returns as not
written (the store's own filters) count in ``rows_dropped``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import pyarrow as pa

from shadowcast.errors import StoreError
from shadowcast.store.base import Store
from shadowcast.store.spillfiles import SpillFolder

log = logging.getLogger(__name__)

MiB = 1 << 20
LOG_EVERY_S = 10.0  # a failing store is logged at most this often


@dataclass(slots=True)
class SpoolStats:
    """What the spool did; counters only grow, ``queued_*`` and ``spilled_bytes`` are now."""

    rows_written: int = 0
    batches_written: int = 0
    write_errors: int = 0  # failed write attempts
    write_retries: int = 0  # attempts at a batch that had failed before
    rows_spilled: int = 0  # rows that waited on disk
    rows_recovered: int = 0  # rows found on disk at start (a previous run's)
    rows_lost: int = 0  # dropped because memory and disk were full
    rows_rejected: int = 0  # single rows the store refused while it took others
    rows_dropped: int = 0  # rows a write took but did not store (the store's filters)
    queued_rows: int = 0
    queued_bytes: int = 0
    spilled_bytes: int = 0


@dataclass(slots=True)
class _Entry:
    table: str
    rows: int
    nbytes: int
    data: pa.Table | None  # None: waiting in ``path``
    path: Path | None = None
    release: list[str] = field(default_factory=list)  # files deleted once handled
    split: bool = False  # half of a failing batch: written alone
    failures: int = 0


class Spool:
    """Write-behind queue for ``store``; ``start()`` before ``put``, ``close()`` at the end."""

    def __init__(
        self,
        store: Store,
        *,
        memory_bytes: int = 256 * MiB,
        spill_dir: str | Path | None = None,
        spill_max_bytes: int = 1024 * MiB,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 30.0,
        split_after: int = 3,
        max_write_rows: int = 1_000_000,
        close_timeout_s: float = 10.0,
        sleep: Callable[[float], None] | None = None,
        nice: int = 0,
        release: Callable[[str], None] | None = None,
    ) -> None:
        if memory_bytes < 1 or spill_max_bytes < 0 or retry_initial_s <= 0 or split_after < 1:
            raise StoreError("spool: memory_bytes, retry_initial_s and split_after must be > 0")
        self.store = store
        self.memory_bytes = memory_bytes
        self.spill_dir = Path(spill_dir) if spill_dir is not None else None
        self.spill_max_bytes = spill_max_bytes
        self.retry_initial_s = retry_initial_s
        self.retry_max_s = max(retry_max_s, retry_initial_s)
        self.split_after = split_after
        self.max_write_rows = max_write_rows
        self.close_timeout_s = close_timeout_s
        self.nice = nice
        # what becomes of a put's ``release`` files once handled (default: deleted)
        self._release_file = release or _unlink
        self._sleep = sleep
        self._q: deque[_Entry] = deque()
        self._cond = threading.Condition()
        self._put_lock = threading.Lock()
        self._stats = SpoolStats()
        self._mem = 0
        self._healthy = True
        self._logged_at = 0.0
        self._closing = False
        self._abandon = False
        self._seq = 0
        self._folder: SpillFolder | None = None
        self._thread: threading.Thread | None = None

    # -- life ----------------------------------------------------------------------------

    def start(self) -> None:
        """Take the spill folder (recovering what a previous run left) and start writing."""
        if self.spill_dir is not None:
            self._recover(self.spill_dir)
        self._thread = threading.Thread(target=self._run, name="store-spool", daemon=True)
        self._thread.start()

    def close(self) -> SpoolStats:
        """Write what is queued, for as long as writes succeed; once none has for
        ``close_timeout_s``, what is left goes to the spill folder (or is counted lost)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._thread is not None:
            done, until = -1, 0.0
            while self._thread.is_alive():
                if self._stats.batches_written != done:  # progress: wait on
                    done, until = (
                        self._stats.batches_written,
                        time.monotonic() + self.close_timeout_s,
                    )
                if time.monotonic() >= until:
                    break
                self._thread.join(0.05)
            with self._cond:
                self._abandon = True
                self._cond.notify_all()
            self._thread.join()
        with self._cond:
            left = list(self._q)
            self._q.clear()
        for e in left:
            if e.data is None:
                continue  # already on disk: the next spool writes it
            self._mem -= e.nbytes
            if not self._to_disk(e, why="at shutdown"):
                self._lose(e, "at shutdown, the store still failing and no room on disk")
        if self._folder is not None:
            self._folder.close()
        return self.stats()

    def stats(self) -> SpoolStats:
        with self._cond:
            return replace(
                self._stats,
                queued_rows=sum(e.rows for e in self._q),
                queued_bytes=self._mem,
            )

    def flush(self, timeout_s: float) -> bool:
        """Wait until everything queued is handled; False on timeout."""
        until = time.monotonic() + timeout_s
        with self._cond:
            while self._q:
                left = until - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    def drain(self, timeout_s: float) -> bool:
        """Wait until everything queued is stored; False at once when a write fails (the
        store is away: the rows stay queued) or after ``timeout_s``."""
        until = time.monotonic() + timeout_s
        with self._cond:
            errors = self._stats.write_errors
            while self._q:
                left = until - time.monotonic()
                if left <= 0 or self._stats.write_errors != errors:
                    return False
                self._cond.wait(min(left, 0.1))
        return True

    @property
    def healthy(self) -> bool:
        """False from a failed write until the next one that succeeds."""
        return self._healthy

    # -- producer ------------------------------------------------------------------------

    def put(self, table: str, batch: pa.Table, release: Iterable[str] = ()) -> None:
        """Queue ``batch`` for ``table``; files in ``release`` are deleted (or given to
        the spool's ``release``) once it is stored, on disk, rejected or lost."""
        if batch.num_rows == 0:
            self._release(release)
            return
        e = _Entry(table, batch.num_rows, int(batch.nbytes), batch, release=list(release))
        with self._put_lock:
            with self._cond:
                if self._closing:
                    raise StoreError("spool is closed")
                while self._healthy and self._mem and self._mem + e.nbytes > self.memory_bytes:
                    self._cond.wait(0.1)
                    if self._closing:
                        break
                if not self._mem or self._mem + e.nbytes <= self.memory_bytes:
                    self._append(e)
                    return
            if self._to_disk(e, why="memory full"):
                with self._cond:
                    self._q.append(e)
                    self._cond.notify_all()
                return
            self._lose(e, "memory and spill folder full while the store is failing")

    def _append(self, e: _Entry) -> None:
        self._q.append(e)
        self._mem += e.nbytes
        self._cond.notify_all()

    # -- disk ----------------------------------------------------------------------------

    def _to_disk(self, e: _Entry, why: str) -> bool:
        """Move ``e``'s rows into a spill file (False: no folder, or no room)."""
        if self._folder is None or e.data is None:
            return False
        with self._cond:
            if self._stats.spilled_bytes + e.nbytes > self.spill_max_bytes:
                return False
            self._seq += 1
            seq = self._seq
        try:
            f = self._folder.write(seq, e.table, e.data)
        except (OSError, pa.ArrowException) as exc:
            log.error("spool: cannot spill %d rows of %r (%s): %s", e.rows, e.table, why, exc)
            return False
        with self._cond:
            self._stats.spilled_bytes += f.size
            self._stats.rows_spilled += e.rows
        e.data, e.path, e.nbytes = None, f.path, f.size
        self._release(e.release)
        e.release = []
        log.warning("spool: %d rows of %r spilled to disk (%s)", e.rows, e.table, why)
        return True

    def _recover(self, folder: Path) -> None:
        self._folder = SpillFolder(folder)
        found = self._folder.scan()
        for f in found:
            self._q.append(_Entry(f.table, f.rows, f.size, None, f.path))
            self._seq = max(self._seq, f.seq)
            self._stats.spilled_bytes += f.size
            self._stats.rows_recovered += f.rows
        if found:
            log.warning(
                "spool: %d rows in %d files left in %s by a previous run: writing them first",
                self._stats.rows_recovered,
                len(found),
                folder,
            )

    def _load(self, e: _Entry) -> pa.Table | None:
        if e.data is not None:
            return e.data
        assert e.path is not None
        try:
            return SpillFolder.read(e.path)
        except (OSError, pa.ArrowException) as exc:
            log.error("spool: spill file %s is unreadable, %d rows lost: %s", e.path, e.rows, exc)
            return None

    # -- writer --------------------------------------------------------------------------

    def _run(self) -> None:
        if self.nice:
            _lower_priority(self.nice)
        failures = 0  # consecutive, whatever the batch: drives the backoff
        while True:
            with self._cond:
                while not self._q and not self._closing:
                    self._cond.wait()
                if not self._q or self._abandon:
                    return
                group = self._group()
            loaded = [(e, self._load(e)) for e in group]
            tables = [t for _, t in loaded if t is not None]
            if len(tables) < len(group):
                with self._cond:
                    for e, t in loaded:
                        if t is None:
                            self._q.remove(e)
                            self._stats.rows_lost += e.rows
                            self._done(e)
                continue
            data = tables[0] if len(tables) == 1 else pa.concat_tables(tables)
            head = group[0]
            if head.failures:
                self._stats.write_retries += 1
            try:
                written = self.store.write(head.table, data)
            except Exception as exc:  # any backend's error: keep the batch, retry
                failures += 1
                self._failed(head, exc, failures)
                continue
            failures = 0
            with self._cond:
                self._healthy = True
                for e in group:
                    self._q.popleft()
                    self._done(e)
                self._stats.rows_written += written
                self._stats.batches_written += 1
                self._stats.rows_dropped += max(0, data.num_rows - written)
                self._cond.notify_all()

    def _group(self) -> list[_Entry]:
        """The head, and (unless it failed before) what follows it for the same table."""
        head = self._q[0]
        group, rows = [head], head.rows
        if head.failures or head.split:
            return group
        for e in list(self._q)[1:]:
            if e.table != head.table or e.split or rows + e.rows > self.max_write_rows:
                break
            group.append(e)
            rows += e.rows
        return group

    def _failed(self, head: _Entry, exc: Exception, failures: int) -> None:
        with self._cond:
            self._stats.write_errors += 1
            head.failures += 1
            now = time.monotonic()
            if self._healthy or now - self._logged_at >= LOG_EVERY_S:
                self._logged_at = now
                log.error(
                    "store write of %d rows to %r failed (%d in a row), will retry: %s",
                    head.rows,
                    head.table,
                    failures,
                    exc,
                )
            self._healthy = False
            self._cond.notify_all()  # a producer waiting for room now spills instead
        if head.failures >= self.split_after and self._store_answers(head.table):
            if head.rows > 1:
                self._split(head)
                return
            with self._cond:
                self._q.popleft()
                self._stats.rows_rejected += 1
                self._done(head)
            log.error("store keeps refusing one row of %r, dropped: %s", head.table, exc)
            return
        delay = min(self.retry_max_s, self.retry_initial_s * 2 ** min(failures - 1, 30))
        if self._sleep is not None:
            self._sleep(delay)
            return
        with self._cond:
            if not self._abandon:
                self._cond.wait_for(lambda: self._abandon, timeout=delay)

    def _store_answers(self, table: str) -> bool:
        try:
            self.store.count(table)
        except Exception:  # the store is away: the batch is not the problem
            return False
        return True

    def _split(self, head: _Entry) -> None:
        """Replace the head by its two halves (in memory; its files go with the second)."""
        data = self._load(head)
        if data is None:
            return
        mid = head.rows // 2
        halves = [data.slice(0, mid), data.slice(mid)]
        first, second = (
            _Entry(head.table, t.num_rows, int(t.nbytes), t, split=True) for t in halves
        )
        second.release = [*head.release, *([str(head.path)] if head.data is None else [])]
        with self._cond:
            self._q.popleft()
            if head.data is None:
                self._stats.spilled_bytes -= head.nbytes
            else:
                self._mem -= head.nbytes
            self._mem += first.nbytes + second.nbytes
            self._q.appendleft(second)
            self._q.appendleft(first)
        log.warning("store refuses %d rows of %r: writing them in halves", head.rows, head.table)

    def _done(self, e: _Entry) -> None:
        """``e`` is out of the queue (caller holds the lock): free its memory and files."""
        if e.data is not None:
            self._mem -= e.nbytes
        elif e.path is not None:
            self._stats.spilled_bytes -= e.nbytes
            _unlink_all([str(e.path)])
        self._release(e.release)

    def _release(self, paths: Iterable[str]) -> None:
        for p in paths:
            self._release_file(p)

    def _lose(self, e: _Entry, why: str) -> None:
        with self._cond:
            self._stats.rows_lost += e.rows
        self._release(e.release)
        log.error("store buffer full: %d rows of %r LOST (%s)", e.rows, e.table, why)


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def _unlink_all(paths: Iterable[str]) -> None:
    for p in paths:
        _unlink(p)


def _lower_priority(nice: int) -> None:
    """Give the calling thread (Linux: a thread is a task) ``nice`` more niceness: a
    writer behind a buffer yields the CPU to the threads that must keep up with input."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except (AttributeError, OSError) as exc:  # not Linux, or not allowed: keep going
        log.warning("store writer: cannot lower its priority", extra={"error": str(exc)})
