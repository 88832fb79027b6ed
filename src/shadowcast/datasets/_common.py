"""Helpers shared by the dataset readers: XML parsing with located errors, node keys."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from shadowcast.datasets.config import DEFAULT_CAPACITY_BPS as DEFAULT_CAPACITY_BPS
from shadowcast.errors import DataError
from shadowcast.records import Link

_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_xml(data: bytes, where: str | Path, error: type[DataError]) -> ET.Element:
    """Parse ``data`` or raise ``error`` naming ``where`` and the line/column of the fault."""
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        line, col = exc.position
        raise error(f"{where}:{line}:{col}: malformed XML ({exc.msg})") from exc


def local(tag: str) -> str:
    """The tag without its ``{namespace}``."""
    return tag.rsplit("}", 1)[-1]


def namespace(root: ET.Element) -> str:
    """``{ns}`` of the root element, or ``""``."""
    return root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""


def unit_factor(unit: str) -> float | None:
    """Multiplier from a speed unit (``G``, ``Mbit/s``, ``Gbps``, ``kbps``) to bit/s."""
    u = unit.strip().lower()
    for suffix in ("bit/s", "bits/s", "bps", "b/s", "bit", "b"):
        if u.endswith(suffix):
            u = u[: -len(suffix)]
            break
    return _UNITS.get(u.strip())


_SPEED = re.compile(r"(\d+(?:\.\d+)?)\s*([kKmMgGtT])\s*(?:bit/s|bits/s|bps|b/s|b)?\b")


def speed_from_label(label: str) -> float | None:
    """The largest speed written in a free-text label (``"Lit Fibre (10 Gbps)"`` -> 1e10)."""
    best: float | None = None
    for num, unit in _SPEED.findall(label):
        f = _UNITS[unit.lower()]
        v = float(num) * f
        best = v if best is None else max(best, v)
    return best


def distinct_keys(links: Iterable[Link]) -> tuple[Link, ...]:
    """Give parallel links (same src and dst) distinct keys; single links keep theirs."""
    out = list(links)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, lk in enumerate(out):
        groups.setdefault((lk.src, lk.dst), []).append(i)
    for members in groups.values():
        if len(members) < 2:
            continue
        keys = [out[i].key for i in members]
        if all(keys) and len(set(keys)) == len(keys):
            continue
        for j, i in enumerate(members):
            lk = out[i]
            out[i] = Link(lk.src, lk.dst, lk.capacity, str(j))
    return tuple(out)
