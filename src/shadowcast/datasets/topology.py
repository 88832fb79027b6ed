"""Load a topology from SNDlib network XML, Topology Zoo GraphML or networkx node-link JSON.

The format is told from the content. Every capacity is normalised to bit/s; links are
directed (an undirected source link becomes two), parallel links are kept with distinct keys.
A link whose file gives no capacity gets ``default_capacity_bps`` (10 Gbit/s by default).

``capacities_from`` takes node names and coordinates from one file and capacities from another:
FIGRET's ``GEANT.json`` numbers its nodes 0..21 in the sorted order of SNDlib's GEANT node
names, and its 36 undirected links are exactly those of SNDlib's ``geant.xml``, so
``load_topology("geant.xml", capacities_from="GEANT.json")`` gives GEANT with real capacities.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shadowcast.datasets import graphml, sndlib
from shadowcast.datasets._common import (
    DEFAULT_CAPACITY_BPS,
    MAX_DOCUMENT_BYTES,
    distinct_keys,
    local,
    parse_xml,
)
from shadowcast.errors import TopologyError
from shadowcast.parsing import clip, load_json, read_input
from shadowcast.records import Link, Topology

log = logging.getLogger(__name__)

_LON = ("lon", "lng", "longitude", "x")
_LAT = ("lat", "latitude", "y")


def load_topology(
    path: str | Path,
    *,
    capacities_from: str | Path | None = None,
    default_capacity_bps: float = DEFAULT_CAPACITY_BPS,
) -> Topology:
    """Read a topology file; see the module docstring for formats and ``capacities_from``."""
    p = Path(path)
    topo = _load_one(p, default_capacity_bps)
    if capacities_from is None:
        return topo
    other = _load_one(Path(capacities_from), default_capacity_bps)
    return merge_capacities(topo, other, names_from=p, caps_from=Path(capacities_from))


def _load_one(p: Path, default_capacity_bps: float) -> Topology:
    data = read_input(p, TopologyError, "topology", MAX_DOCUMENT_BYTES)
    head = data[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith((b"{", b"[")):
        return read_node_link(data, p, default_capacity_bps=default_capacity_bps)
    if head.startswith(b"<"):
        root = parse_xml(data, p, TopologyError)
        tag = local(root.tag)
        if tag == "graphml":
            return graphml.read_graphml(root, p, default_capacity_bps=default_capacity_bps)
        if tag == "network":
            return sndlib.read_network(root, p, default_capacity_bps=default_capacity_bps)
        raise TopologyError(f"{p}: XML root <{tag}> is neither SNDlib <network> nor <graphml>")
    raise TopologyError(
        f"{p}: unrecognised topology format (expected SNDlib XML, GraphML or node-link JSON)"
    )


def _coord(attrs: Mapping[str, Any], names: tuple[str, ...]) -> float | None:
    for k, v in attrs.items():
        if str(k).lower() in names and isinstance(v, int | float) and math.isfinite(v):
            return float(v)
    return None


def read_node_link(
    data: bytes, path: Path, *, default_capacity_bps: float = DEFAULT_CAPACITY_BPS
) -> Topology:
    """networkx node-link JSON: ``nodes`` [{id, lon/lat...}], ``links`` (or ``edges``)
    [{source, target, capacity (bit/s), key?}]. ``"directed": false`` gives both directions."""
    where = str(path)
    doc = load_json(data, where, TopologyError)
    if not isinstance(doc, dict) or not isinstance(doc.get("nodes"), list):
        raise TopologyError(f"{where}: node-link JSON needs an object with a 'nodes' list")
    edges = doc.get("links", doc.get("edges"))
    if not isinstance(edges, list):
        raise TopologyError(f"{where}: node-link JSON needs a 'links' (or 'edges') list")
    directed = bool(doc.get("directed", True))
    names: list[str] = []
    coords: dict[str, tuple[float, float]] = {}
    for i, node in enumerate(doc["nodes"]):
        if not isinstance(node, dict) or "id" not in node:
            raise TopologyError(f"{where}: nodes[{i}] has no 'id'")
        name = str(node["id"])
        if name in coords or name in names:
            raise TopologyError(f"{where}: nodes[{i}]: id {clip(name)} declared twice")
        names.append(name)
        lon, lat = _coord(node, _LON), _coord(node, _LAT)
        if lon is not None and lat is not None:
            coords[name] = (lon, lat)
    known = set(names)
    links: list[Link] = []
    defaulted = 0
    for i, e in enumerate(edges):
        if not isinstance(e, dict) or "source" not in e or "target" not in e:
            raise TopologyError(f"{where}: links[{i}] needs 'source' and 'target'")
        s, t = str(e["source"]), str(e["target"])
        for end in (s, t):
            if end not in known:
                raise TopologyError(
                    f"{where}: links[{i}] ({s}->{t}) refers to undeclared node {clip(end)} "
                    "(dangling link)"
                )
        cap_raw = e.get("capacity")
        if cap_raw is None:
            cap = default_capacity_bps
            defaulted += 1
        else:
            try:
                cap = float(cap_raw)
            except (TypeError, ValueError) as exc:
                raise TopologyError(
                    f"{where}: links[{i}].capacity = {clip(cap_raw)} is not a number"
                ) from exc
            if not math.isfinite(cap) or cap <= 0:
                raise TopologyError(
                    f"{where}: links[{i}].capacity = {clip(cap_raw)} is not > 0 (bit/s)"
                )
        key = str(e["key"]) if "key" in e else ""
        links.append(Link(s, t, cap, key))
        if not directed:
            links.append(Link(t, s, cap, key))
    if defaulted:
        log.warning(
            "node-link links without capacity got the default",
            extra={"file": where, "links": defaulted, "default_bps": default_capacity_bps},
        )
    graph = doc.get("graph")
    name = str(graph.get("name")) if isinstance(graph, dict) and graph.get("name") else path.stem
    return Topology(name=name, nodes=tuple(names), links=distinct_keys(links), coords=coords)


def _node_map(names: Topology, caps: Topology, caps_from: Path) -> dict[str, str]:
    """Map ``caps``' node ids onto ``names``' node names: by name, else by sorted index."""
    if set(caps.nodes) <= set(names.nodes):
        return {n: n for n in caps.nodes}
    ordered = sorted(names.nodes)
    if all(n.isdigit() for n in caps.nodes) and sorted(int(n) for n in caps.nodes) == list(
        range(len(ordered))
    ):
        return {n: ordered[int(n)] for n in caps.nodes}
    raise TopologyError(
        f"{caps_from}: node ids match neither the names of the other topology nor "
        f"0..{len(ordered) - 1} in their sorted order"
    )


def merge_capacities(
    names: Topology, caps: Topology, *, names_from: Path, caps_from: Path
) -> Topology:
    """``names``' nodes, coordinates and links with ``caps``' capacities, link for link.

    Raises TopologyError unless both have the same directed links (as a multiset).
    """
    mapping = _node_map(names, caps, caps_from)
    pool: dict[tuple[str, str], list[float]] = {}
    for lk in caps.links:
        pool.setdefault((mapping[lk.src], mapping[lk.dst]), []).append(lk.capacity)
    out: list[Link] = []
    missing: list[str] = []
    for lk in names.links:
        got = pool.get((lk.src, lk.dst))
        if not got:
            missing.append(f"{lk.src}->{lk.dst}")
            continue
        out.append(Link(lk.src, lk.dst, got.pop(0), lk.key))
    extra = [f"{s}->{d}" for (s, d), left in pool.items() for _ in left]
    if missing or extra:
        raise TopologyError(
            f"{caps_from}: links do not match {names_from} link for link: "
            f"{len(missing)} missing ({', '.join(missing[:5])}), "
            f"{len(extra)} extra ({', '.join(extra[:5])})"
        )
    log.info(
        "took capacities from another file",
        extra={"names": str(names_from), "caps": str(caps_from)},
    )
    return Topology(
        name=names.name, nodes=names.nodes, links=distinct_keys(out), coords=names.coords
    )


def write_node_link(topology: Topology, path: str | Path) -> Path:
    """Write ``topology`` as networkx node-link JSON (directed multigraph, capacity in bit/s)."""
    nodes: list[dict[str, Any]] = []
    for n in topology.nodes:
        entry: dict[str, Any] = {"id": n}
        if n in topology.coords:
            entry["lon"], entry["lat"] = topology.coords[n]
        nodes.append(entry)
    links: list[dict[str, Any]] = []
    for lk in topology.links:
        edge: dict[str, Any] = {"source": lk.src, "target": lk.dst, "capacity": lk.capacity}
        if lk.key:
            edge["key"] = lk.key
        links.append(edge)
    doc = {
        "directed": True,
        "multigraph": True,
        "graph": {"name": topology.name},
        "nodes": nodes,
        "links": links,
    }
    p = Path(path)
    p.write_text(json.dumps(doc, indent=1) + "\n")
    return p
