"""Reading a store that a running service holds: over a Unix socket, read-only.

An embedded store (DuckDB) takes one writing process; while ``shadowcast run`` (or
``collect``) holds it, other commands cannot open the file. The holder therefore serves the
store's read side on a Unix socket beside it (``<data_dir>/shadowcast.sock``, mode 0600:
only the service's user can connect): ``read``, ``aggregate`` and ``count`` answer with Arrow
IPC streams over HTTP/1.1. :class:`RemoteStore` is the client: a read-only ``Store`` whose
writes raise StoreError. :func:`open_for_reading` opens the store directly when it can and
through the socket when the file is held.

Extra JSON endpoints (the service's health) are plugged in with ``routes``.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pyarrow as pa

from shadowcast.errors import StoreError
from shadowcast.store.base import AggQuery, Store, TimeRange

log = logging.getLogger(__name__)
SOCKET_NAME = "shadowcast.sock"
MAX_REQUEST = 1 << 20


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return bytes(sink.getvalue())


def _from_ipc(data: bytes) -> pa.Table:
    return pa.ipc.open_stream(pa.py_buffer(data)).read_all()


def _time(v: Any) -> datetime | None:
    return None if v in (None, "") else datetime.fromisoformat(str(v))


def _ranges(v: Any) -> dict[str, TimeRange] | None:
    """``{"column": [from, to]}`` of a read request (ISO times or null)."""
    if not v:
        return None
    if not isinstance(v, dict) or not all(isinstance(r, list) and len(r) == 2 for r in v.values()):
        raise ValueError("ranges must map a column to [from, to]")
    return {str(col): (_time(lo), _time(hi)) for col, (lo, hi) in v.items()}


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    store: Store
    routes: Mapping[str, Callable[[], Any]]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        log.debug("store socket: " + format, *args)

    def _send(self, code: int, body: bytes, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, code: int, message: str) -> None:
        self._send(code, json.dumps({"error": message}).encode(), "application/json")

    def do_GET(self) -> None:  # noqa: N802
        route = self.server.routes.get(self.path)
        if route is None:
            self._error(404, f"no such endpoint {self.path}")
            return
        try:
            body = json.dumps(route(), default=str).encode()
        except Exception as exc:
            self._error(500, str(exc))
            return
        self._send(200, body, "application/json")

    def do_POST(self) -> None:  # noqa: N802
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_REQUEST:
            self._error(413, "request too large")
            return
        try:
            req = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(req, dict):
                raise ValueError("the request must be a JSON object")
        except ValueError as exc:
            self._error(400, f"bad request: {exc}")
            return
        st = self.server.store
        try:
            if self.path == "/store/read":
                table = st.read(
                    str(req["table"]), _time(req.get("start")), _time(req.get("end")),
                    req.get("where") or None, ranges=_ranges(req.get("ranges")),
                )  # fmt: skip
            elif self.path == "/store/aggregate":
                table = st.aggregate(
                    AggQuery(
                        table=str(req["table"]),
                        step_s=int(req["step_s"]),
                        by=tuple(req.get("by") or ()),
                        values=tuple(req.get("values") or ()),
                        agg=str(req.get("agg", "sum")),
                        start=_time(req.get("start")),
                        end=_time(req.get("end")),
                        where=dict(req.get("where") or {}),
                    )
                )
            elif self.path == "/store/count":
                body = json.dumps({"rows": st.count(str(req["table"]))}).encode()
                self._send(200, body, "application/json")
                return
            else:
                self._error(404, f"no such endpoint {self.path}")
                return
        except (KeyError, TypeError, ValueError) as exc:
            self._error(400, f"bad request: {exc}")
            return
        except StoreError as exc:
            self._error(422, str(exc))
            return
        self._send(200, _ipc(table), "application/vnd.apache.arrow.stream")


class StoreSocket:
    """Serves ``store``'s read side on ``path`` until ``close()``."""

    def __init__(
        self, store: Store, path: Path, routes: Mapping[str, Callable[[], Any]] | None = None
    ) -> None:
        self.path = Path(path)
        if self.path.exists():
            if _alive(self.path):
                raise StoreError(f"{self.path}: another process already serves this store")
            self.path.unlink()  # left behind by a process that died
        self.path.parent.mkdir(parents=True, exist_ok=True)
        old = os.umask(0o177)
        try:
            self._server = _Server(str(self.path), _Handler)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o600)
        self._server.store = store
        self._server.routes = dict(routes or {})
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="store-socket", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
        with contextlib.suppress(OSError):
            self.path.unlink()


