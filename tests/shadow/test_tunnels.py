"""Tunnel manager caps under an event storm (simulated backend, fake clock)."""

from __future__ import annotations

import random

import networkx as nx
import pytest

from shadowcast.records import Link, Topology
from shadowcast.shadow.base import NewPathEvent, TunnelKey
from shadowcast.shadow.config import TunnelConfig
from shadowcast.shadow.tunnels import SimulatedBackend, TunnelManager, link_capacities


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def grid_topology(n: int = 5, cap: float = 10e9) -> Topology:
    g = nx.grid_2d_graph(n, n)
    name = {v: f"r{v[0]}{v[1]}" for v in g}
    links = []
    for a, b in g.edges:
        links += [Link(name[a], name[b], cap), Link(name[b], name[a], cap)]
    return Topology("grid", tuple(sorted(name.values())), tuple(links))


def shortest_paths(topo: Topology) -> dict[tuple[str, str], tuple[str, ...]]:
    g = nx.DiGraph([(lk.src, lk.dst) for lk in topo.links])
    edges = [r for r in topo.nodes if r.endswith("0") or r.endswith("4")]
    return {(a, b): tuple(nx.shortest_path(g, a, b)) for a in edges for b in edges if a != b}


def make(cfg: TunnelConfig, clock: FakeClock) -> tuple[TunnelManager, SimulatedBackend, dict]:
    topo = grid_topology()
    paths = shortest_paths(topo)
    vteps = {r: f"10.0.{i}.1" for i, r in enumerate(topo.nodes)}
    backend = SimulatedBackend()
    return TunnelManager(backend, vteps, link_capacities(topo), cfg, clock=clock), backend, paths


def test_event_storm_respects_rate_cap_and_probe_budget() -> None:
    cfg = TunnelConfig(
        max_tunnels=150,
        create_rate_per_s=40.0,
        create_burst=25,
        probe_budget_share=0.01,
        probe_rate_bps=2e6,
        min_probe_rate_bps=0.2e6,
        max_burst_bytes=200_000,
        min_age_for_eviction_s=1.0,
        idle_s=6.0,
    )
    clock = FakeClock()
    mgr, backend, paths = make(cfg, clock)
    rng = random.Random(7)
    pairs = list(paths)
    created_at: list[float] = []
    admitted: dict[tuple[str, str], float] = {}
    rate, seconds, train = 10_000, 10, 20_000
    for i in range(rate * seconds):
        clock.t = i / rate
        a, b = rng.choice(pairs)
        ev = NewPathEvent(
            f"app{rng.randrange(5000)}", a, b, paths[(a, b)], f"c{rng.randrange(500)}"
        )
        before = mgr.counters["created"]
        mgr.on_new_path(ev)
        if mgr.counters["created"] > before:
            created_at.append(clock.t)
        assert len(mgr.tunnels) <= cfg.max_tunnels
        if i % 500 == 0:  # every 50 ms every tunnel tries to send a train
            assert len(backend.live) == len(mgr.tunnels)
            for lk, bps in mgr.link_probe_bps.items():
                assert bps <= cfg.probe_budget_share * mgr.capacities[lk] + 1e-6
            for key, t in list(mgr.tunnels.items()):
                if mgr.admit(key, train):
                    for lk in t.links:
                        admitted[lk] = admitted.get(lk, 0.0) + train * 8
    # creations: never more than burst + rate * window, over every window
    assert len(created_at) <= cfg.create_burst + cfg.create_rate_per_s * seconds
    for j, t0 in enumerate(created_at):
        in_window = sum(1 for t in created_at[j:] if t < t0 + 1.0)
        assert in_window <= cfg.create_burst + cfg.create_rate_per_s
    assert len(created_at) > 200  # the cap was exercised, not idle
    assert mgr.counters["refused_rate"] > 0 and mgr.counters["torn_down_evicted"] > 0
    # probe bytes per link over the run stay within the budget
    assert admitted
    for lk, bits in admitted.items():
        assert bits / seconds <= cfg.probe_budget_share * mgr.capacities[lk] * 1.0001
    assert max(bits / seconds for bits in admitted.values()) > 0.3 * 0.01 * 10e9
    mgr.close()
    assert backend.live == {} and backend.created == backend.deleted


