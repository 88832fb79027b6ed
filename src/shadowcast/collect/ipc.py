"""Messages from collector workers to the supervisor over a pipe.

``F`` + table name + NUL + path: a batch spilled as an Arrow IPC file into a shared-memory
folder (the supervisor reads it, a copy, and once the rows are stored renames the file
for its worker to overwrite with a later batch, :func:`shm.recycle`; a worker with too
many files not yet stored waits: that is the back-pressure);
``B`` + table name, then one more message, the Arrow IPC stream itself (for sources
without a spill folder); ``S`` + JSON: per-exporter counters (``e``) and what the worker
holds (``w``: templates, waiting bytes, memory); ``R``: ready; ``D``: done;
``E`` + text: failure.

The files keep the pipe small: the supervisor's writer thread holds the GIL for much of a
store write, and a worker blocked on a full pipe would stop reading its sockets.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import pyarrow as pa

from shadowcast.collect.shm import FREE_SUFFIX, batch_name


@dataclass(frozen=True, slots=True)
class Message:
    kind: str  # batch | stats | ready | done | error
    name: str = ""
    table: pa.Table | None = None
    stats: dict[str, dict[str, int]] | None = None
    path: str = ""  # the spill file to delete once the batch is stored
    worker: dict[str, int] | None = None  # with stats: what the worker holds now


PIPE_BYTES = 1 << 20
MAX_FREE = 8  # files given back to a worker that it keeps for later batches
F_SETPIPE_SZ = 1031  # Linux


def widen_pipe(conn: Connection) -> None:
    """Ask for a 1 MiB pipe (Linux default 64 KiB): fewer wake-ups per batch."""
    try:
        fcntl.fcntl(conn.fileno(), F_SETPIPE_SZ, PIPE_BYTES)
    except OSError:
        pass


def send_batch(conn: Connection, name: str, table: pa.Table) -> None:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    conn.send_bytes(b"B" + name.encode())
    conn.send_bytes(memoryview(sink.getvalue()))


class Spill:
    """Batches of one worker as Arrow IPC files in ``folder`` (best on tmpfs).

    Each file is written under a temporary name and renamed, so a file with the final
    name is whole (a collector restarted after a crash reads what it finds). While the
    worker's files not yet stored number ``max_pending`` or weigh ``max_bytes``, it
    waits (back-pressure), unless its parent is gone (``parent`` set, then changed)."""

    def __init__(
        self, folder: str, prefix: str, max_pending: int = 4096, max_bytes: int = 256 << 20
    ) -> None:
        self.folder, self.prefix, self.max_pending = folder, prefix, max_pending
        self.max_bytes = max_bytes
        self.seq = 0
        self.waited_s = 0.0
        self.parent: int | None = None
        self.free: list[str] = []  # files given back (stored), to be overwritten
        self.reused = 0

    def pending(self) -> tuple[int, int]:
        """Files of this worker still in the folder, and their bytes (and, on the way,
        the files given back to it: a few kept, the rest deleted)."""
        n = size = 0
        free: list[str] = []
        with os.scandir(self.folder) as it:
            for entry in it:
                if not entry.name.startswith(self.prefix):
                    continue
                if entry.name.endswith(".arrow"):
                    n += 1
                    with contextlib.suppress(OSError):
                        size += entry.stat().st_size
                elif entry.name.endswith(FREE_SUFFIX):
                    free.append(entry.path)
        for extra in free[MAX_FREE:]:
            with contextlib.suppress(OSError):
                os.unlink(extra)
        self.free = free[:MAX_FREE]
        return n, size

    def full(self) -> bool:
        n, size = self.pending()
        return n >= self.max_pending or (n > 0 and size >= self.max_bytes)

    def send(self, conn: Connection, name: str, table: pa.Table) -> None:
        t0 = time.monotonic()
        while self.full():
            if self.parent is not None and os.getppid() != self.parent:
                break  # nobody will store them: write the file for the next start
            time.sleep(0.005)
        self.waited_s += time.monotonic() - t0
        path = self.write(name, table)
        conn.send_bytes(b"F" + name.encode() + b"\0" + path.encode())

    def write(self, name: str, table: pa.Table) -> str:
        """Write ``table`` as this worker's next file (whole, or not at all); its path."""
        self.seq += 1
        path = os.path.join(self.folder, batch_name(self.prefix, self.seq, name))
        tmp = path + ".tmp"
        if self._take_free(tmp):  # overwrite a stored file's pages: no allocation
            with open(tmp, "r+b") as f:
                with pa.ipc.new_stream(pa.PythonFile(f, mode="w"), table.schema) as writer:
                    writer.write_table(table)
                f.truncate()
            self.reused += 1
        else:
            with pa.OSFile(tmp, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
        os.replace(tmp, path)
        return path

    def _take_free(self, tmp: str) -> bool:
        while self.free:
            try:
                os.rename(self.free.pop(), tmp)
                return True
            except OSError:
                continue  # gone meanwhile (the folder cleaned): try the next
        return False


def recv_message(conn: Connection) -> Message:
    """The next message (a batch's two parts read together)."""
    raw = conn.recv_bytes()
    if raw[:1] == b"F":
        name, _, path = raw[1:].decode().partition("\0")
        # a copy, not a map: the file is overwritten by its worker once stored
        with pa.OSFile(path, "rb") as src:
            table = pa.ipc.open_stream(src).read_all()
        return Message("batch", name=name, table=table, path=path)
    if raw[:1] == b"B":
        body = conn.recv_bytes()
        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
        return Message("batch", name=raw[1:].decode(), table=table)
    return decode_message(raw)


def encode_stats(stats: dict[str, dict[str, int]], worker: dict[str, int] | None = None) -> bytes:
    doc = {"e": stats, "w": worker or {}}
    return b"S" + json.dumps(doc, separators=(",", ":")).encode()


READY = b"R"
DONE = b"D"


def encode_error(text: str) -> bytes:
    return b"E" + text.encode(errors="replace")


def decode_message(raw: bytes) -> Message:
    tag = raw[:1]
    if tag == b"S":
        doc = json.loads(raw[1:])
        return Message("stats", stats=doc["e"], worker=doc["w"] or None)
    if tag == b"R":
        return Message("ready")
    if tag == b"D":
        return Message("done")
    return Message("error", name=raw[1:].decode(errors="replace"))
