"""The collector's shared-memory folder for worker batches, and what a crash leaves there.

Each collector run makes ``/dev/shm/shadowcast-collect-XXXX`` with an ``owner.json`` (the
store it writes to) and a ``.lock`` file that the supervisor and every worker hold a
shared ``flock`` on while they live; the kernel drops those locks when a process dies,
even by SIGKILL. At the next start, :func:`orphans` finds the folders whose lock can be
taken exclusively (nobody alive uses them): the Arrow IPC files in one written for the
same store are batches that were decoded but never stored, and are written then (the
folder is removed once they are); folders of another store are left to its collector for
a day, then removed with a warning; folders with no lock (older versions) after a day.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

log = logging.getLogger(__name__)

PREFIX = "shadowcast-collect-"
LOCK = ".lock"
OWNER = "owner.json"
ORPHAN_TTL_S = 86400.0
_held: dict[str, list[int]] = {}  # folder -> lock descriptors this process holds


def shm_root() -> str | None:
    return "/dev/shm" if os.path.isdir("/dev/shm") else None


def store_identity(store: object) -> str:
    """What names the store a folder's batches belong to ("" for one that does not
    outlive its process: nothing to recover into)."""
    path = getattr(store, "path", None)
    if not isinstance(path, str) or path == ":memory:":
        return ""
    return f"{type(store).__name__}:{os.path.abspath(path)}"


def hold_shared(folder: str) -> None:
    """Hold a shared lock on ``folder`` for the rest of this process's life (or until
    :func:`release_folder`)."""
    try:
        fd = os.open(os.path.join(folder, LOCK), os.O_RDWR)
    except OSError:
        return
    fcntl.flock(fd, fcntl.LOCK_SH)
    _held.setdefault(folder, []).append(fd)


def make_folder(store_id: str, root: str | None = None) -> str:
    """A new folder for this run's batches, marked as in use by this process. The lock
    file is locked before it takes its name, so no scan ever sees it unlocked."""
    folder = tempfile.mkdtemp(prefix=PREFIX, dir=root if root is not None else shm_root())
    tmp = os.path.join(folder, LOCK + ".new")
    fd = os.open(tmp, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    os.rename(tmp, os.path.join(folder, LOCK))
    _held.setdefault(folder, []).append(fd)
    with open(os.path.join(folder, OWNER), "w") as f:
        json.dump({"store": store_id, "pid": os.getpid(), "created": time.time()}, f)
    return folder


def release_folder(folder: str | Path) -> None:
    """Remove a folder whose batches are all stored (or moved) and drop our locks on it."""
    shutil.rmtree(folder, ignore_errors=True)
    for fd in _held.pop(str(folder), []):
        with contextlib.suppress(OSError):
            os.close(fd)


@dataclass(slots=True)
class Orphan:
    """A dead run's folder holding batches for our store."""

    folder: Path
    batches: list[tuple[str, Path]] = field(default_factory=list)  # (table, file), in order
    rows: int = 0


def orphans(store_id: str, root: str | None = None, now: float | None = None) -> list[Orphan]:
    """Dead runs' folders for ``store_id`` (locked by us until :func:`release_folder`);
    stale folders of other stores, or unreadable ones, are removed on the way."""
    base = root if root is not None else shm_root()
    if base is None:
        return []
    now = time.time() if now is None else now
    out: list[Orphan] = []
    for folder in sorted(Path(base).glob(PREFIX + "*")):
        if not folder.is_dir():
            continue
        try:
            fd = os.open(folder / LOCK, os.O_RDWR)
        except FileNotFoundError:  # an older collector's folder: no way to tell if alive
            if _age(folder, now) > ORPHAN_TTL_S:
                _remove(folder, "no owner and more than a day old")
            continue
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)  # a live collector's
            continue
        owner = _owner(folder)
        if owner and owner == store_id:
            _held.setdefault(str(folder), []).append(fd)
            out.append(_collect(folder))
            continue
        os.close(fd)
        if not owner:
            _remove(folder, "left by a collector that is gone, with no store to write to")
        elif _age(folder, now) > ORPHAN_TTL_S:
            _remove(folder, f"left a day ago by a collector of {owner} that is gone")
    return out


def _collect(folder: Path) -> Orphan:
    """The folder's whole batch files, oldest first (``.tmp`` ones were cut short)."""
    found: list[tuple[float, str, str, Path]] = []
    orphan = Orphan(folder)
    for path in folder.iterdir():
        if path.suffix != ".arrow":
            continue
        table = batch_table(path.name)
        try:
            with pa.memory_map(str(path)) as src:
                rows = sum(b.num_rows for b in pa.ipc.open_stream(src))
            found.append((path.stat().st_mtime, path.name, table, path))
            orphan.rows += rows
        except (OSError, pa.ArrowException) as exc:
            log.error("unreadable batch %s left by a crashed collector, dropped: %s", path, exc)
            path.unlink(missing_ok=True)
    found.sort()
    orphan.batches = [(t, p) for _, _, t, p in found]
    return orphan


FREE_SUFFIX = ".buf"
_WORKER_BATCH = re.compile(r"^(w\d+-)(\d+)\.[^.]+\.arrow$")


def free_name(prefix: str, seq: str | int) -> str:
    """A stored batch file given back to its worker to write a later batch into."""
    return f"{prefix}free-{seq}{FREE_SUFFIX}"


def recycle(path: str) -> None:
    """A worker's batch file, once stored: renamed for that worker to overwrite with a
    later batch (its tmpfs pages stay allocated: writing a new file and deleting it costs
    about five times the CPU per byte of overwriting one), or deleted when not a worker's.
    The reader must not hold views of the file's pages (``ipc.recv_message`` copies)."""
    folder, name = os.path.split(path)
    m = _WORKER_BATCH.match(name)
    with contextlib.suppress(OSError):
        if m is None:
            os.unlink(path)
        else:
            os.rename(path, os.path.join(folder, free_name(m[1], m[2])))


def batch_name(prefix: str, seq: int, table: str) -> str:
    """A worker batch file's name: the table it is for travels with it."""
    return f"{prefix}{seq:09d}.{table}.arrow"


def batch_table(name: str) -> str:
    parts = name.split(".")
    return parts[-2] if len(parts) >= 3 else "flows"


def _owner(folder: Path) -> str | None:
    try:
        doc = json.loads((folder / OWNER).read_text())
    except (OSError, ValueError):
        return None
    store = doc.get("store") if isinstance(doc, dict) else None
    return store if isinstance(store, str) else None


def _age(folder: Path, now: float) -> float:
    try:
        return now - folder.stat().st_mtime
    except OSError:
        return 0.0


def _remove(folder: Path, why: str) -> None:
    files = list(folder.glob("*.arrow"))
    log.warning("removing %s (%s): %d batch files not stored", folder, why, len(files))
    shutil.rmtree(folder, ignore_errors=True)
