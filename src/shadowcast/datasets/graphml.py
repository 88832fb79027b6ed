"""Internet Topology Zoo GraphML -> Topology.

Capacity per edge, first found of: ``LinkSpeedRaw`` (bit/s); ``LinkSpeed`` x
``LinkSpeedUnits`` (k/M/G/T); the largest speed written in ``LinkLabel`` (``"10 Gbps"``);
otherwise ``default_capacity_bps`` (10 Gbit/s unless the caller says otherwise; the count of
defaulted links is logged). Node names are the ``label`` (made unique with ``-<id>`` where
labels repeat or are missing); coordinates from ``Longitude``/``Latitude``. An undirected graph
(the Zoo's default) gives one link per direction; parallel edges are kept with distinct keys.
"""

from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from pathlib import Path

from shadowcast.datasets._common import (
    DEFAULT_CAPACITY_BPS,
    distinct_keys,
    namespace,
    speed_from_label,
    unit_factor,
)
from shadowcast.errors import TopologyError
from shadowcast.parsing import clip
from shadowcast.records import Link, Topology

log = logging.getLogger(__name__)


def _data(el: ET.Element, ns: str, keys: dict[str, str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for d in el.findall(f"{ns}data"):
        name = keys.get(d.get("key", ""), d.get("key", ""))
        out[name] = (d.text or "").strip()
    return out


def _capacity(attrs: dict[str, str]) -> float | None:
    raw = attrs.get("LinkSpeedRaw", "")
    try:
        if raw and float(raw) > 0:
            return float(raw)
    except ValueError:
        pass
    speed, units = attrs.get("LinkSpeed", ""), attrs.get("LinkSpeedUnits", "")
    f = unit_factor(units) if units else None
    try:
        if speed and f is not None and float(speed) > 0:
            return float(speed) * f
    except ValueError:
        pass
    label = attrs.get("LinkLabel", "")
    return speed_from_label(label) if label else None


def read_graphml(
    root: ET.Element, path: Path, *, default_capacity_bps: float = DEFAULT_CAPACITY_BPS
) -> Topology:
    """Parse a GraphML document (already parsed to ``root``) into a Topology."""
    ns = namespace(root)
    where = str(path)
    keys = {k.get("id", ""): k.get("attr.name", k.get("id", "")) for k in root.findall(f"{ns}key")}
    graph = root.find(f"{ns}graph")
    if graph is None:
        raise TopologyError(f"{where}: GraphML without a <graph> element")
    gattrs = _data(graph, ns, keys)
    directed = graph.get("edgedefault", "undirected") == "directed"

    raw_nodes: list[tuple[str, dict[str, str]]] = []
    for node in graph.findall(f"{ns}node"):
        nid = node.get("id")
        if nid is None:
            raise TopologyError(f"{where}: <node> without an id")
        raw_nodes.append((nid, _data(node, ns, keys)))
    labels = [a.get("label", "").strip() for _, a in raw_nodes]
    counts: dict[str, int] = {}
    for lb in labels:
        counts[lb] = counts.get(lb, 0) + 1
    name_of: dict[str, str] = {}
    coords: dict[str, tuple[float, float]] = {}
    for (nid, attrs), lb in zip(raw_nodes, labels, strict=True):
        if nid in name_of:
            raise TopologyError(f"{where}: node id {clip(nid)} declared twice")
        name = lb if lb and counts[lb] == 1 else (f"{lb}-{nid}" if lb else nid)
        name_of[nid] = name
        lon, lat = attrs.get("Longitude", ""), attrs.get("Latitude", "")
        if lon and lat:
            try:
                x, y = float(lon), float(lat)
            except ValueError as exc:
                raise TopologyError(f"{where}: node {clip(nid)}: bad Longitude/Latitude") from exc
            if math.isfinite(x) and math.isfinite(y):
                coords[name] = (x, y)

    links: list[Link] = []
    defaulted = 0
    for i, edge in enumerate(graph.findall(f"{ns}edge")):
        s, t = edge.get("source", ""), edge.get("target", "")
        for end in (s, t):
            if end not in name_of:
                raise TopologyError(
                    f"{where}: edge #{i} ({s}->{t}) refers to undeclared node {clip(end)} "
                    "(dangling link)"
                )
        if s == t:
            continue  # a self-loop carries no transit traffic
        cap = _capacity(_data(edge, ns, keys))
        if cap is None:
            cap = default_capacity_bps
            defaulted += 1
        edge_dir = edge.get("directed")
        both = not (directed if edge_dir is None else edge_dir == "true")
        links.append(Link(name_of[s], name_of[t], cap, ""))
        if both:
            links.append(Link(name_of[t], name_of[s], cap, ""))
    if defaulted:
        log.warning(
            "graphml links without a speed got the default capacity",
            extra={"file": where, "links": defaulted, "default_bps": default_capacity_bps},
        )
    name = gattrs.get("label") or gattrs.get("Network") or path.stem
    return Topology(
        name=name,
        nodes=tuple(name_of[nid] for nid, _ in raw_nodes),
        links=distinct_keys(links),
        coords=coords,
    )
