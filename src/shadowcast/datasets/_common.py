"""Helpers shared by the dataset readers: XML parsing with located errors, node keys."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from pathlib import Path

from shadowcast.datasets.config import DEFAULT_CAPACITY_BPS as DEFAULT_CAPACITY_BPS
from shadowcast.errors import DataError
from shadowcast.parsing import one_line
from shadowcast.records import Link

#: Largest single input document read (one SNDlib matrix, file or archive member), in bytes.
#: SNDlib's largest matrices are ~65 kB; a bigger member is refused before it is read.
MAX_DOCUMENT_BYTES = 64 << 20
#: Largest total an input may expand to (all members of an archive, a compressed CSV), in
#: bytes; past it the input is refused (a decompression bomb).
MAX_EXPANDED_BYTES = 4 << 30
#: A compressed input may also expand to at most this many times its own size (but always to
#: MAX_DOCUMENT_BYTES): SNDlib archives expand 9-19 times, 1 GiB of zeros gzipped 1000 times.
MAX_EXPANSION_RATIO = 200

_UNITS = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12}


def parse_xml(data: bytes, where: str | Path, error: type[DataError]) -> ET.Element:
    """Parse ``data`` or raise ``error`` naming ``where`` and the line/column of the fault."""
    try:
        return ET.fromstring(data)
    except ET.ParseError as exc:
        line, col = exc.position
        raise error(f"{where}:{line}:{col}: malformed XML ({exc.msg})") from exc
    except (LookupError, ValueError) as exc:  # encoding="u-f-8", multi-byte encodings
        raise error(f"{where}: unsupported XML encoding ({one_line(str(exc), 80)})") from exc


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
