"""The API's HTTP server: uvicorn in a thread of ``shadowcast run`` (the loop keeps its own).

The socket is bound here first (a port in use is a ConfigError naming ``api.listen``), then
handed to uvicorn; ``stop()`` lets the requests in flight finish (up to a few seconds).
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from shadowcast.api.config import ApiConfig, is_loopback
from shadowcast.api.state import ApiState
from shadowcast.errors import ConfigError

log = logging.getLogger(__name__)


class ApiServer:
    def __init__(self, state: ApiState, config: ApiConfig) -> None:
        self.state = state
        self.config = config
        self.server: object | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    def start(self, timeout_s: float = 30.0) -> str:
        """Bind, serve in a thread, wait until it answers; returns the base URL."""
        from shadowcast.extras import need

        for module in ("fastapi", "uvicorn", "jinja2", "python_multipart"):
            need(module, "the REST API and dashboard (api.enabled: false turns them off)")
        import uvicorn

        from shadowcast.api.app import build_app

        host, port = self.config.host, self.config.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise ConfigError(f"api.listen {self.config.listen}: {exc.strerror or exc}") from None
        sock.listen(128)
        bound = sock.getsockname()[1]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        self.url = f"http://{shown}:{bound}"
        cfg = uvicorn.Config(
            build_app(self.state),
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=5,
        )
        server = uvicorn.Server(cfg)
        self.server = server
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="api", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout_s
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"api.listen {self.config.listen}: the API did not start")
            time.sleep(0.05)
        if not self.config.tokens:
            log.warning(
                "api: no tokens configured (api.tokens): listening on loopback only, and every "
                "local caller is an admin",
                extra={"url": self.url, "loopback": is_loopback(host)},
            )
        log.info("api serving", extra={"url": self.url, "docs": self.url + "/docs"})
        return self.url

    def stop(self) -> None:
        server = self.server
        if server is not None:
            server.should_exit = True  # type: ignore[attr-defined]
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None
