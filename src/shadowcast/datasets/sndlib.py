"""SNDlib XML: network topologies and dynamic demand matrices.

SNDlib (http://sndlib.zib.de) writes one ``<network>`` document per file: ``<nodes>`` with
coordinates, ``<links>`` (undirected, optional ``<preInstalledModule><capacity>``) and
``<demands>`` (``<demand><source/><target/><demandValue>`` in Mbit/s). A *dynamic* data set
is one such file per time step, with the step time in ``<meta><time>YYYYMMDD-HHMM</time>``
(read as UTC), shipped as a folder or, as in ``shared/data``, as a ``.tar.gz`` archive.
Zero demands are omitted from a matrix; the loaders read that as 0.
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from xml.parsers import expat

import numpy as np
import numpy.typing as npt

from shadowcast.datasets import archive
from shadowcast.datasets._common import (
    DEFAULT_CAPACITY_BPS,
    MAX_DOCUMENT_BYTES,
    MAX_EXPANDED_BYTES,
    distinct_keys,
    local,
    namespace,
    parse_xml,
)
from shadowcast.errors import DemandError, TopologyError
from shadowcast.parsing import clip, one_line, read_input
from shadowcast.records import F64, Link, Topology

log = logging.getLogger(__name__)

MBIT = 1e6
_TIME = re.compile(r"(\d{4})(\d{2})(\d{2})-(\d{2})(\d{2})")
_GRAN = re.compile(r"^\s*(\d+)\s*(s|sec|min|h|hour|d|day)s?\s*$", re.IGNORECASE)
_GRAN_S = {"s": 1, "sec": 1, "min": 60, "h": 3600, "hour": 3600, "d": 86400, "day": 86400}
_VALUE = re.compile(rb"<demandValue>\s*([^<\s]+)\s*</demandValue>")


@dataclass(frozen=True, slots=True)
class Matrix:
    """One parsed SNDlib demand matrix (one time step)."""

    where: str
    time: np.datetime64 | None
    granularity_s: int | None
    nodes: tuple[str, ...]
    src: list[str]
    dst: list[str]
    values: F64


def _text(el: ET.Element | None) -> str:
    return (el.text or "").strip() if el is not None else ""


def parse_time(text: str) -> np.datetime64 | None:
    """``20040301-0005`` -> ``2004-03-01T00:05:00`` (UTC); None when absent."""
    m = _TIME.search(text)
    if m is None:
        return None
    y, mo, d, h, mi = m.groups()
    try:
        return np.datetime64(f"{y}-{mo}-{d}T{h}:{mi}:00", "s")
    except ValueError:
        return None


def parse_granularity(text: str) -> int | None:
    """``5min`` -> 300, ``15min`` -> 900, ``1h`` -> 3600; None for e.g. ``6month``."""
    m = _GRAN.match(text)
    return int(m.group(1)) * _GRAN_S[m.group(2).lower()] if m else None


def _nodes(
    root: ET.Element, ns: str, where: str, error: type[TopologyError | DemandError]
) -> tuple[list[str], dict[str, tuple[float, float]]]:
    nodes_el = root.find(f"{ns}networkStructure/{ns}nodes")
    if nodes_el is None:
        raise error(f"{where}: no <networkStructure><nodes> element (not an SNDlib network?)")
    geographic = nodes_el.get("coordinatesType", "geographical") == "geographical"
    names: list[str] = []
    coords: dict[str, tuple[float, float]] = {}
    for node in nodes_el.iter(f"{ns}node"):
        name = node.get("id")
        if not name:
            raise error(f"{where}: <node> without an id")
        if name in coords or name in names:
            raise error(f"{where}: node {clip(name)} declared twice")
        names.append(name)
        x, y = (
            _text(node.find(f"{ns}coordinates/{ns}x")),
            _text(node.find(f"{ns}coordinates/{ns}y")),
        )
        if geographic and x and y:
            try:
                coords[name] = (float(x), float(y))
            except ValueError as exc:
                raise error(
                    f"{where}: node {clip(name)}: bad coordinates {clip(x)}, {clip(y)}"
                ) from exc
    return names, coords


def read_network(
    root: ET.Element, path: Path, *, default_capacity_bps: float = DEFAULT_CAPACITY_BPS
) -> Topology:
    """SNDlib network XML -> Topology; each undirected link gives one link per direction.

    Capacity is the ``preInstalledModule`` capacity (Mbit/s, as SNDlib's demand unit) in bit/s;
    a link without one gets ``default_capacity_bps`` (a warning is logged). ``addModule``
    capacities are design options, not installed capacity, and are ignored.
    """
    ns = namespace(root)
    where = str(path)
    names, coords = _nodes(root, ns, where, TopologyError)
    known = set(names)
    links: list[Link] = []
    defaulted = 0
    links_el = root.find(f"{ns}networkStructure/{ns}links")
    for link in links_el.iter(f"{ns}link") if links_el is not None else ():
        lid = link.get("id", "?")
        s, t = _text(link.find(f"{ns}source")), _text(link.find(f"{ns}target"))
        for end in (s, t):
            if end not in known:
                raise TopologyError(
                    f"{where}: link {clip(lid)} refers to undeclared node {clip(end)} "
                    "(dangling link)"
                )
        cap_text = _text(link.find(f"{ns}preInstalledModule/{ns}capacity"))
        if cap_text:
            try:
                cap = float(cap_text) * MBIT
            except ValueError as exc:
                raise TopologyError(
                    f"{where}: link {clip(lid)}: bad capacity {clip(cap_text)}"
                ) from exc
            if not math.isfinite(cap) or cap <= 0:
                raise TopologyError(
                    f"{where}: link {clip(lid)}: capacity {clip(cap_text)} is not > 0"
                )
        else:
            cap = default_capacity_bps
            defaulted += 1
        links.append(Link(s, t, cap, ""))
        links.append(Link(t, s, cap, ""))
    if defaulted:
        log.warning(
            "sndlib links without installed capacity",
            extra={"file": where, "links": defaulted, "default_bps": default_capacity_bps},
        )
    return Topology(name=path.stem, nodes=tuple(names), links=distinct_keys(links), coords=coords)


def parse_matrix(data: bytes, where: str) -> Matrix:
    """Parse one SNDlib demand-matrix document; raises DemandError naming ``where``.

    The document is first checked for well-formedness by expat (no tree built); the demands are
    then read by a strict pattern, and any document the pattern does not fully account for
    (other formatting, entities, prefixes) is read again through ElementTree.
    """
    try:
        expat.ParserCreate().Parse(data, True)
    except expat.ExpatError as exc:
        raise DemandError(
            f"{where}:{exc.lineno}:{exc.offset}: malformed XML ({expat.ErrorString(exc.code)})"
        ) from exc
    except (LookupError, ValueError) as exc:  # encoding="u-f-8", multi-byte encodings
        raise DemandError(f"{where}: unsupported XML encoding ({one_line(str(exc), 80)})") from exc
    fast = _fast_matrix(data, where)
    return fast if fast is not None else _tree_matrix(data, where)


_DEMAND = re.compile(
    rb"<demand\s+id=\"[^\"]*\"\s*>\s*<source>\s*([^<\s]*)\s*</source>\s*"
    rb"<target>\s*([^<\s]*)\s*</target>\s*<demandValue>\s*([^<\s]*)\s*</demandValue>\s*</demand>"
)
_DEMAND_TAG = re.compile(rb"<demand\b")
_NODE = re.compile(rb"<node\s+id=\"([^\"&]*)\"")
_NODE_TAG = re.compile(rb"<node\b")
_META = re.compile(rb"<(time|granularity)>\s*([^<]*?)\s*</\1>")


def _fast_matrix(data: bytes, where: str) -> Matrix | None:
    if b"<network" not in data[:512] or b"&" in data or b"<!--" in data or b"CDATA" in data:
        return None
    names = [m.decode() for m in _NODE.findall(data)]
    if len(names) != len(_NODE_TAG.findall(data)):
        return None
    found = _DEMAND.findall(data)
    if len(found) != len(_DEMAND_TAG.findall(data)):
        return None
    try:
        values = np.array([v for _, _, v in found], dtype=np.bytes_).astype(np.float64)
    except ValueError:
        return None  # the tree reader names the bad value
    if values.size and not (np.isfinite(values).all() and (values >= 0).all()):
        return None
    known = set(names)
    src = [s.decode() for s, _, _ in found]
    dst = [t.decode() for _, t, _ in found]
    if not (set(src) <= known and set(dst) <= known):
        return None
    meta = {k.decode(): v.decode() for k, v in _META.findall(data[: data.find(b"</meta>") + 7])}
    return Matrix(
        where=where,
        time=parse_time(meta.get("time", "")) or parse_time(Path(where).name),
        granularity_s=parse_granularity(meta.get("granularity", "")),
        nodes=tuple(names),
        src=src,
        dst=dst,
        values=values,
    )


def _tree_matrix(data: bytes, where: str) -> Matrix:
    root = parse_xml(data, where, DemandError)
    ns = namespace(root)
    if local(root.tag) != "network":
        raise DemandError(f"{where}: root element <{local(root.tag)}> is not an SNDlib <network>")
    nodes_el = root.find(f"{ns}networkStructure/{ns}nodes")
    names = [n.get("id", "") for n in nodes_el.iter(f"{ns}node")] if nodes_el is not None else []
    known = set(names)
    tag_s, tag_t, tag_v = f"{ns}source", f"{ns}target", f"{ns}demandValue"
    src: list[str] = []
    dst: list[str] = []
    raws: list[str] = []
    demands = root.find(f"{ns}demands")
    for dem in demands if demands is not None else ():
        s = t = raw = ""
        for child in dem:
            tag = child.tag
            if tag == tag_s:
                s = child.text or ""
            elif tag == tag_t:
                t = child.text or ""
            elif tag == tag_v:
                raw = child.text or ""
        src.append(s)
        dst.append(t)
        raws.append(raw)
    try:
        values = np.array(raws, dtype=np.float64)
    except ValueError:
        values = np.array([_float_or_nan(r) for r in raws], dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0))
    if bad.size:
        i = int(bad[0])
        raise DemandError(
            f"{where}: demand {src[i].strip()}->{dst[i].strip()}: value {clip(raws[i].strip())} "
            "is not a finite number >= 0"
        )
    for ends in (src, dst):
        if set(ends) <= known:
            continue
        ends[:] = [e.strip() for e in ends]  # tolerate whitespace around names
        for i, end in enumerate(ends):
            if end not in known:
                raise DemandError(
                    f"{where}: demand {src[i].strip()}->{dst[i].strip()} names undeclared "
                    f"node {clip(end)}"
                )
    meta = root.find(f"{ns}meta")
    time_text = _text(meta.find(f"{ns}time")) if meta is not None else ""
    gran_text = _text(meta.find(f"{ns}granularity")) if meta is not None else ""
    time = parse_time(time_text) or parse_time(Path(where).name)
    return Matrix(
        where=where,
        time=time,
        granularity_s=parse_granularity(gran_text),
        nodes=tuple(names),
        src=src,
        dst=dst,
        values=values,
    )


def _float_or_nan(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        return math.nan


def is_archive(path: Path) -> bool:
    return archive.is_tar(path)


def read_document(path: Path, max_bytes: int = MAX_DOCUMENT_BYTES) -> bytes:
    """The bytes of one matrix file; DemandError when unreadable or larger than ``max_bytes``."""
    return read_input(path, DemandError, "demand matrix", max_bytes)


def iter_documents(
    path: Path,
    *,
    max_document_bytes: int = MAX_DOCUMENT_BYTES,
    max_expanded_bytes: int = MAX_EXPANDED_BYTES,
) -> Iterator[tuple[str, bytes]]:
    """Yield ``(where, bytes)`` for every ``*.xml`` in a folder or tar archive, streaming.

    A document larger than ``max_document_bytes``, or an archive whose members add up to more
    than ``max_expanded_bytes``, is refused with DemandError before it is read (see
    :mod:`shadowcast.datasets.archive`).
    """
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".xml" and p.is_file())
        if not files:
            raise DemandError(f"{path}: folder holds no .xml demand matrices")
        for p in files:
            yield str(p), read_document(p, max_document_bytes)
        return
    yield from archive.iter_tar(
        path,
        ".xml",
        error=DemandError,
        max_member_bytes=max_document_bytes,
        max_total_bytes=max_expanded_bytes,
    )


def read_matrices(path: Path) -> list[Matrix]:
    """All matrices of a folder / archive / single file, sorted by time stamp."""
    if path.is_file() and not is_archive(path):
        mats = [parse_matrix(read_document(path), str(path))]
    else:
        mats = [parse_matrix(data, where) for where, data in iter_documents(path)]
        if not mats:
            raise DemandError(f"{path}: archive holds no .xml demand matrices")
    for m in mats:
        if m.time is None:
            raise DemandError(f"{m.where}: no time stamp in <meta><time> or the file name")
    mats.sort(key=lambda m: (m.time, m.where))
    return mats


def step_totals(path: str | Path) -> tuple[npt.NDArray[np.datetime64], F64]:
    """Per-file sum of ``demandValue`` (Mbit/s), by time stamp, read independently of
    :func:`read_matrices` (a plain scan of the values); for checking a replay against its input.
    """
    p = Path(path)
    docs = [(str(p), read_document(p))] if p.is_file() and not is_archive(p) else iter_documents(p)
    out: list[tuple[np.datetime64, float]] = []
    for where, data in docs:
        m = re.search(rb"<time>\s*([^<]*?)\s*</time>", data)
        t = parse_time(m.group(1).decode(errors="replace") if m else "") or parse_time(
            Path(where).name
        )
        if t is None:
            raise DemandError(f"{where}: no time stamp")
        try:
            out.append((t, math.fsum(float(v) for v in _VALUE.findall(data))))
        except ValueError as exc:
            raise DemandError(
                f"{where}: a demandValue is not a number ({one_line(str(exc), 80)})"
            ) from exc
    out.sort(key=lambda x: x[0])
    times = np.array([t for t, _ in out], dtype="datetime64[s]")
    return times, np.array([v for _, v in out], dtype=np.float64)


def read_coords(path: str | Path) -> dict[str, tuple[float, float]]:
    """Node coordinates ``{node: (lon, lat)}`` of an SNDlib demand set (folder, archive or
    one file): the ``<nodes>`` of its first matrix (every matrix of a set lists the same);
    {} when they are not geographical."""
    p = Path(path)
    if p.is_file() and not is_archive(p):
        where, data = str(p), p.read_bytes()
    else:
        first = next(iter_documents(p), None)
        if first is None:
            raise DemandError(f"{p}: archive holds no .xml demand matrices")
        where, data = first
    root = parse_xml(data, where, DemandError)
    return _nodes(root, namespace(root), where, DemandError)[1]
