"""Tunnel manager: one shadow tunnel per distinct (ingress, egress, path, class).

Every cap fails closed: when a cap would be exceeded the event is refused and counted,
no tunnel is built. Caps: ``max_tunnels`` (LRU eviction of tunnels older than
``min_age_for_eviction_s``, else refusal), a token bucket on creations per second, a probe
budget per link (the sum of the probe rates granted to tunnels crossing a link stays under
``probe_budget_share`` of its capacity), and a per-path burst cap (each tunnel's probe bytes
pass a token bucket at its granted rate whose depth is ``max_burst_bytes`` and which starts
empty, so a link's probe bytes over any span T never exceed its budget times T). Tunnels
whose application has not been seen for ``idle_s`` are torn down (probing does not count).
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from shadowcast.errors import ProbeError
from shadowcast.records import Topology
from shadowcast.shadow.base import NewPathEvent, TunnelBackend, TunnelKey, TunnelSpec
from shadowcast.shadow.config import TunnelConfig

log = logging.getLogger(__name__)


class TokenBucket:
    """``rate`` tokens per second, at most ``depth`` banked; starts with ``tokens`` (full)."""

    def __init__(self, rate: float, depth: float, now: float, tokens: float | None = None) -> None:
        self.rate, self.depth, self.last = rate, depth, now
        self.tokens = depth if tokens is None else tokens

    def take(self, n: float, now: float) -> bool:
        self.tokens = min(self.depth, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= n:
            self.tokens -= n
            return True
        return False


@dataclass(slots=True)
class Tunnel:
    spec: TunnelSpec
    created: float
    last_used: float
    probe_rate_bps: float
    bucket: TokenBucket
    links: tuple[tuple[str, str], ...]
    applications: set[str] = field(default_factory=set)


def link_capacities(topology: Topology) -> dict[tuple[str, str], float]:
    """Capacity (bit/s) between adjacent routers; parallel links add up."""
    caps: dict[tuple[str, str], float] = {}
    for lk in topology.links:
        caps[(lk.src, lk.dst)] = caps.get((lk.src, lk.dst), 0.0) + lk.capacity
    return caps


def pinned_sport(key: TunnelKey, lo: int) -> int:
    """A stable outer source port for ``key`` in [lo, 65534] (used when the app's is unknown)."""
    h = hashlib.blake2b(repr(key).encode(), digest_size=4).digest()
    return lo + int.from_bytes(h, "big") % (65_535 - lo)


class SimulatedBackend:
    """Keeps tunnels in a dict; refuses double creation so manager bugs surface."""

    def __init__(self) -> None:
        self.live: dict[str, TunnelSpec] = {}
        self.created = 0
        self.deleted = 0

    def create(self, spec: TunnelSpec) -> None:
        if spec.name in self.live:
            raise ProbeError(f"tunnel {spec.name} already exists")
        self.live[spec.name] = spec
        self.created += 1

    def delete(self, spec: TunnelSpec) -> None:
        if self.live.pop(spec.name, None) is None:
            raise ProbeError(f"tunnel {spec.name} does not exist")
        self.deleted += 1

    def names(self) -> list[str]:
        return sorted(self.live)


class TunnelManager:
    """Turns new-path events into tunnels under the configured caps."""

    def __init__(
        self,
        backend: TunnelBackend,
        vteps: Mapping[str, str],
        capacities: Mapping[tuple[str, str], float],
        config: TunnelConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.backend = backend
        self.vteps = dict(vteps)
        self.capacities = dict(capacities)
        self.cfg = config or TunnelConfig()
        self.clock = clock
        now = clock()
        self.creations = TokenBucket(self.cfg.create_rate_per_s, self.cfg.create_burst, now)
        self.tunnels: OrderedDict[TunnelKey, Tunnel] = OrderedDict()  # LRU order
        self.link_probe_bps: dict[tuple[str, str], float] = {}
        self.counters: Counter[str] = Counter()
        self._free_slots = list(range(self.cfg.max_tunnels - 1, -1, -1))
        self._slot: dict[str, int] = {}
        self._overlay = ipaddress.ip_network(self.cfg.overlay_cidr)
        if self._overlay.num_addresses < 4 * self.cfg.max_tunnels:
            raise ProbeError(f"overlay_cidr {self.cfg.overlay_cidr} too small for max_tunnels")

    # --------------------------------------------------------------- events
    def on_new_path(self, ev: NewPathEvent) -> Tunnel | None:
        """Create or reuse the tunnel for ``ev``; None when a cap refused it."""
        now = self.clock()
        self.counters["events"] += 1
        self.expire(now)
        key = TunnelKey.of(ev)
        t = self.tunnels.get(key)
        if t is not None:
            self.tunnels.move_to_end(key)
            t.last_used = now
            t.applications.add(ev.application)
            self.counters["reused"] += 1
            return t
        refusal = self._check(ev)
        if refusal:
            return self._refuse(refusal)
        links = tuple(zip(ev.path[:-1], ev.path[1:], strict=True))
        grant = self._grantable(links)
        if grant < self.cfg.min_probe_rate_bps:
            return self._refuse("budget")
        if len(self.tunnels) >= self.cfg.max_tunnels and not self._evictable(now):
            return self._refuse("cap")
        if not self.creations.take(1, now):
            return self._refuse("rate")
        if len(self.tunnels) >= self.cfg.max_tunnels:
            self._teardown(next(iter(self.tunnels)), "evicted")
            grant = self._grantable(links)
            if grant < self.cfg.min_probe_rate_bps:
                return self._refuse("budget")
        spec = self._spec(key, ev)
        try:
            self.backend.create(spec)
        except ProbeError:
            self._free_slots.append(self._slot.pop(spec.name))
            return self._refuse("backend")
        depth = float(self.cfg.max_burst_bytes)
        t = Tunnel(spec, now, now, grant, TokenBucket(grant / 8.0, depth, now, 0.0), links)
        t.applications.add(ev.application)
        self.tunnels[key] = t
        for lk in links:
            self.link_probe_bps[lk] = self.link_probe_bps.get(lk, 0.0) + grant
        self.counters["created"] += 1
        log.debug("tunnel created", extra={"tunnel": spec.name, "path": key.label()})
        return t

    def _check(self, ev: NewPathEvent) -> str:
        if ev.ingress not in self.vteps or ev.egress not in self.vteps:
            return "unknown_edge"
        if len(ev.path) < 2 or any(
            lk not in self.capacities for lk in zip(ev.path[:-1], ev.path[1:], strict=True)
        ):
            return "unknown_path"
        return ""

    def _refuse(self, reason: str) -> Tunnel | None:
        self.counters[f"refused_{reason}"] += 1
        return None

    def _evictable(self, now: float) -> bool:
        oldest = next(iter(self.tunnels.values()))
        return now - oldest.last_used >= self.cfg.min_age_for_eviction_s

    def _grantable(self, links: Iterable[tuple[str, str]]) -> float:
        room = min(
            self.cfg.probe_budget_share * self.capacities[lk] - self.link_probe_bps.get(lk, 0.0)
            for lk in links
        )
        return max(0.0, min(self.cfg.probe_rate_bps, room))

    def _spec(self, key: TunnelKey, ev: NewPathEvent) -> TunnelSpec:
        slot = self._free_slots.pop()
        vni = self.cfg.vni_base + slot
        name = f"shv{vni}"
        self._slot[name] = slot
        base = int(self._overlay.network_address) + 4 * slot
        sport = ev.sport if ev.sport is not None else pinned_sport(key, self.cfg.sport_min)
        return TunnelSpec(
            name=name,
            vni=vni,
            key=key,
            local=self.vteps[ev.ingress],
            remote=self.vteps[ev.egress],
            sport=min(max(sport, 1), 65_534),
            inner_local=str(ipaddress.ip_address(base + 1)),
            inner_remote=str(ipaddress.ip_address(base + 2)),
        )

    # --------------------------------------------------------------- lifecycle
    def expire(self, now: float | None = None) -> int:
        """Tear down tunnels idle for longer than ``idle_s``; returns how many."""
        now = self.clock() if now is None else now
        n = 0
        while self.tunnels:
            key, t = next(iter(self.tunnels.items()))
            if now - t.last_used < self.cfg.idle_s:
                break
            self._teardown(key, "idle")
            n += 1
        return n

    def _teardown(self, key: TunnelKey, why: str) -> None:
        t = self.tunnels.pop(key)
        for lk in t.links:
            self.link_probe_bps[lk] = max(0.0, self.link_probe_bps[lk] - t.probe_rate_bps)
        try:
            self.backend.delete(t.spec)
        except ProbeError as exc:
            log.warning("tunnel delete failed", extra={"tunnel": t.spec.name, "error": str(exc)})
            self.counters["delete_errors"] += 1
        self._free_slots.append(self._slot.pop(t.spec.name))
        self.counters[f"torn_down_{why}"] += 1

    def close(self) -> None:
        for key in list(self.tunnels):
            self._teardown(key, "closed")

    # --------------------------------------------------------------- probing
    def admit(self, key: TunnelKey, nbytes: int) -> bool:
        """May the tunnel send a probe burst of ``nbytes`` now (rate and burst caps)?"""
        t = self.tunnels.get(key)
        if t is None or nbytes > self.cfg.max_burst_bytes:
            self.counters["probe_refused"] += 1
            return False
        now = self.clock()
        if not t.bucket.take(nbytes, now):
            self.counters["probe_refused"] += 1
            return False
        self.counters["probe_bytes"] += nbytes
        return True
