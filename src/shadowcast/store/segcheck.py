"""Damaged segment files: inspect them, and repair the store around them.

A segment file can be damaged on disk (truncated by a full disk or a crash of the storage,
garbled by a bad block) while its manifest row still names it; DuckDB then fails every
query of the table. :class:`~shadowcast.store.segments.Segments` keeps the damaged files it
has found aside (queries skip them, ``count`` leaves their rows out); this module says
whether a file is sound and repairs the store.

* :func:`inspect`: the footer must parse and agree with the manifest's row count (cheap,
  what a failing query and ``store stats`` run); with ``full``, every page is decoded and
  its CRC checked (``store check``). Files written since page checksums were turned on
  carry a CRC per page, so a garbled page is found even when it still decodes; DuckDB
  itself reads such a page without complaint.
* :func:`repair`: inside one store transaction, each damaged segment is rewritten from the
  row groups that still read (manifest row updated) or, when none does, dropped from the
  manifest; the damaged file is copied into ``<segments>/quarantine/<table>/`` and deleted
  from the table's folder once the transaction commits (a rollback leaves all as it was).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import pyarrow as pa
import pyarrow.parquet

from shadowcast.errors import StoreError
from shadowcast.store import conform as cf

if TYPE_CHECKING:
    from shadowcast.store.segments import Pending, Segments

log = logging.getLogger(__name__)
pq: Any = pyarrow.parquet

QUARANTINE = "quarantine"


@dataclass(frozen=True, slots=True)
class SegmentProblem:
    """A segment file the manifest names that cannot be read as it says."""

    table: str
    file: str
    rows: int  # the manifest's row count
    reason: str


@dataclass(frozen=True, slots=True)
class SegmentRepair:
    """What ``repair`` did with one damaged segment."""

    table: str
    file: str
    rows: int  # the manifest's row count before
    kept: int  # rows rewritten into a new segment
    action: str  # rewritten | dropped
    quarantined: str | None  # where the damaged file went (None: it was missing)


def inspect(path: Path, rows: int, *, full: bool) -> str | None:
    """None when the file is sound, else what is wrong with it (one line)."""
    if not path.is_file():
        return "file missing"
    if path.name.endswith(".arrow"):
        return _inspect_ipc(path, rows, full=full)
    try:
        pf = pq.ParquetFile(path, page_checksum_verification=full)
        n = pf.metadata.num_rows
        if n != rows:
            return f"holds {n} rows, the manifest says {rows}"
        if full:
            for i in range(pf.num_row_groups):
                pf.read_row_group(i)
    except (OSError, pa.ArrowException) as exc:
        return f"unreadable: {' '.join(str(exc).split())}"
    return None


def _inspect_ipc(path: Path, rows: int, *, full: bool) -> str | None:
    """A fresh (Arrow IPC) segment: the footer must parse and its record batches hold
    the manifest's rows (each batch is read: the cheap check needs its length); with
    ``full``, every batch is also validated in full. IPC files carry no page CRC: a
    garbled value that still decodes is not found."""
    try:
        with pa.memory_map(str(path)) as src:
            reader = pa.ipc.open_file(src)
            n = 0
            for i in range(reader.num_record_batches):
                batch = reader.get_batch(i)
                if full:
                    batch.validate(full=True)
                n += batch.num_rows
        if n != rows:
            return f"holds {n} rows, the manifest says {rows}"
    except (OSError, pa.ArrowException) as exc:
        return f"unreadable: {' '.join(str(exc).split())}"
    return None


def _readable_parts(path: Path) -> list[pa.Table]:
    """The row groups (Parquet, checksums verified) or record batches (Arrow IPC) of a
    segment file that still read."""
    parts: list[pa.Table] = []
    if path.name.endswith(".arrow"):
        return _readable_batches(path)
    try:
        pf = pq.ParquetFile(path, page_checksum_verification=True)
    except (OSError, pa.ArrowException):
        return parts
    for i in range(pf.num_row_groups):
        try:
            parts.append(pf.read_row_group(i))
        except (OSError, pa.ArrowException) as exc:
            log.warning("row group lost", extra={"path": str(path), "group": i, "error": str(exc)})
    return parts


def _readable_batches(path: Path) -> list[pa.Table]:
    """The record batches of an Arrow IPC file that still read. A file cut short (no
    footer) is read as the stream it starts with, up to the first batch that does not."""
    parts: list[pa.Table] = []
    try:
        with pa.memory_map(str(path)) as src:
            try:
                reader = pa.ipc.open_file(src)
            except (OSError, pa.ArrowException):
                src.seek(8)  # "ARROW1" and padding, then the stream
                stream = pa.ipc.open_stream(src)
                while True:
                    try:
                        batch = stream.read_next_batch()
                        batch.validate(full=True)
                    except StopIteration:
                        break
                    except (OSError, pa.ArrowException) as exc:
                        log.warning(
                            "rest of a cut file lost", extra={"path": str(path), "error": str(exc)}
                        )
                        break
                    parts.append(pa.Table.from_batches([batch]))
                return parts
            for i in range(reader.num_record_batches):
                try:
                    batch = reader.get_batch(i)
                    batch.validate(full=True)
                    parts.append(pa.Table.from_batches([batch]))
                except (OSError, pa.ArrowException) as exc:
                    log.warning(
                        "record batch lost",
                        extra={"path": str(path), "group": i, "error": str(exc)},
                    )
    except (OSError, pa.ArrowException):
        return parts
    return parts


def salvage(path: Path, table: str) -> pa.Table | None:
    """The rows of the row groups (record batches) that still read; None if none."""
    parts = _readable_parts(path)
    if not parts:
        return None
    try:
        return pa.concat_tables(parts).cast(cf.table_schema(table))
    except (pa.ArrowException, ValueError) as exc:
        log.warning("salvaged rows do not fit the schema", extra={"error": str(exc)})
        return None


def repair(
    segs: Segments,
    cur: duckdb.DuckDBPyConnection,
    problems: list[SegmentProblem],
    pending: Pending,
) -> list[SegmentRepair]:
    """Rewrite or drop each damaged segment; call inside a store transaction."""
    from shadowcast.store.segments import MANIFEST

    done: list[SegmentRepair] = []
    for p in problems:
        path = segs.root / p.table / p.file
        kept = salvage(path, p.table) if path.is_file() else None
        moved: str | None = None
        try:
            if path.is_file():
                dest = segs.root / QUARANTINE / p.table / p.file
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, dest)
                pending.created.append(dest)  # a rollback takes the copy back
                pending.obsolete.append(path)  # a commit deletes the original
                moved = str(dest)
            if kept is not None and kept.num_rows > 0:
                new = segs._write_file(p.table, kept)
                pending.created.append(new)
                lo, hi = segs._bounds(p.table, kept)
                cur.execute(
                    f"UPDATE {MANIFEST} SET file = ?, rows = ?, tmin = ?, tmax = ? "
                    "WHERE tbl = ? AND file = ?",
                    [new.name, kept.num_rows, lo, hi, p.table, p.file],
                )
                action, n = "rewritten", kept.num_rows
            else:
                cur.execute(f"DELETE FROM {MANIFEST} WHERE tbl = ? AND file = ?", [p.table, p.file])
                action, n = "dropped", 0
        except (OSError, duckdb.Error) as exc:
            raise StoreError(f"repair of segment {p.table}/{p.file} failed: {exc}") from exc
        log.warning(
            "damaged segment repaired",
            extra={"table": p.table, "file": p.file, "action": action, "kept": n, "rows": p.rows},
        )
        done.append(SegmentRepair(p.table, p.file, p.rows, n, action, moved))
    return done
