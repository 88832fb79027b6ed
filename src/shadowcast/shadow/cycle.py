"""The shadow stage of the living service: new paths open tunnels, tunnels get probed.

Each step the profiler's new-path events (application, ingress edge, egress edge) are
resolved to router paths (:class:`~shadowcast.shadow.events.PathResolver`) and offered to the
tunnel manager, which opens tunnels within its caps (or refuses and counts why). Idle
tunnels close (``idle_s`` without their application, on the service's clock). Every
``interval_s`` a probe round measures up to ``per_round`` tunnels, least recently measured
first, through a :class:`ProbeBackend` (real STAMP in the lab, the simulated network in a
replay); every byte passes the manager's probe budget. Real probes take seconds, so they
run off the loop thread (:class:`DeferredProbes`, ``shadow/probes.py``): a round submits
them and every tick collects those that finished. Results are returned as
``ProbeResult`` rows for the store's ``shadow`` table, where the forecaster reads them.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from shadowcast.profile.events import AppPathEvent
from shadowcast.records import F64, Topology
from shadowcast.shadow.events import PathResolver
from shadowcast.shadow.results import ProbeResult
from shadowcast.shadow.simulate import link_metrics, path_metrics
from shadowcast.shadow.stamp import PathMetrics
from shadowcast.shadow.tunnels import Tunnel, TunnelManager

log = logging.getLogger(__name__)


class ProbeBackend(Protocol):
    """Measures one tunnel now; None when the probe could not run (or, for a deferred
    backend, runs later)."""

    def measure(self, tunnel: Tunnel, now_s: float) -> ProbeResult | None: ...


@runtime_checkable
class DeferredProbes(ProbeBackend, Protocol):
    """A backend whose probes finish later (real probes run off the loop thread,
    ``shadow/probes.py``): ``measure`` submits, ``finished`` hands back what completed
    since the last call; ``failures`` counts the probes that did not."""

    @property
    def failures(self) -> int: ...

    def finished(self) -> list[ProbeResult]: ...


class SimulatedProbes:
    """Path metrics from the simulated network's current link loads (``loads()``, Mbit/s
    per link), through the queueing model of ``shadow/simulate.py``, computed once per link
    and probe time and summed along each path. The probe bytes a real round would send
    still pass the manager's budget."""

    PROBE_BYTES = 10 * 86  # ten STAMP packets on the wire

    def __init__(self, topology: Topology, loads: Callable[[], F64], manager: TunnelManager):
        self.topology = topology
        self.loads = loads
        self.manager = manager
        self._index: dict[tuple[str, str], int] = {}
        for e, lk in enumerate(topology.links):
            self._index.setdefault((lk.src, lk.dst), e)
        self._cache: tuple[float, dict[str, F64]] | None = None

    def _links(self, now_s: float) -> dict[str, F64]:
        if self._cache is None or self._cache[0] != now_s:
            self._cache = (now_s, link_metrics(self.topology, self.loads()))
        return self._cache[1]

    def measure(self, tunnel: Tunnel, now_s: float) -> ProbeResult | None:
        key = tunnel.spec.key
        if not self.manager.admit(key, self.PROBE_BYTES):
            return None
        path = [self._index[(a, b)] for a, b in zip(key.path[:-1], key.path[1:], strict=True)]
        m = path_metrics(self._links(now_s), path)
        nan = math.nan
        loss = m["loss"]
        metrics = PathMetrics(
            10, round(10 * (1 - loss)), loss, loss, 0.0,
            m["rtt_ms"], nan, m["owd_ms"], nan, nan, m["jitter_ms"],
        )  # fmt: skip
        return ProbeResult(now_s, tunnel.spec.name, key.path, metrics, m["abw_mbps"])


class ShadowCycle:
    """Tunnels for new paths, probe rounds on a schedule (see the module docstring)."""

    def __init__(
        self,
        resolver: PathResolver,
        manager: TunnelManager,
        probes: ProbeBackend | None,
        *,
        interval_s: float = 300.0,
        per_round: int = 16,
    ) -> None:
        self.resolver = resolver
        self.manager = manager
        self.probes = probes
        self.interval_s = interval_s
        self.per_round = per_round
        self._last_probe: dict[str, float] = {}
        self._next_round = -math.inf
        self.probed = 0
        self.probe_failures = 0

    def on_events(self, events: Iterable[AppPathEvent]) -> int:
        """Offer new-path events to the manager; returns tunnels opened or reused."""
        n = 0
        for ev in self.resolver.resolve_all(events):
            if self.manager.on_new_path(ev) is not None:
                n += 1
        return n

    def touch(self, apps_seen: Iterable[str]) -> None:
        """Applications still carrying traffic keep their tunnels from idling out."""
        seen = set(apps_seen)
        now = self.manager.clock()
        for t in self.manager.tunnels.values():
            if t.applications & seen:
                t.last_used = now

    def cycle(self, now_s: float) -> list[ProbeResult]:
        """Close idle tunnels; collect what a deferred backend finished; run a probe round
        when one is due."""
        self.manager.expire(now_s)
        out: list[ProbeResult] = []
        if isinstance(self.probes, DeferredProbes):
            out = self.probes.finished()
            self.probed += len(out)
        if self.probes is None or now_s < self._next_round:
            return out
        self._next_round = now_s + self.interval_s
        live = list(self.manager.tunnels.values())
        live.sort(key=lambda t: self._last_probe.get(t.spec.name, -math.inf))
        done = len(out)
        for t in live[: self.per_round]:
            try:
                r = self.probes.measure(t, now_s)
            except Exception as exc:  # a failed probe must not stop the service
                self.probe_failures += 1
                log.warning("probe failed", extra={"tunnel": t.spec.name, "error": str(exc)})
                continue
            self._last_probe[t.spec.name] = now_s
            if r is not None:
                out.append(r)
        self.probed += len(out) - done
        return out

    def counters(self) -> dict[str, int]:
        c = dict(self.manager.counters)
        c["tunnels_active"] = len(self.manager.tunnels)
        c["probed"] = self.probed
        c["probe_failures"] = self.probe_failures
        if isinstance(self.probes, DeferredProbes):
            c["probe_failures"] += self.probes.failures
        c["unresolved_events"] = self.resolver.unresolved
        return c


def od_measurements(
    results: Sequence[ProbeResult], od_index: dict[tuple[str, str], int], n: int
) -> dict[str, F64]:
    """Latest measurement per OD pair (ingress, egress of the path) as exogenous rows."""
    names = ("abw_mbps", "rtt_ms", "loss")
    out = {k: np.full(n, np.nan) for k in names}
    for r in results:
        k = od_index.get((r.path[0], r.path[-1])) if r.path else None
        if k is None:
            continue
        out["abw_mbps"][k] = r.abw_mbps
        out["rtt_ms"][k] = r.metrics.rtt_ms
        out["loss"][k] = r.metrics.loss
    return out
