"""Helpers shared by the planner tests."""

from __future__ import annotations

from shadowcast.records import Link, Topology


def bidir(
    name: str,
    edges: list[tuple[str, str, float]],
    coords: dict[str, tuple[float, float]] | None = None,
) -> Topology:
    nodes = sorted({n for a, b, _ in edges for n in (a, b)})
    links = []
    for a, b, cap in edges:
        links += [Link(a, b, cap), Link(b, a, cap)]
    return Topology(name, tuple(nodes), tuple(links), coords or {})
