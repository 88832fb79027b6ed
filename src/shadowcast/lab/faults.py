"""Plans that must leave the lab as it was: one the checker refuses, one the actuator
cannot apply.

The demo injects them once the service has applied a plan of its own, through the
service's plan stage (``PlanCycle.apply``: the checker, then the actuator, rolled back on
failure), and dumps every router's routes and qdiscs before and after each: the dumps must
be equal.

* **over capacity**: every class A->B on the thin direct link, sized at ten times its
  capacity. The checker refuses it; the actuator never sees it.
* **broken binding**: A->B and B->A entirely through C, applied by a Linux actuator whose
  port B->C names a next hop on no link. A's route is replaced, B's is refused by the
  kernel, and the actuator restores A's (and C's) routes byte for byte and verifies them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace

from shadowcast.act.linux import LinuxBinding
from shadowcast.errors import TopologyError
from shadowcast.lab import netns
from shadowcast.lab.build import LabPlan
from shadowcast.plan.base import PathSplit, Plan
from shadowcast.records import Topology

BAD_GATEWAY = "10.255.255.254"  # on no link of the lab: the kernel refuses it as a next hop
_STATS = re.compile(r"\s+(used|expires) \d+sec")


@dataclass(frozen=True, slots=True)
class FaultResult:
    kind: str  # over-capacity | broken-binding
    time_s: int
    action: str  # the plan stage's decision: rejected | failed (| applied: a bug)
    reason: str
    routes_unchanged: bool
    differs: tuple[str, ...] = ()  # namespaces whose dump changed


def _links_of(topology: Topology, nodes: Sequence[str]) -> tuple[int, ...]:
    idx = {(lk.src, lk.dst): e for e, lk in enumerate(topology.links)}
    try:
        return tuple(idx[(a, b)] for a, b in zip(nodes[:-1], nodes[1:], strict=True))
    except KeyError as exc:
        raise TopologyError(f"no link {exc.args[0]} in {topology.name}") from None


def _plan(topology: Topology, splits: list[PathSplit], mlu: float, note: str) -> Plan:
    return Plan(
        plan_id=f"fault-{uuid.uuid4().hex[:8]}",
        topology=topology.name,
        issued="",
        horizon_s=60,
        method="injected",
        splits=tuple(splits),
        mlu_planned=mlu,
        mlu_current=0.0,
        notes=(note,),
    )


def over_capacity_plan(topology: Topology, classes: Sequence[str], src: str, dst: str) -> Plan:
    """Every class ``src -> dst`` on the direct link, at ten times its capacity."""
    nodes = (src, dst)
    links = _links_of(topology, nodes)
    cap = float(topology.capacities[links[0]]) / 1e6
    splits = [PathSplit(c, src, dst, links, nodes, 1.0, 10 * cap / len(classes)) for c in classes]
    return _plan(topology, splits, 10.0, "injected: over capacity, for the checker")


def detour_plan(
    topology: Topology, classes: Sequence[str], a: str, b: str, via: str, demand_mbps: float
) -> Plan:
    """Both directions between ``a`` and ``b`` entirely through ``via`` (within capacity)."""
    splits = []
    for s, d in ((a, b), (b, a)):
        nodes = (s, via, d)
        links = _links_of(topology, nodes)
        splits += [PathSplit(c, s, d, links, nodes, 1.0, demand_mbps / len(classes))
                   for c in classes]  # fmt: skip
    return _plan(topology, splits, 0.5, "injected: applied with a broken binding")


def broken_binding(binding: LinuxBinding, link: str) -> LinuxBinding:
    """``binding`` with the port of ``link`` ("u->v") pointing at a next hop on no link."""
    port = binding.port(*link.split("->"))
    ports = dict(binding.ports)
    ports[link] = replace(port, via=BAD_GATEWAY)
    return LinuxBinding(ports=ports, prefixes=binding.prefixes, classes=binding.classes)


def kernel_state(plan: LabPlan) -> dict[str, str]:
    """Every router's routes (all tables) and qdiscs, as the kernel dumps them (timers
    dropped), by namespace."""
    out = {}
    for ns in plan.routers.values():
        routes = netns.ip(ns, "-d", "route", "show", "table", "all")
        qdiscs = netns.tc(ns, "-d", "qdisc", "show")
        out[ns] = _STATS.sub("", routes) + "\n" + qdiscs
    return out


def differs(before: dict[str, str], after: dict[str, str]) -> tuple[str, ...]:
    return tuple(sorted(ns for ns in before.keys() | after.keys()
                        if before.get(ns) != after.get(ns)))  # fmt: skip
