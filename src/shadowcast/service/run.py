"""``shadowcast run``: the service in production, on the wall clock.

Start order: settings and topology -> the store (shared by every thread) -> the stages
(``service/wiring.py``) -> restore from the store and saved models -> the read socket (other
commands read the store through it while the service holds it) -> the collector (UDP) ->
the loop. The loop ticks once per step, ``rollup.lateness`` after each step ends. With
``service.flows_from: store`` the collector only writes flows, and the rollup's flows are
polled from the store (every collector's: ``service/storefeed.py``).

SIGTERM or SIGINT: the current tick finishes, the collector stops and flushes what it
received, the intake profiles what is queued, steps that are complete are run, then a
checkpoint flushes every buffer and saves the models; a restart resumes from there.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Any

from shadowcast.clock import WallClock
from shadowcast.errors import ConfigError
from shadowcast.logs import fields
from shadowcast.service.loop import Service
from shadowcast.service.storefeed import StoreFeed
from shadowcast.service.wiring import Environment, build_service
from shadowcast.store.base import Store
from shadowcast.store.remote import StoreSocket, socket_path
from shadowcast.store.shared import SharedStore

log = logging.getLogger(__name__)


def load_topology(settings: Any) -> Any:
    from shadowcast.datasets import load_topology as load

    cfg = settings.service
    if cfg.topology is None:
        raise ConfigError(
            "service.topology: required by `shadowcast run` (the backbone's topology file: "
            "SNDlib XML, GraphML or node-link JSON)"
        )
    return load(cfg.topology, capacities_from=cfg.capacities_from)


class Runner:
    """The production service: collector + loop + read socket, until ``stop()``.

    ``environment`` adds to what :class:`Environment` gets besides the settings (an
    actuator, a tunnel backend and VTEPs, a probe backend, ``on_step``: the namespace lab
    passes its real ones); ``collector_netns`` opens the collector's sockets inside that
    network namespace (the lab's management namespace) instead of this one."""

    def __init__(
        self,
        settings: Any,
        *,
        duration_s: float | None = None,
        environment: Mapping[str, Any] | None = None,
        collector_netns: str | None = None,
    ) -> None:
        from shadowcast.store.config import open_store

        self.settings = settings
        self.duration_s = duration_s
        self.stop_event = threading.Event()
        topo = load_topology(settings)
        data_dir = Path(settings.data_dir)
        self.state_dir = Path(settings.service.state_dir or data_dir / "state")
        self.store = SharedStore(open_store(settings.store.collecting()))
        self.clock = WallClock()
        self.service: Service = build_service(
            settings,
            Environment(
                topology=topo,
                store=self.store,
                clock=self.clock,
                state_dir=self.state_dir,
                **dict(environment or {}),
            ),
        )
        self.collector_netns = collector_netns
        self.socket: StoreSocket | None = None
        self.socket_path = socket_path(data_dir)
        self.collector: Any = None
        self._collector_thread: threading.Thread | None = None
        self.feed: StoreFeed | None = None
        self.api: Any = None  # api/server.py ApiServer, when api.enabled

    def install_signal_handlers(self) -> None:
        def handler(signum: int, frame: FrameType | None) -> None:
            log.info("signal received, finishing the current cycle", extra={"signal": signum})
            self.stop_event.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def start(self) -> dict[str, Any]:
        from shadowcast.collect.server import CollectServer

        restored = self.service.restore()
        if self.settings.service.read_socket:
            self.socket = StoreSocket(self.store, self.socket_path, routes={"/health": self.health})
        self.service.s.intake.start()
        intake = self.service.s.intake
        from_store = self.settings.service.flows_from == "store"
        # flows_from store: the collector only writes flows; the rollup reads them back with
        # every other collector's from the store
        self.collector = CollectServer(
            self.settings.collect, self.store, sinks=[] if from_store else [intake.put]
        )
        collector = self.collector
        if self.collector_netns is None:
            ports = collector.bind()
        else:
            from shadowcast.shadow.sockets import call_in_netns

            ports = call_in_netns(self.collector_netns, collector.bind)
        ready = threading.Event()
        self._collector_thread = threading.Thread(
            target=self.collector.serve,
            kwargs={"on_ready": lambda _: ready.set()},
            name="collector",
            daemon=True,
        )
        self._collector_thread.start()
        if not ready.wait(60):
            raise ConfigError(f"the collector did not start: {self.collector.failures}")
        if from_store:
            self.feed = store_feed(self.settings, self.service, self.store, restored)
            self.feed.start(self.clock.time)
        if self.settings.api.enabled:
            from shadowcast.api.server import ApiServer
            from shadowcast.api.state import ApiState

            state = ApiState(self.settings, self.store, self.service, self.collector.snapshot)
            state.attach(self.service)
            self.api = ApiServer(state, self.settings.api)
            self.api.start()
        log.info(
            "service started",
            extra=fields({"mode": self.service.s.plan.mode, "listen": ports, **restored}),
        )
        return {"ports": ports, **restored}

    def health(self) -> dict[str, Any]:
        """The service's health, with its collector's store writes (``stages.collector``):
        while the store is away the collector queues and spills, and the service is
        ``degraded``."""
        h = self.service.health()
        c = self.collector
        if self.feed is not None:
            h["stages"]["store_feed"] = self.feed.stats()
        if c is None:
            return h
        snap = c.snapshot()
        sp = snap.spool
        away = not c.spool.healthy
        h["stages"]["collector"] = {
            "rows_stored": snap.rows_stored,
            "store_errors": snap.store_errors,
            "store_away": away,
            "queued_rows": sp.queued_rows,
            "rows_spilled": sp.rows_spilled,
            "spilled_bytes": sp.spilled_bytes,
            "rows_lost": snap.rows_lost,
        }
        if away:
            h["status"] = "degraded"
        return h

    def loop(self) -> None:
        step = self.service.step_s
        lateness = self.service.s.rollup.lateness_s
        started = time.monotonic()
        while not self.stop_event.is_set():
            now = int(self.clock.time())
            nxt = (now // step + 1) * step + lateness
            wake = min(nxt, now + 5)  # wake often enough to probe, flush and notice signals
            if not self.clock.sleep_until(_dt(wake), self.stop_event):
                break
            self.service.tick(int(self.clock.time()))
            if self.collector is not None and self.collector.failures:
                log.error("collector failed: %s", "; ".join(self.collector.failures))
                self.service.status = "degraded"
            if self.duration_s is not None and time.monotonic() - started >= self.duration_s:
                break

    def shutdown(self) -> None:
        if self.api is not None:
            self.api.stop()
        if self.collector is not None:
            self.collector.stop()
        if self._collector_thread is not None:
            self._collector_thread.join(60)
        if self.feed is not None:
            self.feed.stop(self.clock.time())  # one last poll: what the collectors stored
        self.service.s.intake.stop()
        self.service.tick(int(self.clock.time()))
        self.service.checkpoint(int(self.clock.time()))
        if self.socket is not None:
            self.socket.close()
        self.service.s.writer.close()  # rows a failing store did not take: to the spill folder
        self.store.close()
        log.info("service stopped", extra={"steps": self.service.steps})


def store_feed(
    settings: Any, service: Service, store: Store, restored: dict[str, Any]
) -> StoreFeed:
    """The feed of ``service.flows_from: store``, from where the restored service resumes
    (or now)."""
    cfg = settings.service
    lateness, poll = cfg.seconds("flows_lateness"), cfg.seconds("flows_poll")
    rollup_lateness = service.s.rollup.lateness_s
    if rollup_lateness < lateness + poll:
        raise ConfigError(
            f"service.flows_from store: rollup.lateness_s ({rollup_lateness}) must be at least "
            f"service.flows_lateness + flows_poll ({lateness + poll} s)"
        )
    start = restored.get("resume_at_s") or int(time.time())
    return StoreFeed(
        store,
        service.s.intake.put,
        start_s=int(start),
        poll_s=poll,
        lateness_s=lateness,
        max_duration_s=cfg.seconds("flows_max_duration"),
    )


def _dt(seconds: int) -> Any:
    import numpy as np

    return np.datetime64(int(seconds), "s")
