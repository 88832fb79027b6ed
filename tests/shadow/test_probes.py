"""Deferred probe backends: the shadow stage collects finished probes every tick, and
RealProbes admits the budget in the caller's thread and reports failed probes (no root: the
probes here fail for real, on addresses this machine does not have)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from shadowcast.profile.events import AppPathEvent
from shadowcast.records import Link, Topology
from shadowcast.shadow.config import TunnelConfig
from shadowcast.shadow.cycle import DeferredProbes, ShadowCycle
from shadowcast.shadow.events import PathResolver
from shadowcast.shadow.probes import RealProbes
from shadowcast.shadow.results import ProbeResult
from shadowcast.shadow.stamp import PathMetrics
from shadowcast.shadow.tunnels import SimulatedBackend, Tunnel, TunnelManager


def topo() -> Topology:
    links = []
    for a, b in [("A", "B"), ("B", "C")]:
        links += [Link(a, b, 1e9), Link(b, a, 1e9)]
    return Topology("line", ("A", "B", "C"), tuple(links))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def manager(clock: Clock) -> TunnelManager:
    vteps = {"A": "192.0.2.1", "C": "192.0.2.3"}
    caps = {(lk.src, lk.dst): lk.capacity for lk in topo().links}
    return TunnelManager(SimulatedBackend(), vteps, caps, TunnelConfig(), clock=clock)


def open_tunnel(cycle: ShadowCycle) -> Tunnel:
    ev = AppPathEvent("zoom", "voip", "A", "C", datetime(2026, 1, 1, tzinfo=UTC))
    assert cycle.on_events([ev]) == 1
    return next(iter(cycle.manager.tunnels.values()))


class Later:
    """A deferred backend whose probes finish when the test says so."""

    def __init__(self) -> None:
        self.submitted: list[str] = []
        self.ready: list[ProbeResult] = []
        self.failures = 0

    def measure(self, tunnel: Tunnel, now_s: float) -> ProbeResult | None:
        self.submitted.append(tunnel.spec.name)
        return None

    def finished(self) -> list[ProbeResult]:
        out, self.ready = self.ready, []
        return out


def test_finished_probes_are_collected_on_every_tick_not_only_on_rounds() -> None:
    clock = Clock()
    backend = Later()
    assert isinstance(backend, DeferredProbes)
    cycle = ShadowCycle(PathResolver(topo()), manager(clock), backend, interval_s=60.0)
    t = open_tunnel(cycle)
    assert cycle.cycle(clock.now) == [] and backend.submitted == [t.spec.name]
    nan = math.nan
    m = PathMetrics(10, 10, 0.0, 0.0, 0.0, 1.0, nan, 0.5, nan, nan, 0.1)
    backend.ready.append(ProbeResult(clock.now, t.spec.name, t.spec.key.path, m, 5.0))
    clock.now += 5  # the next tick, long before the next round
    got = cycle.cycle(clock.now)
    assert [r.tunnel for r in got] == [t.spec.name] and backend.submitted == [t.spec.name]
    backend.failures = 2
    counters = cycle.counters()
    assert counters["probed"] == 1 and counters["probe_failures"] == 2
    clock.now += 60  # a round is due again
    assert cycle.cycle(clock.now) == [] and len(backend.submitted) == 2


def test_real_probes_admit_in_the_callers_thread_and_count_failed_probes() -> None:
    clock = Clock()
    mgr = manager(clock)
    probes = RealProbes(mgr, {"A": None, "C": None}, verify=False, timeout_s=5.0)
    try:
        cycle = ShadowCycle(PathResolver(topo()), mgr, probes, interval_s=60.0)
        t = open_tunnel(cycle)
        assert probes.measure(t, clock.now) is None  # the budget starts empty: refused
        assert mgr.counters["probe_refused"] == 1 and probes.counters["probe_submitted"] == 0
        clock.now += 30  # the tunnel's bucket fills
        t0 = time.monotonic()
        assert probes.measure(t, clock.now) is None
        assert time.monotonic() - t0 < 0.5  # submitted, not run here
        assert probes.counters["probe_submitted"] == 1 and mgr.counters["probe_bytes"] > 0
        assert probes.measure(t, clock.now) is None  # one probe per tunnel at a time
        assert probes.counters["probe_busy"] == 1
        # the tunnel's inner address is not on this machine: the probe fails in the worker
        deadline = time.monotonic() + 20
        results: list[ProbeResult] = []
        while probes.failures == 0 and time.monotonic() < deadline:
            results += probes.finished()
            time.sleep(0.05)
        assert probes.failures == 1 and results == []
        assert cycle.counters()["probe_failures"] == 1
        assert probes.measure(t, clock.now + 60) is None  # free again after it finished
        assert probes.counters["probe_busy"] == 1
    finally:
        probes.close()
    assert not probes._thread.is_alive()
