"""One probing round of a shadow tunnel: verify its path, ping it, and (budget allowing)
send an available-bandwidth train; every byte passes the manager's probe budget."""

from __future__ import annotations

import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Protocol

from shadowcast.shadow.abw import combine, estimate_train, train_gap_s, wire_bytes
from shadowcast.shadow.base import TunnelKey
from shadowcast.shadow.pathcheck import trace
from shadowcast.shadow.results import ProbeResult
from shadowcast.shadow.stamp import PathMetrics, Sender
from shadowcast.shadow.tunnels import Tunnel
from shadowcast.shadow.wire import STAMP_PORT, base_len

log = logging.getLogger(__name__)


class ProbeBudget(Protocol):
    """What probing needs of the tunnel manager: link capacities, the probe budget
    (``admit``) and the counters (a :class:`~shadowcast.shadow.tunnels.TunnelManager`)."""

    @property
    def capacities(self) -> Mapping[tuple[str, str], float]: ...

    @property
    def counters(self) -> Counter[str]: ...

    def admit(self, key: TunnelKey, nbytes: int) -> bool: ...


class Prober:
    """Probes tunnels of ``manager``; ``netns_of`` maps an edge router to its VTEP's
    namespace (None: this one); ``owner`` maps a hop address to a router name."""

    def __init__(
        self,
        manager: ProbeBudget,
        netns_of: Mapping[str, str | None],
        owner: Callable[[str], str] = lambda a: a,
        *,
        key: bytes | None = None,
        port: int = STAMP_PORT,
    ) -> None:
        self.manager = manager
        self.netns_of = dict(netns_of)
        self.owner = owner
        self.key = key
        self.port = port

    def capacity_bps(self, t: Tunnel) -> float:
        return min(self.manager.capacities[lk] for lk in t.links)

    def verify_path(self, t: Tunnel) -> tuple[str, ...]:
        """Routers answering TTL-limited probes on the tunnel's outer 5-tuple."""
        ns = self.netns_of[t.spec.key.ingress]
        hops = trace(t.spec.local, t.spec.sport, t.spec.remote, netns=ns)
        path = tuple(self.owner(h) or h for h in hops if h)
        if path != t.spec.key.path:
            self.manager.counters["path_mismatch"] += 1
            log.warning("tunnel path differs", extra={"tunnel": t.spec.name, "seen": path})
        return path

    async def probe(
        self,
        t: Tunnel,
        *,
        pings: int = 10,
        interval_s: float = 0.05,
        trains: int = 1,
        payload: int = 600,
        train_len: int = 30,
        verify: bool = True,
    ) -> ProbeResult:
        path = self.verify_path(t) if verify else t.spec.key.path
        ns = self.netns_of[t.spec.key.ingress]
        sender = Sender(
            t.spec.inner_remote, self.port, key=self.key, timeout_s=0.5, netns=ns,
            local=t.spec.inner_local,
        )  # fmt: skip
        key = t.spec.key
        start = time.time()
        ping_bytes = pings * wire_bytes(base_len(self.key))
        if not self.manager.admit(key, ping_bytes):
            pings = 0
        run = await sender.run(pings, interval_s) if pings else None
        ests = []
        cap = self.capacity_bps(t)
        for _ in range(trains):
            if not self.manager.admit(key, train_len * wire_bytes(payload)):
                self.manager.counters["abw_skipped_budget"] += 1
                break
            tr = await sender.train(train_len, train_gap_s(payload, cap), size=payload)
            ests.append(estimate_train(tr, cap))
        metrics = run.metrics() if run is not None else None
        if metrics is None:
            nan = math.nan
            metrics = PathMetrics(0, 0, nan, nan, nan, nan, nan, nan, nan, nan, nan)
        abw = combine(ests) / 1e6 if ests else math.nan
        return ProbeResult(start, t.spec.name, path, metrics, abw)
