"""From the profiler's new-path events to the tunnel manager's: attach the router path.

The profiler knows an application started between two edges; the tunnel manager needs the
routers in between. The path is the IGP shortest path (the first in a sorted, deterministic
order when ECMP offers several); the traffic class is the category's latency sensitivity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import networkx as nx

from shadowcast.errors import ProbeError
from shadowcast.network.routing import link_weights
from shadowcast.profile.events import AppPathEvent
from shadowcast.records import LATENCY_SENSITIVITY, Topology
from shadowcast.shadow.base import NewPathEvent


class PathResolver:
    """Turns ``AppPathEvent`` into ``NewPathEvent`` on one topology (graph built once)."""

    def __init__(
        self,
        topology: Topology,
        weight: str = "hops",
        sensitivity: Mapping[str, str] = LATENCY_SENSITIVITY,
        edge_to_node: Mapping[str, str] | None = None,
    ) -> None:
        self.sensitivity = dict(sensitivity)
        self.edge_to_node = dict(edge_to_node or {})
        self.graph = nx.DiGraph()
        self.graph.add_nodes_from(topology.nodes)
        for lk, w in zip(topology.links, link_weights(topology, weight), strict=True):
            old = self.graph.get_edge_data(lk.src, lk.dst)
            if old is None or w < old["weight"]:
                self.graph.add_edge(lk.src, lk.dst, weight=float(w))
        self.unresolved = 0

    def node(self, edge: str) -> str:
        name = self.edge_to_node.get(edge, edge)
        if name not in self.graph:
            raise ProbeError(f"edge {edge!r} is not a router of the topology")
        return name

    def resolve(self, event: AppPathEvent, sport: int | None = None) -> NewPathEvent:
        src, dst = self.node(event.ingress), self.node(event.egress)
        try:
            paths = nx.all_shortest_paths(self.graph, src, dst, weight="weight")
            path = min(tuple(p) for p in paths)
        except nx.NetworkXNoPath as exc:
            raise ProbeError(f"no path from {src} to {dst}") from exc
        return NewPathEvent(
            application=event.application,
            ingress=src,
            egress=dst,
            path=path,
            traffic_class=self.sensitivity.get(event.category, "low"),
            sport=sport,
        )

    def resolve_all(self, events: Iterable[AppPathEvent]) -> list[NewPathEvent]:
        """Resolvable events; the others are counted in ``unresolved`` (never raised)."""
        out = []
        for ev in events:
            try:
                out.append(self.resolve(ev))
            except ProbeError:
                self.unresolved += 1
        return out
