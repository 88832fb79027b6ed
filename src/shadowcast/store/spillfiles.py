"""The spool's folder on disk: Arrow IPC files, one per batch, in a folder one spool holds.

A file is named ``<sequence>-<table>-<rows>.arrow`` (so a later spool finds the order,
the table and the row count without reading it), written under a temporary name, synced
and renamed: a file with its final name is whole. An exclusive ``flock`` on ``.lock``
keeps a second spool (another process) out of the folder while the first lives.
"""

from __future__ import annotations

import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa

from shadowcast.errors import StoreError

SUFFIX = ".arrow"


@dataclass(frozen=True, slots=True)
class SpillFile:
    seq: int
    table: str
    rows: int
    path: Path
    size: int


class SpillFolder:
    """Spill files in ``folder``, locked for this process until :meth:`close`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreError(f"spool: cannot use spill folder {folder}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreError(f"spool: spill folder {folder} is in use by another process") from None
        self._fd: int | None = fd

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def scan(self) -> list[SpillFile]:
        """The whole files a previous spool left, oldest first (cut-short ones deleted)."""
        found: list[SpillFile] = []
        for path in self.folder.iterdir():
            if path.suffix == ".tmp":
                path.unlink(missing_ok=True)  # a spill cut short: its rows were still queued
                continue
            num, _, rest = path.stem.partition("-")
            table, _, rows = rest.rpartition("-")
            if path.suffix != SUFFIX or not (num.isdigit() and rows.isdigit() and table):
                continue
            found.append(SpillFile(int(num), table, int(rows), path, path.stat().st_size))
        return sorted(found, key=lambda f: f.seq)

    def write(self, seq: int, table: str, data: pa.Table) -> SpillFile:
        """``data`` as file number ``seq`` (lz4-compressed IPC); raises OSError or
        ArrowException, leaving no file behind."""
        path = self.folder / f"{seq:012d}-{table}-{data.num_rows}{SUFFIX}"
        tmp = path.with_suffix(".tmp")
        try:
            opts = pa.ipc.IpcWriteOptions(compression="lz4")
            with pa.OSFile(str(tmp), "wb") as sink:
                with pa.ipc.new_file(sink, data.schema, options=opts) as w:
                    w.write_table(data)
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return SpillFile(seq, table, data.num_rows, path, path.stat().st_size)

    @staticmethod
    def read(path: Path) -> pa.Table:
        with pa.memory_map(str(path)) as src:
            return pa.ipc.open_file(src).read_all()