def _alive(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


class RemoteStore:
    """A read-only Store over a running service's socket."""

    def __init__(self, path: Path, timeout_s: float = 300.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s

    def __repr__(self) -> str:
        return f"RemoteStore({str(self.path)!r})"

    def _call(self, method: str, endpoint: str, body: dict[str, Any] | None = None) -> bytes:
        conn = _UnixConnection(str(self.path), self.timeout_s)
        try:
            data = json.dumps(body, default=str).encode() if body is not None else None
            headers = {"Content-Type": "application/json"} if data is not None else {}
            conn.request(method, endpoint, body=data, headers=headers)
            resp = conn.getresponse()
            payload = resp.read()
        except OSError as exc:
            raise StoreError(f"cannot reach the service's store socket {self.path}: {exc}") from exc
        finally:
            conn.close()
        if resp.status != 200:
            try:
                msg = json.loads(payload).get("error", "")
            except ValueError:
                msg = payload[:200].decode(errors="replace")
            raise StoreError(f"the service refused {endpoint}: {msg}")
        return payload

    def get_json(self, endpoint: str) -> Any:
        return json.loads(self._call("GET", endpoint))

    def write(self, table: str, batch: pa.Table) -> int:
        raise StoreError("read-only: the running service owns the store (write through it)")

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        raise StoreError("read-only: the running service owns the store")
        yield  # pragma: no cover

    def aggregate(self, query: AggQuery) -> pa.Table:
        body = {
            "table": query.table,
            "step_s": query.step_s,
            "by": list(query.by),
            "values": list(query.values),
            "agg": query.agg,
            "start": query.start.isoformat() if query.start else None,
            "end": query.end.isoformat() if query.end else None,
            "where": dict(query.where),
        }
        return _from_ipc(self._call("POST", "/store/aggregate", body))

    def read(
        self,
        table: str,
        start: datetime | None = None,
        end: datetime | None = None,
        where: dict[str, str] | None = None,
        *,
        ranges: Mapping[str, TimeRange] | None = None,
    ) -> pa.Table:
        body = {
            "table": table,
            "start": start.isoformat() if start else None,
            "end": end.isoformat() if end else None,
            "where": where,
            "ranges": {
                col: [lo.isoformat() if lo else None, hi.isoformat() if hi else None]
                for col, (lo, hi) in (ranges or {}).items()
            },
        }
        return _from_ipc(self._call("POST", "/store/read", body))

    def count(self, table: str) -> int:
        return int(json.loads(self._call("POST", "/store/count", {"table": table}))["rows"])

    def retain(
        self,
        max_age: timedelta,
        now: datetime | None = None,
        tables: Sequence[str] | None = None,
        where: dict[str, str] | None = None,
    ) -> dict[str, int]:
        raise StoreError("read-only: retention runs in the service that owns the store")

    def close(self) -> None:
        return None


def socket_path(data_dir: Path) -> Path:
    return Path(data_dir) / SOCKET_NAME


def open_for_reading(config: Any, data_dir: Path | None = None) -> Store:
    """The configured store, opened directly; when its file is held by a running service,
    a :class:`RemoteStore` through that service's socket instead."""
    from shadowcast.store.config import open_store

    try:
        return open_store(config)
    except StoreError as exc:
        sock = socket_path(Path(data_dir if data_dir is not None else config.data_dir))
        if "lock" not in str(exc).lower() or not sock.exists():
            raise
        log.info(
            "store held by a running service; reading through its socket",
            extra={"socket": str(sock)},
        )
        return RemoteStore(sock)
