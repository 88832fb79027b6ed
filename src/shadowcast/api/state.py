"""What the API reads: the running service (when there is one yet), the store, the settings.

The service's loop runs in its own thread; the API's handlers run in uvicorn's. Every read
of the service's state goes through :meth:`ApiState.reading`, which holds the service's lock
(``Service.lock``, held by the loop for a whole tick): a handler sees the state between two
steps, never in the middle of one. Handlers copy what they need under it and do their store
reads after letting it go (the lock order is always service, then store).

``shadowcast run`` builds the service before serving; ``shadowcast run --replay`` starts
serving first and attaches the service the replay builds (``attach``): until then health
says ``starting`` and the other routes answer 503.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from shadowcast.errors import DataError, ShadowcastError
from shadowcast.service.loop import Service
from shadowcast.store.base import Store


class NotReady(ShadowcastError):
    """The service is not built yet (a replay is starting): 503."""


class NotFound(DataError):
    """No such link, class or plan: 404."""


@dataclass
class ApiState:
    settings: Any
    store: Store
    service: Service | None = None
    collector: Callable[[], Any] | None = None  # the collector's snapshot(), for /metrics
    started: float = field(default_factory=time.time)
    mode_note: str = ""  # e.g. "replay synthetic at speed max"
    _attached: threading.Event = field(default_factory=threading.Event)
    cache: dict[str, tuple[Any, Any]] = field(default_factory=dict)  # name -> (key, value)

    def attach(self, service: Service, collector: Callable[[], Any] | None = None) -> None:
        self.service = service
        if collector is not None:
            self.collector = collector
        self._attached.set()

    def wait_attached(self, timeout: float) -> bool:
        return self._attached.wait(timeout)

    @contextmanager
    def reading(self) -> Iterator[Service]:
        """The service, its lock held (NotReady before it is attached)."""
        svc = self.service
        if svc is None:
            raise NotReady("the service is starting: try again in a few seconds")
        with svc.lock:
            yield svc

    def cached(self, name: str, key: Any, make: Callable[[], Any]) -> Any:
        """``make()``, recomputed only when ``key`` changes (e.g. the step count)."""
        hit = self.cache.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        value = make()
        self.cache[name] = (key, value)
        return value
