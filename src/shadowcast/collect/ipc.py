"""Messages from collector workers to the supervisor over a pipe.

``F`` + table name + NUL + path: a batch spilled as an Arrow IPC file into a shared-memory
folder (the supervisor maps it without copying and deletes it once stored; a worker with
``max_pending`` files not yet stored waits: that is the back-pressure);
``B`` + table name, then one more message, the Arrow IPC stream itself (for sources
without a spill folder); ``S`` + JSON: per-exporter counters; ``R``: ready; ``D``: done;
``E`` + text: failure.

The files keep the pipe small: the supervisor's writer thread holds the GIL for much of a
store write, and a worker blocked on a full pipe would stop reading its sockets.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection

import pyarrow as pa


@dataclass(frozen=True, slots=True)
class Message:
    kind: str  # batch | stats | ready | done | error
    name: str = ""
    table: pa.Table | None = None
    stats: dict[str, dict[str, int]] | None = None
    path: str = ""  # the spill file to delete once the batch is stored


PIPE_BYTES = 1 << 20
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
    """Batches of one worker as Arrow IPC files in ``folder`` (best on tmpfs)."""

    def __init__(self, folder: str, prefix: str, max_pending: int = 32) -> None:
        self.folder, self.prefix, self.max_pending = folder, prefix, max_pending
        self.seq = 0
        self.waited_s = 0.0

    def pending(self) -> int:
        return sum(1 for n in os.listdir(self.folder) if n.startswith(self.prefix))

    def send(self, conn: Connection, name: str, table: pa.Table) -> None:
        t0 = time.monotonic()
        while self.pending() >= self.max_pending:
            time.sleep(0.005)
        self.waited_s += time.monotonic() - t0
        self.seq += 1
        path = os.path.join(self.folder, f"{self.prefix}{self.seq}.arrow")
        with pa.OSFile(path, "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        conn.send_bytes(b"F" + name.encode() + b"\0" + path.encode())


def recv_message(conn: Connection) -> Message:
    """The next message (a batch's two parts read together)."""
    raw = conn.recv_bytes()
    if raw[:1] == b"F":
        name, _, path = raw[1:].decode().partition("\0")
        table = pa.ipc.open_stream(pa.memory_map(path)).read_all()
        return Message("batch", name=name, table=table, path=path)
    if raw[:1] == b"B":
        body = conn.recv_bytes()
        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
        return Message("batch", name=raw[1:].decode(), table=table)
    return decode_message(raw)


def encode_stats(stats: dict[str, dict[str, int]]) -> bytes:
    return b"S" + json.dumps(stats, separators=(",", ":")).encode()


READY = b"R"
DONE = b"D"


def encode_error(text: str) -> bytes:
    return b"E" + text.encode(errors="replace")


def decode_message(raw: bytes) -> Message:
    tag = raw[:1]
    if tag == b"S":
        return Message("stats", stats=json.loads(raw[1:]))
    if tag == b"R":
        return Message("ready")
    if tag == b"D":
        return Message("done")
    return Message("error", name=raw[1:].decode(errors="replace"))
