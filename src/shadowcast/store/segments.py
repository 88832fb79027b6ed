"""Immutable Parquet segment files for the wide per-flow tables (``flows``, ``flow_features``).

A DuckDB ``INSERT`` of a flow row costs about three times what writing the same row to a
Parquet file with pyarrow does, so in ``parquet`` mode (:class:`~shadowcast.store.duckdb.
DuckDBStore`'s default) each write of these tables becomes one Parquet file under
``<db file>.segments/<table>/`` and one row in a manifest table inside the DuckDB file.
The manifest row is what makes the file part of the table, and it is written in the same
DuckDB transaction as everything else, so segments are committed, rolled back and seen by
readers exactly as table rows are; files no committed manifest row names (a crash between
writing the file and committing) are deleted when the store is next opened.

Fresh segments (``fresh="arrow"``, what a collector writes): a write becomes an Arrow IPC
file (``.arrow``, LZ4) instead, about half the writer's CPU per row of a Parquet file
(Parquet's page encoding, not its compression, is the cost), and a background pass
(:meth:`Segments.compact`, run by the store at low priority) rewrites runs of fresh
segments into one Parquet segment each, once they hold ``COMPACT_ROWS`` rows or are
``compact_after_s`` old, in the same manifest transaction discipline. Until then queries
read them too: each run of consecutive fresh files is registered with the query's DuckDB
cursor as an Arrow table and joined to the Parquet runs in manifest order.

Queries read the committed files with ``read_parquet([...])`` in manifest (= insertion)
order, less any file found damaged (:mod:`shadowcast.store.segcheck`): a query that fails
has the manifest's files inspected, the damaged ones are logged, counted and set aside
(skipped by later queries and left out of ``count``) and the query is asked again, so one
bad file does not make the table unreadable; ``shadowcast store check --repair`` mends the
store for good. Every page is written with a CRC (checked by ``store check``).
Retention drops whole segments older than the cutoff and rewrites one that straddles it;
runs of small segments at the end (a collector flushing a few rows a second) are merged
so a day does not leave tens of thousands of files.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet

from shadowcast.errors import StoreError
from shadowcast.store import conform as cf
from shadowcast.store.segcheck import SegmentProblem, inspect

log = logging.getLogger(__name__)

# Segment folders open in this process (DuckDB shares one database between connections to
# a file): files of another open store's unfinished transaction are not leftovers.
# Each holds [stores open on it, last sequence number handed out].
_OPEN: dict[Path, list[int]] = {}
_OPEN_LOCK = threading.Lock()

# Untyped modules (compute kernels are generated at import time).
pc: Any = pyarrow.compute
pq: Any = pyarrow.parquet

MANIFEST = "_shadowcast_segments"
SEGMENTED: frozenset[str] = frozenset({"flows", "flow_features"})
COMPRESSIONS: tuple[str, ...] = ("lz4", "zstd", "snappy", "none")
ROW_GROUP = 131_072  # DuckDB scans row groups in parallel
SMALL_ROWS = 100_000  # segments under this many rows are merged ...
MERGE_RUN = 16  # ... once this many of them end the table
FRESH_FORMATS: tuple[str, ...] = ("parquet", "arrow")
FRESH_SUFFIX = ".arrow"
COMPACT_ROWS = 1_048_576  # fresh rows rewritten into one Parquet segment (8 row groups)
COMPACT_AFTER_S = 30.0  # ... or fewer, once the oldest fresh file is this old
# While writes keep coming (a burst), compaction waits, unless this many rows are fresh
# (a query reads fresh rows whole: this bounds its memory, ~0.5 GB).
COMPACT_BACKLOG_ROWS = 4 * COMPACT_ROWS
# Arrow IPC offers LZ4 (frame) and ZSTD buffer compression only.
_IPC_COMPRESSION: dict[str, str | None] = {"lz4": "lz4", "zstd": "zstd", "snappy": "lz4"}


def is_fresh(name: str) -> bool:
    """A fresh (Arrow IPC) segment file, by its name."""
    return name.endswith(FRESH_SUFFIX)


def read_segment(path: Path, schema: pa.Schema, threads: bool = True) -> pa.Table:
    """All rows of one segment file, either format, as ``schema``; ``threads=False``
    decompresses in the calling thread (the compactor's, at the lowest priority), not in
    Arrow's thread pool."""
    if is_fresh(path.name):
        options = pa.ipc.IpcReadOptions(use_threads=threads)
        with pa.memory_map(str(path)) as src:
            data = pa.ipc.open_file(src, options=options).read_all()
        return data.cast(schema)
    out: pa.Table = pq.read_table(path, schema=schema, use_threads=threads)
    return out


@dataclass(slots=True)
class Pending:
    """Files a transaction made (deleted if it rolls back) and made obsolete (deleted
    once it commits)."""

    created: list[Path] = field(default_factory=list)
    obsolete: list[Path] = field(default_factory=list)

    def committed(self) -> None:
        for path in self.obsolete:
            _unlink(path)
        self.clear()

    def rolled_back(self) -> None:
        for path in self.created:
            _unlink(path)
        self.clear()

    def clear(self) -> None:
        self.created.clear()
        self.obsolete.clear()


def _pruned_on(schema: pa.Schema) -> list[str]:
    """Columns whose row-group min/max let DuckDB skip row groups: times (every range
    query), names (exporter, application, site) and addresses. Counters, ports and the
    like are unsorted within a segment, so their min/max skip nothing; leaving them out
    makes a segment about 5 % cheaper to write."""
    return [
        f.name
        for f in schema
        if pa.types.is_timestamp(f.type)
        or pa.types.is_string(f.type)
        or pa.types.is_fixed_size_binary(f.type)
    ]


def _unlink(path: Path) -> None:
    try:
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("cannot delete segment file", extra={"path": str(path), "error": str(exc)})


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)
_LO, _HI = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)


