"""Real probes for the living service: STAMP over VXLAN tunnels, off the loop thread.

The shadow stage (:class:`~shadowcast.shadow.cycle.ShadowCycle`) calls ``measure(tunnel,
now)`` from the service's loop thread, and a tick must never wait for the network: a probe
(path check, pings, a paced available-bandwidth train) takes seconds. So ``measure`` only
*submits*. The probe's bytes are admitted against the tunnel manager's budget there, in
the loop thread (the only thread that touches the manager), and the probe itself runs on
one worker thread with its own asyncio loop, through :class:`~shadowcast.shadow.prober.Prober`
spending what was admitted. Finished results come back through ``finished()``, which the
shadow stage reads every tick; ``measure`` itself always returns None.

At most one probe per tunnel is pending and at most ``max_pending`` in all (more are
counted in ``counters["probe_busy"]`` and offered again next round). A probe that fails
(the tunnel went away, a socket error, ``timeout_s``) is counted and logged, never raised
into the service. ``close()`` stops the worker after the probe in flight.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from shadowcast.shadow.abw import wire_bytes
from shadowcast.shadow.base import TunnelKey
from shadowcast.shadow.config import AbwConfig, StampConfig
from shadowcast.shadow.prober import Prober
from shadowcast.shadow.results import ProbeResult
from shadowcast.shadow.tunnels import Tunnel, TunnelManager
from shadowcast.shadow.wire import base_len

log = logging.getLogger(__name__)


class _Prepaid:
    """The probe bytes admitted in the loop thread, spent by the prober in the worker."""

    def __init__(self, capacities: Mapping[tuple[str, str], float], nbytes: int) -> None:
        self._capacities = dict(capacities)
        self._counters: Counter[str] = Counter()
        self.left = nbytes

    @property
    def capacities(self) -> Mapping[tuple[str, str], float]:
        return self._capacities

    @property
    def counters(self) -> Counter[str]:
        return self._counters

    def admit(self, key: TunnelKey, nbytes: int) -> bool:
        if nbytes > self.left:
            return False
        self.left -= nbytes
        return True


@dataclass
class _Job:
    tunnel: Tunnel
    pings: int
    trains: int
    budget: _Prepaid


@dataclass
class _Done:
    name: str
    result: ProbeResult | None
    error: str
    counters: Counter[str]


class RealProbes:
    """A :class:`~shadowcast.shadow.cycle.ProbeBackend` that probes for real (see the module
    docstring). ``netns_of`` maps an edge router to its VTEP's namespace, ``owner`` a hop
    address to its router (the path check)."""

    def __init__(
        self,
        manager: TunnelManager,
        netns_of: Mapping[str, str | None],
        owner: Callable[[str], str] = lambda a: a,
        *,
        stamp: StampConfig | None = None,
        abw: AbwConfig | None = None,
        pings: int = 10,
        interval_s: float = 0.02,
        trains: int = 1,
        verify: bool = True,
        max_pending: int = 64,
        timeout_s: float = 30.0,
    ) -> None:
        self.manager = manager
        self.netns_of = dict(netns_of)
        self.owner = owner
        self.stamp = stamp or StampConfig()
        self.abw = abw or AbwConfig()
        self.pings, self.interval_s, self.trains = pings, interval_s, trains
        self.verify = verify
        self.max_pending = max_pending
        self.timeout_s = timeout_s
        self.key = self.stamp.key()
        self.counters: Counter[str] = Counter()
        self._pending: set[str] = set()
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._done: list[_Done] = []
        self._lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._work, name="shadow-probes", daemon=True)
        self._thread.start()

    @property
    def failures(self) -> int:
        return self.counters["probe_failures"]

    # -- loop thread -------------------------------------------------------------------
    def measure(self, tunnel: Tunnel, now_s: float) -> ProbeResult | None:
        """Submit a probe of ``tunnel`` (its bytes admitted now); the result comes later
        through :meth:`finished`. Always None."""
        name = tunnel.spec.name
        if self._closed or name in self._pending or len(self._pending) >= self.max_pending:
            self.counters["probe_busy"] += 1
            return None
        key = tunnel.spec.key
        ping_bytes = self.pings * wire_bytes(base_len(self.key))
        if not self.manager.admit(key, ping_bytes):
            return None  # refused and counted by the manager
        train_bytes = self.abw.train_packets * wire_bytes(self.abw.packet_bytes)
        trains = 0
        while trains < self.trains:  # as the prober would: a train only if the budget holds it
            if not self.manager.admit(key, train_bytes):
                self.manager.counters["abw_skipped_budget"] += 1
                break
            trains += 1
        spent = ping_bytes + trains * train_bytes
        self._pending.add(name)
        self._jobs.put(_Job(tunnel, self.pings, trains, _Prepaid(self.manager.capacities, spent)))
        self.counters["probe_submitted"] += 1
        return None

    def finished(self) -> list[ProbeResult]:
        """Results finished since the last call (loop thread: the manager's counters)."""
        with self._lock:
            done, self._done = self._done, []
        out: list[ProbeResult] = []
        for d in done:
            self._pending.discard(d.name)
            self.manager.counters.update(d.counters)
            if d.result is None:
                self.counters["probe_failures"] += 1
                log.warning("probe failed", extra={"tunnel": d.name, "error": d.error})
            else:
                out.append(d.result)
        return out

    def close(self, timeout_s: float = 60.0) -> None:
        if self._closed:
            return
        self._closed = True
        self._jobs.put(None)
        self._thread.join(timeout_s)

    # -- worker thread -----------------------------------------------------------------
    def _work(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while (job := self._jobs.get()) is not None:
                self._run(loop, job)
        finally:
            loop.close()

    def _run(self, loop: asyncio.AbstractEventLoop, job: _Job) -> None:
        prober = Prober(job.budget, self.netns_of, self.owner, key=self.key, port=self.stamp.port)
        coro = prober.probe(
            job.tunnel,
            pings=job.pings,
            interval_s=self.interval_s,
            trains=job.trains,
            payload=self.abw.packet_bytes,
            train_len=self.abw.train_packets,
            verify=self.verify,
        )
        res: ProbeResult | None = None
        error = ""
        try:
            res = loop.run_until_complete(asyncio.wait_for(coro, self.timeout_s))
        except Exception as exc:  # one failed probe must not stop the others
            error = f"{type(exc).__name__}: {exc}"
        with self._lock:
            self._done.append(_Done(job.tunnel.spec.name, res, error, job.budget.counters))
