"""A backbone lab in network namespaces: plan (pure) and bring-up / tear-down (root).

One namespace per router (``<prefix>r<i>``) and per edge host (``<prefix>h<i>``); one veth
pair per adjacent router pair, with each direction's capacity enforced by tbf (capacity /
``scale``) and a bounded byte queue, so queueing delay and tail drops come from real load.
Static routes follow shortest paths (hops); edge hosts are the VXLAN endpoints.
Every resource carries the prefix, so ``down`` finds and removes everything after a crash.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
from pydantic import TypeAdapter, ValidationError

from shadowcast.errors import ProbeError, TopologyError
from shadowcast.lab import netns
from shadowcast.parsing import load_json, one_line, read_input
from shadowcast.records import Topology

log = logging.getLogger(__name__)

DEFAULT_PREFIX = "sclab-"
STATE_DIR = Path("/tmp/shadowcast-lab")
LINK_NET = ipaddress.ip_network("10.128.0.0/12")
EDGE_NET = ipaddress.ip_network("10.64.0.0/14")
QUEUE_S = 0.05  # tbf queue bound, seconds at the shaped rate


@dataclass(frozen=True, slots=True)
class LabLink:
    index: int
    a: str  # router names
    b: str
    dev_a: str
    dev_b: str
    addr_a: str
    addr_b: str
    rate_ab_bps: float  # shaped rate a -> b (egress of dev_a)
    rate_ba_bps: float


@dataclass(frozen=True, slots=True)
class LabEdge:
    router: str
    ns: str
    dev_host: str
    dev_router: str
    addr_host: str
    addr_router: str


@dataclass(frozen=True, slots=True)
class LabPlan:
    prefix: str
    topology: str
    scale: float
    routers: dict[str, str]  # router -> namespace
    links: tuple[LabLink, ...]
    edges: dict[str, LabEdge]  # router -> its edge host
    paths: dict[str, list[str]] = field(default_factory=dict)  # "a>b" -> routers

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def path(self, a: str, b: str) -> list[str]:
        return self.paths[f"{a}>{b}"]

    def link_between(self, a: str, b: str) -> tuple[LabLink, str]:
        """The lab link from router ``a`` to ``b`` and the device that shapes a -> b."""
        for lk in self.links:
            if (lk.a, lk.b) == (a, b):
                return lk, lk.dev_a
            if (lk.a, lk.b) == (b, a):
                return lk, lk.dev_b
        raise TopologyError(f"no lab link {a} -> {b}")

    def owner_of(self, addr: str) -> str:
        """Router (or 'host:<router>') that owns an interface address."""
        for lk in self.links:
            if addr == lk.addr_a:
                return lk.a
            if addr == lk.addr_b:
                return lk.b
        for r, e in self.edges.items():
            if addr == e.addr_router:
                return r
            if addr == e.addr_host:
                return f"host:{r}"
        return ""


def plan_lab(
    topology: Topology,
    *,
    scale: float = 1000.0,
    edges: list[str] | None = None,
    prefix: str = DEFAULT_PREFIX,
) -> LabPlan:
    """Lay out namespaces, devices and addresses for ``topology`` (no side effects)."""
    if len(prefix) > 7:
        raise TopologyError(f"lab prefix {prefix!r} longer than 7 characters")
    idx = topology.node_index()
    routers = {r: f"{prefix}r{i}" for r, i in idx.items()}
    pairs: dict[frozenset[str], dict[tuple[str, str], float]] = {}
    for lk in topology.links:
        if lk.src == lk.dst or lk.src not in idx or lk.dst not in idx:
            raise TopologyError(f"topology {topology.name}: bad link {lk.src}->{lk.dst}")
        d = pairs.setdefault(frozenset((lk.src, lk.dst)), {})
        d[(lk.src, lk.dst)] = d.get((lk.src, lk.dst), 0.0) + lk.capacity
    links = []
    for i, (pair, caps) in enumerate(sorted(pairs.items(), key=lambda kv: sorted(kv[0]))):
        a, b = sorted(pair, key=lambda r: idx[r])
        net = int(LINK_NET.network_address) + 4 * i
        ab = caps.get((a, b), caps.get((b, a), 0.0)) / scale
        ba = caps.get((b, a), ab * scale) / scale
        links.append(
            LabLink(
                i, a, b, f"{prefix}l{i}a", f"{prefix}l{i}b",
                str(ipaddress.ip_address(net + 1)), str(ipaddress.ip_address(net + 2)), ab, ba,
            )
        )  # fmt: skip
    chosen = edges if edges is not None else list(topology.nodes)
    lab_edges = {}
    for r in chosen:
        if r not in idx:
            raise TopologyError(f"edge router {r!r} not in topology {topology.name}")
        i = idx[r]
        net = int(EDGE_NET.network_address) + 4 * i
        lab_edges[r] = LabEdge(
            r, f"{prefix}h{i}", f"{prefix}h{i}h", f"{prefix}h{i}r",
            str(ipaddress.ip_address(net + 2)), str(ipaddress.ip_address(net + 1)),
        )  # fmt: skip
    g = nx.DiGraph()
    g.add_nodes_from(topology.nodes)
    g.add_edges_from((lk.src, lk.dst) for lk in topology.links)
    paths: dict[str, list[str]] = {}
    rev = g.reverse(copy=True)
    for b in lab_edges:  # one shortest-path tree per destination: hop-by-hop consistent
        tree = nx.single_source_shortest_path(rev, b)
        for a in topology.nodes:
            if a == b:
                continue
            if a not in tree:
                raise TopologyError(f"{topology.name}: no path {a} -> {b}")
            paths[f"{a}>{b}"] = list(reversed(tree[a]))
    return LabPlan(prefix, topology.name, float(scale), routers, tuple(links), lab_edges, paths)


def _tbf(dev: str, rate_bps: float) -> str:
    rate = max(int(rate_bps), 8_000)
    burst = max(1600, int(rate / 8 * 0.0005))
    limit = max(3 * 1514, int(rate / 8 * QUEUE_S))
    return f"qdisc replace dev {dev} root tbf rate {rate}bit burst {burst} limit {limit}"


def up(plan: LabPlan) -> bool:
    """Build the lab; a no-op (False) when the same plan is already up.

    Commands go through ``ip -batch`` / ``tc -batch`` per namespace (a few processes per
    namespace, not one per route)."""
    state = STATE_DIR / f"{plan.prefix}state.json"
    if state.exists() and _read_state(state).get("digest") == plan.digest():
        if all(ns in netns.list_netns(plan.prefix) for ns in plan.routers.values()):
            return False
    down(plan.prefix)
    fwd = {
        "net.ipv4.ip_forward": "1",
        "net.ipv4.icmp_ratelimit": "0",
        "net.ipv4.conf.all.rp_filter": "0",
        "net.ipv4.conf.default.rp_filter": "0",
        # multipath routes hash the 5-tuple, as backbone routers do (flows, not hosts,
        # spread over the next hops; a tunnel's pinned source port picks its path)
        "net.ipv4.fib_multipath_hash_policy": "1",
        # no IPv6 chatter (DAD, router solicitations, MLD) in counters and tc bytes
        "net.ipv6.conf.all.disable_ipv6": "1",
        "net.ipv6.conf.default.disable_ipv6": "1",
    }
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps({"digest": "building", "plan": asdict(plan)}))
    spaces = [*plan.routers.values(), *(e.ns for e in plan.edges.values())]
    root: list[str] = []
    ipb: dict[str, list[str]] = {ns: ["link set lo up"] for ns in spaces}
    tcb: dict[str, list[str]] = {ns: [] for ns in spaces}
    for lk in plan.links:
        na, nb = plan.routers[lk.a], plan.routers[lk.b]
        root.append(f"link add {lk.dev_a} netns {na} type veth peer name {lk.dev_b} netns {nb}")
        for ns, dev, addr, rate in ((na, lk.dev_a, lk.addr_a, lk.rate_ab_bps),
                                    (nb, lk.dev_b, lk.addr_b, lk.rate_ba_bps)):  # fmt: skip
            ipb[ns] += [f"addr add {addr}/30 dev {dev}", f"link set {dev} up"]
            tcb[ns].append(_tbf(dev, rate))
    for r, e in plan.edges.items():
        nr = plan.routers[r]
        root.append(f"link add {e.dev_router} netns {nr} type veth peer name {e.dev_host} "
                    f"netns {e.ns}")  # fmt: skip
        ipb[nr] += [f"addr add {e.addr_router}/30 dev {e.dev_router}",
                    f"link set {e.dev_router} up"]  # fmt: skip
        ipb[e.ns] += [f"addr add {e.addr_host}/30 dev {e.dev_host}", f"link set {e.dev_host} up",
                      f"route add default via {e.addr_router}"]  # fmt: skip
    for line in _routes(plan):
        ipb[line[0]].append(line[1])
    try:
        netns.batch(None, [f"netns add {ns}" for ns in spaces])
        netns.batch(None, root)
        for ns in spaces:
            netns.sysctl(ns, fwd)
            netns.batch(ns, ipb[ns])
            netns.batch(ns, tcb[ns], tool="tc")
    except ProbeError:
        down(plan.prefix)  # never leave half a lab behind
        raise
    state.write_text(json.dumps({"digest": plan.digest(), "plan": asdict(plan)}))
    log.info("lab up", extra={"prefix": plan.prefix, "routers": len(plan.routers)})
    return True


def _routes(plan: LabPlan) -> list[tuple[str, str]]:
    """``(namespace, route)`` to every edge subnet along the plan's paths, hop by hop."""
    out = []
    for dst, e in plan.edges.items():
        subnet = f"{ipaddress.ip_network(e.addr_host + '/30', strict=False)}"
        for r, ns in plan.routers.items():
            if r == dst:
                continue
            hops = plan.paths[f"{r}>{dst}"]
            lk, _dev = plan.link_between(hops[0], hops[1])
            via = lk.addr_b if lk.a == r else lk.addr_a
            out.append((ns, f"route replace {subnet} via {via}"))
    return out