def test_reuse_pin_and_refusals() -> None:
    clock = FakeClock()
    cfg = TunnelConfig(max_tunnels=2, min_age_for_eviction_s=10.0, idle_s=60.0)
    mgr, backend, paths = make(cfg, clock)
    (a, b), (c, d), (e, f) = list(paths)[:3]
    t1 = mgr.on_new_path(NewPathEvent("web", a, b, paths[(a, b)], sport=50_001))
    assert t1 is not None and t1.spec.sport == 50_001 and t1.spec.vni >= cfg.vni_base
    assert mgr.on_new_path(NewPathEvent("video", a, b, paths[(a, b)])) is t1
    assert t1.applications == {"web", "video"} and mgr.counters["reused"] == 1
    t2 = mgr.on_new_path(NewPathEvent("x", c, d, paths[(c, d)]))
    assert t2 is not None and 49_152 <= t2.spec.sport <= 65_534
    assert mgr.on_new_path(NewPathEvent("y", e, f, paths[(e, f)])) is None  # cap, too young
    assert mgr.counters["refused_cap"] == 1
    assert mgr.on_new_path(NewPathEvent("z", "nowhere", f, ("nowhere", f))) is None
    assert mgr.on_new_path(NewPathEvent("z", a, b, (a, "r44"))) is None
    assert mgr.counters["refused_unknown_edge"] == 1 and mgr.counters["refused_unknown_path"] == 1
    clock.t = 20.0
    mgr.on_new_path(NewPathEvent("web", a, b, paths[(a, b)]))  # t1 most recently used
    t3 = mgr.on_new_path(NewPathEvent("y", e, f, paths[(e, f)]))
    assert t3 is not None and set(mgr.tunnels) == {
        TunnelKey.of(NewPathEvent("", a, b, paths[(a, b)])),
        t3.spec.key,
    }
    assert t3.spec.name == t2.spec.name  # slot reused
    clock.t = 200.0
    assert mgr.expire() == 2 and backend.live == {}


def test_budget_fails_closed() -> None:
    clock = FakeClock()
    cfg = TunnelConfig(probe_budget_share=0.01, probe_rate_bps=60e6, min_probe_rate_bps=50e6)
    mgr, _, paths = make(cfg, clock)
    (a, b) = next(iter(paths))
    assert mgr.on_new_path(NewPathEvent("a", a, b, paths[(a, b)], "c1")) is not None
    # 1 % of 10 Gbit/s = 100 Mbit/s; the second tunnel on the same links gets only 40
    assert mgr.on_new_path(NewPathEvent("a", a, b, paths[(a, b)], "c2")) is None
    assert mgr.counters["refused_budget"] == 1


def test_burst_cap() -> None:
    clock = FakeClock()
    mgr, _, paths = make(TunnelConfig(max_burst_bytes=10_000, probe_rate_bps=80_000), clock)
    (a, b) = next(iter(paths))
    t = mgr.on_new_path(NewPathEvent("a", a, b, paths[(a, b)]))
    assert t is not None
    assert not mgr.admit(t.spec.key, 5_000)  # bucket starts empty
    clock.t = 1.0
    assert mgr.admit(t.spec.key, 5_000) is True  # 10 kB banked after 1 s at 80 kbit/s
    clock.t = 100.0
    assert not mgr.admit(t.spec.key, 12_000)  # larger than the per-path burst cap
    assert mgr.admit(t.spec.key, 10_000) and not mgr.admit(t.spec.key, 1_000)


@pytest.mark.parametrize("bad", [{"max_tunnels": 0}, {"probe_budget_share": 0.5}, {"nope": 1}])
def test_config_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError):
        TunnelConfig(**bad)