def _as_datetime(value: int | None, unit: str) -> datetime | None:
    """An integer timestamp in ``unit`` as an aware datetime, clamped to years 1-9999."""
    if value is None:
        return None
    us = value // 1000 if unit == "ns" else value * {"s": 1_000_000, "ms": 1_000, "us": 1}[unit]
    if us <= (_LO - _EPOCH) // _US:
        return _LO
    if us >= (_HI - _EPOCH) // _US:
        return _HI
    return _EPOCH + timedelta(microseconds=us)


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class Segments:
    """The segment files of one store under ``root`` and their manifest."""

    def __init__(
        self, root: Path, compression: str = "lz4", fsync: bool = True, fresh: str = "parquet"
    ) -> None:
        if compression not in COMPRESSIONS:
            raise StoreError(f"unknown segment compression {compression!r} (one of {COMPRESSIONS})")
        if fresh not in FRESH_FORMATS:
            raise StoreError(f"unknown fresh segment format {fresh!r} (one of {FRESH_FORMATS})")
        self.root = root
        self.compression = compression
        self.fsync = fsync
        self.fresh = fresh
        self._opened: Path | None = None
        self._entry = [0, 0]
        self._damaged: dict[tuple[str, str], SegmentProblem] = {}
        self._damaged_lock = threading.Lock()
        self.counters: Counter[str] = Counter()  # damaged_found, queries_retried

    # -- setup ---------------------------------------------------------------------------

    def open(self, con: duckdb.DuckDBPyConnection) -> None:
        """Create the manifest if missing and delete files it does not name."""
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {MANIFEST} (tbl VARCHAR, seq BIGINT, file VARCHAR, "
            "rows BIGINT, tmin TIMESTAMPTZ, tmax TIMESTAMPTZ)"
        )
        rows = con.execute(f"SELECT tbl, file, seq FROM {MANIFEST}").fetchall()
        known = {(str(r[0]), str(r[1])) for r in rows}
        key = self.root.resolve()
        top = max((int(r[2]) for r in rows), default=0)
        with _OPEN_LOCK:
            entry = _OPEN.setdefault(key, [0, top])
            shared = entry[0] > 0
            entry[0] += 1
            self._entry = entry
        self._opened = key
        if shared:
            return
        for table in SEGMENTED:
            folder = self.root / table
            if not folder.is_dir():
                continue
            for path in folder.iterdir():
                if (table, path.name) not in known:
                    log.info("deleting uncommitted segment file", extra={"path": str(path)})
                    _unlink(path)

    def close(self) -> None:
        key, self._opened = self._opened, None
        if key is None:
            return
        with _OPEN_LOCK:
            _OPEN[key][0] -= 1
            if _OPEN[key][0] <= 0:
                del _OPEN[key]

    def next_seq(self) -> int:
        with _OPEN_LOCK:
            self._entry[1] += 1
            return self._entry[1]

    # -- files ---------------------------------------------------------------------------

    def _write_file(self, table: str, data: pa.Table, fresh: bool = False) -> Path:
        """``data`` as a new segment file: Parquet, or Arrow IPC when ``fresh``."""
        folder = self.root / table
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (uuid.uuid4().hex + (FRESH_SUFFIX if fresh else ".parquet"))
        strings = [f.name for f in data.schema if pa.types.is_string(f.type)]
        try:
            if fresh:
                # compressed in the calling thread: a collector's writer runs at a lower
                # priority than its socket readers, Arrow's thread pool would not
                options = pa.ipc.IpcWriteOptions(
                    compression=_IPC_COMPRESSION.get(self.compression), use_threads=False
                )
                with (
                    pa.OSFile(str(path), "wb") as sink,
                    pa.ipc.new_file(sink, data.schema, options=options) as writer,
                ):
                    writer.write_table(data, max_chunksize=ROW_GROUP)
            else:
                pq.write_table(
                    data,
                    path,
                    compression=self.compression,
                    row_group_size=ROW_GROUP,
                    use_dictionary=strings,
                    write_statistics=_pruned_on(data.schema),
                    write_page_checksum=True,
                )
            if self.fsync:
                fd = os.open(path, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
        except (OSError, pa.ArrowException) as exc:
            _unlink(path)
            raise StoreError(f"write to {table!r}: cannot write segment {path}: {exc}") from exc
        return path

    @staticmethod
    def _bounds(table: str, data: pa.Table) -> tuple[datetime | None, datetime | None]:
        """Earliest and latest time in ``data`` for the manifest (None when all null).

        Computed on the integers and clamped to what a datetime holds, so a stray value
        (a file written before writes dropped such rows) cannot fail the write: the
        manifest only needs bounds that contain every row, for retention."""
        col = data.column(cf.time_column(table))
        unit = col.type.unit if pa.types.is_timestamp(col.type) else "ms"
        mm = pc.min_max(col.cast(pa.int64())).as_py()
        return _as_datetime(mm["min"], unit), _as_datetime(mm["max"], unit)

    def append(
        self,
        cur: duckdb.DuckDBPyConnection,
        table: str,
        data: pa.Table,
        seq: int,
        pending: Pending,
    ) -> None:
        """Write ``data`` as a new segment inside the cursor's open transaction (a fresh
        one when the store writes fresh segments)."""
        path = self._write_file(table, data, fresh=self.fresh == "arrow")
        pending.created.append(path)
        lo, hi = self._bounds(table, data)
        try:
            cur.execute(
                f"INSERT INTO {MANIFEST} VALUES (?, ?, ?, ?, ?, ?)",
                [table, seq, path.name, data.num_rows, lo, hi],
            )
        except duckdb.Error as exc:
            raise StoreError(f"write to {table!r} failed: {exc}") from exc

    # -- reads ---------------------------------------------------------------------------

    def files(self, cur: duckdb.DuckDBPyConnection, table: str) -> list[str]:
        """The segment files of ``table`` the cursor's transaction sees, in order (less
        those found damaged)."""
        rows = cur.execute(
            f"SELECT file FROM {MANIFEST} WHERE tbl = ? ORDER BY seq", [table]
        ).fetchall()
        bad = self._damaged
        return [str(self.root / table / r[0]) for r in rows if (table, r[0]) not in bad]

    def rows(self, cur: duckdb.DuckDBPyConnection, table: str) -> int:
        rows = cur.execute(
            f"SELECT coalesce(sum(rows), 0) FROM {MANIFEST} WHERE tbl = ?", [table]
        ).fetchall()
        with self._damaged_lock:
            lost = sum(p.rows for p in self._damaged.values() if p.table == table)
        return int(rows[0][0]) - lost

    def manifest(self, cur: duckdb.DuckDBPyConnection, table: str) -> list[tuple[str, int]]:
        """(file, rows) of every segment of ``table``, damaged or not, in order."""
        rows = cur.execute(
            f"SELECT file, rows FROM {MANIFEST} WHERE tbl = ? ORDER BY seq", [table]
        ).fetchall()
        return [(str(f), int(n)) for f, n in rows]

    def diagnose(
        self, cur: duckdb.DuckDBPyConnection, table: str, *, full: bool = False, hint: str = ""
    ) -> list[SegmentProblem]:
        """Inspect ``table``'s segment files (footers; in full with ``full`` or when the
        file is named in ``hint``, a query's error); set aside, log and return the newly
        damaged. A missing file counts only if the manifest still names it afterwards (a
        merge or retention may have replaced it meanwhile)."""
        found = []
        for name, rows in self.manifest(cur, table):
            if (table, name) in self._damaged:
                continue
            why = inspect(self.root / table / name, rows, full=full or name in hint)
            if why is not None:
                found.append(SegmentProblem(table, name, rows, why))
        if any(p.reason == "file missing" for p in found):
            still = {name for name, _ in self.manifest(cur, table)}
            found = [p for p in found if p.file in still]
        with self._damaged_lock:
            for p in found:
                self._damaged[(p.table, p.file)] = p
                self.counters["damaged_found"] += 1
        for p in found:
            log.error(
                "damaged segment set aside: its rows are left out of queries until "
                "`shadowcast store check --repair`",
                extra={"table": p.table, "file": p.file, "rows": p.rows, "reason": p.reason},
            )
        return found

    def damaged(self) -> list[SegmentProblem]:
        with self._damaged_lock:
            return list(self._damaged.values())

    def forget(self, table: str, file: str) -> None:
        """A repaired segment: no longer damaged (its manifest row is gone or renamed)."""
        with self._damaged_lock:
            self._damaged.pop((table, file), None)

    def source(
        self,
        cur: duckdb.DuckDBPyConnection,
        table: str,
        with_table: bool,
        registered: list[str] | None = None,
    ) -> str:
        """A FROM-clause item holding the rows of ``table`` (its DuckDB table, when
        ``with_table``, followed by its segments in manifest order).

        Each run of fresh (Arrow) files is read (memory-mapped) and registered with
        ``cur`` as a view whose name is appended to ``registered``: the caller
        unregisters them after its query. Raises OSError or ArrowException when a fresh
        file cannot be read (compacted away meanwhile: ask again; or damaged)."""
        files = self.files(cur, table)
        if not files:
            return '"' + table + '"'
        items = [f'"{table}"'] if with_table else []  # FROM items, in manifest order
        schema = cf.table_schema(table)
        for fresh, group in itertools.groupby(files, key=is_fresh):
            run = list(group)
            if not fresh:
                items.append(f"read_parquet([{', '.join(_lit(f) for f in run)}])")
                continue
            view = f"_shadowcast_fresh_{table}_{len(items)}"
            data = pa.concat_tables([read_segment(Path(f), schema) for f in run])
            cur.register(view, data)
            if registered is not None:
                registered.append(view)
            items.append(view)
        if len(items) == 1:
            return items[0]
        return "(" + " UNION ALL ".join(f"SELECT * FROM {i}" for i in items) + ")"

    def fresh_rows(self, cur: duckdb.DuckDBPyConnection, table: str) -> int:
        """Rows of ``table`` in fresh (not yet compacted) segments."""
        rows = cur.execute(
            f"SELECT coalesce(sum(rows), 0) FROM {MANIFEST} WHERE tbl = ? AND file LIKE ?",
            [table, "%" + FRESH_SUFFIX],
        ).fetchall()
        return int(rows[0][0])

    # -- retention and merging -----------------------------------------------------------

    def retain(
        self, cur: duckdb.DuckDBPyConnection, table: str, cutoff: datetime, pending: Pending
    ) -> int:
        """Drop the rows of ``table`` whose time is before ``cutoff``; rows deleted."""
        tcol = cf.time_column(table)
        try:
            old = cur.execute(
                f"SELECT seq, file, rows, tmax < ? FROM {MANIFEST} "
                "WHERE tbl = ? AND tmin < ? ORDER BY seq",
                [cutoff, table, cutoff],
            ).fetchall()
            deleted = 0
            for seq, name, rows, whole in old:
                path = self.root / table / name
                if whole:
                    cur.execute(f"DELETE FROM {MANIFEST} WHERE tbl = ? AND seq = ?", [table, seq])
                    deleted += int(rows)
                else:
                    data = read_segment(path, cf.table_schema(table))
                    t = data.column(tcol)
                    keep = pc.or_kleene(
                        pc.greater_equal(t, pa.scalar(cutoff, t.type)), pc.is_null(t)
                    )
                    data = data.filter(keep)
                    new = self._write_file(table, data)
                    pending.created.append(new)
                    lo, hi = self._bounds(table, data)
                    cur.execute(
                        f"UPDATE {MANIFEST} SET file = ?, rows = ?, tmin = ?, tmax = ? "
                        "WHERE tbl = ? AND seq = ?",
                        [new.name, data.num_rows, lo, hi, table, seq],
                    )
                    deleted += int(rows) - data.num_rows
                pending.obsolete.append(path)
        except (duckdb.Error, OSError, pa.ArrowException) as exc:
            raise StoreError(f"retention on {table!r} failed: {exc}") from exc
        return deleted

    def merge_tail(self, cur: duckdb.DuckDBPyConnection, table: str, pending: Pending) -> int:
        """Merge the run of small segments that ends ``table`` into one, when it is
        ``MERGE_RUN`` long; segments merged (0 when none)."""
        tail = cur.execute(
            f"SELECT seq, file, rows FROM {MANIFEST} WHERE tbl = ? ORDER BY seq DESC LIMIT ?",
            [table, 4 * MERGE_RUN],
        ).fetchall()
        run = []
        for seq, name, rows in tail:
            if int(rows) >= SMALL_ROWS or (table, str(name)) in self._damaged:
                break
            run.append((int(seq), str(name)))
        if len(run) < MERGE_RUN:
            return 0
        run.reverse()
        self._replace_run(cur, table, run, pending)
        return len(run)

    def _replace_run(
        self,
        cur: duckdb.DuckDBPyConnection,
        table: str,
        run: list[tuple[int, str]],
        pending: Pending,
    ) -> pa.Table:
        """Rewrite consecutive segments ``run`` ((seq, file), in order) as one Parquet
        segment taking the first one's place in the manifest; the rows rewritten."""
        schema = cf.table_schema(table)
        paths = [self.root / table / name for _, name in run]
        data = pa.concat_tables([read_segment(p, schema, threads=False) for p in paths])
        new = self._write_file(table, data)
        pending.created.append(new)
        lo, hi = self._bounds(table, data)
        seqs = [seq for seq, _ in run]
        cur.execute(
            f"DELETE FROM {MANIFEST} WHERE tbl = ? AND seq IN ({', '.join('?' * len(seqs))})",
            [table, *seqs],
        )
        cur.execute(
            f"INSERT INTO {MANIFEST} VALUES (?, ?, ?, ?, ?, ?)",
            [table, seqs[0], new.name, data.num_rows, lo, hi],
        )
        pending.obsolete.extend(paths)
        return data

    def compact(
        self,
        cur: duckdb.DuckDBPyConnection,
        table: str,
        pending: Pending,
        *,
        force: bool = False,
        min_rows: int = COMPACT_ROWS,
        after_s: float = COMPACT_AFTER_S,
    ) -> int:
        """Rewrite the oldest run of consecutive fresh segments of ``table`` (up to about
        ``min_rows`` rows) as one Parquet segment, when it holds ``min_rows`` rows, its
        first file is ``after_s`` old, or ``force``; rows compacted (0: nothing due)."""
        first = cur.execute(
            f"SELECT min(seq) FROM {MANIFEST} WHERE tbl = ? AND file LIKE ?",
            [table, "%" + FRESH_SUFFIX],
        ).fetchall()
        if first[0][0] is None:
            return 0
        tail = cur.execute(
            f"SELECT seq, file, rows FROM {MANIFEST} WHERE tbl = ? AND seq >= ? "
            "ORDER BY seq LIMIT 4096",
            [table, int(first[0][0])],
        ).fetchall()
        run: list[tuple[int, str]] = []
        rows = 0
        for seq, name, n in tail:
            if not is_fresh(str(name)) or (table, str(name)) in self._damaged:
                break
            run.append((int(seq), str(name)))
            rows += int(n)
            if rows >= min_rows:
                break
        if not run:
            return 0
        if not force and rows < min_rows:
            try:
                age = time.time() - (self.root / table / run[0][1]).stat().st_mtime
            except OSError:
                age = after_s  # gone or unreadable: let the rewrite find out
            if age < after_s:
                return 0
        return int(self._replace_run(cur, table, run, pending).num_rows)