def down(prefix: str = DEFAULT_PREFIX) -> int:
    """Remove every namespace (and with it every device and route) named ``prefix*``."""
    spaces = netns.list_netns(prefix)
    for ns in spaces:
        netns.kill_netns_pids(ns)
    for ns in spaces:
        netns.ip(None, "netns", "del", ns, check=False)
    (STATE_DIR / f"{prefix}state.json").unlink(missing_ok=True)
    return len(spaces)


def load_plan(prefix: str = DEFAULT_PREFIX) -> LabPlan:
    """The plan of the lab that is up (from its state file)."""
    path = STATE_DIR / f"{prefix}state.json"
    if not path.exists():
        raise TopologyError(f"no lab is up with prefix {prefix!r} ({path} missing)")
    try:
        return TypeAdapter(LabPlan).validate_python(_read_state(path, strict=True).get("plan"))
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = one_line(".".join(str(p) for p in err["loc"]), 120) or "plan"
        raise TopologyError(
            f"{path}: damaged lab state ({loc}: {err['msg']}); run `shadowcast lab down`"
        ) from exc


def _read_state(path: Path, strict: bool = False) -> dict[str, Any]:
    """The lab's state file as a dict; a damaged one is ``{}`` (TopologyError if ``strict``)."""
    try:
        doc = load_json(read_input(path, TopologyError, "lab state"), path, TopologyError)
    except TopologyError:
        if strict:
            raise
        return {}
    if not isinstance(doc, dict):
        if strict:
            raise TopologyError(f"{path}: damaged lab state (not a JSON object)")
        return {}
    return doc
