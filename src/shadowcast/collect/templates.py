"""NetFlow v9 / IPFIX templates: compilation to numpy dtypes and a bounded, scoped cache.

A template is compiled ONCE into a :class:`Layout`: for fixed-length templates a numpy
structured dtype whose named fields are the roles we read (see :mod:`fields`), so a
whole run of data records is decoded with one ``np.frombuffer``. Templates with
variable-length fields get a :class:`Layout` too (the *projected* layout: every role
field at a fixed width) plus a slow per-record walk that re-packs records into it.

The cache is keyed ``(exporter, domain, template id)``; each exporter holds at most
``max_per_exporter`` templates and the cache at most ``max_total`` (the least recently
announced evicted and counted), templates expire after ``ttl`` seconds without refresh,
and IPFIX withdrawals remove them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final

import numpy as np

from shadowcast.collect.fields import FRAME_MAX, ROLE_KIND, STR_MAX, role_of

VARLEN: Final = 0xFFFF
FieldSpec = tuple[int, int, int]  # (enterprise, element id, length)


@dataclass(frozen=True, slots=True)
class Layout:
    """A compiled template: ``dtype`` over the (possibly re-packed) record."""

    fields: tuple[FieldSpec, ...]
    scope_count: int
    dtype: np.dtype[np.void]
    roles: dict[str, int]  # role -> byte width in ``dtype``
    record_len: int  # fixed record length on the wire (0 for varlen templates)
    min_len: int  # lower bound of one record on the wire (>= 1)
    varlen: bool
    # For varlen templates: per wire field, (role or "", output offset, output width).
    plan: tuple[tuple[str, int, int], ...] = ()


def _fixed_fmt(role: str, length: int) -> tuple[str, int] | None:
    """dtype format and width of a fixed-length wire field for ``role`` (None: unusable)."""
    kind = ROLE_KIND[role]
    if kind in ("uint", "raw"):
        if length in (1, 2, 4, 8):
            return f">u{length}", length
        if 1 <= length <= 8 or (kind == "raw" and length > 8):
            return f"V{length}", length
        return None
    if kind == "v4":
        return ("V4", 4) if length == 4 else None
    if kind == "v6":
        return ("V16", 16) if length == 16 else None
    if kind == "frame":
        return (f"V{length}", length) if length >= 1 else None
    return (f"S{length}", length) if length >= 1 else None


def _packed_fmt(role: str) -> tuple[str, int]:
    """dtype format and width of ``role`` in the re-packed layout of a varlen template."""
    kind = ROLE_KIND[role]
    if kind in ("uint", "raw"):
        return ">u8", 8
    if kind == "v4":
        return "V4", 4
    if kind == "v6":
        return "V16", 16
    if kind == "frame":
        return f"V{FRAME_MAX}", FRAME_MAX
    return f"S{STR_MAX}", STR_MAX


_LAYOUTS: OrderedDict[tuple[tuple[FieldSpec, ...], int], Layout] = OrderedDict()
_LAYOUTS_MAX: Final = 1024
MAX_FIELDS: Final = 512  # longer templates are refused (bounds memory under a flood)


def compile_layout(fields: tuple[FieldSpec, ...], scope_count: int = 0) -> Layout | None:
    """Compile a template (memoised by definition); ``None`` if it can carry no record."""
    key = (fields, scope_count)
    if not fields or len(fields) > MAX_FIELDS:
        return None
    hit = _LAYOUTS.get(key)
    if hit is not None:
        _LAYOUTS.move_to_end(key)
        return hit
    varlen = any(ln == VARLEN for _, _, ln in fields)
    # A role may occur twice (outer and inner header of a tunnel, e.g. SRv6 templates):
    # the LAST occurrence wins, like pmacct and Akvorado.
    fmts: list[tuple[str, str, int] | None] = []
    winner: dict[str, int] = {}
    for i, (ent, ie, ln) in enumerate(fields):
        role = role_of(ent, ie)
        fmt: tuple[str, int] | None = None
        if role is not None:
            if ln == VARLEN:
                fmt = _packed_fmt(role) if ROLE_KIND[role] in ("str", "raw", "frame") else None
            elif varlen:
                fmt = _packed_fmt(role) if _fixed_fmt(role, ln) is not None else None
            else:
                fmt = _fixed_fmt(role, ln)
        if role is None or fmt is None:
            fmts.append(None)
        else:
            fmts.append((role, fmt[0], fmt[1]))
            winner[role] = i
    names: list[str] = []
    formats: list[str] = []
    offsets: list[int] = []
    roles: dict[str, int] = {}
    plan: list[tuple[str, int, int]] = []
    wire = out = min_len = 0
    for i, (_, _, ln) in enumerate(fields):
        wire_len = 1 if ln == VARLEN else ln
        min_len += wire_len
        f = fmts[i]
        if f is None or winner[f[0]] != i:
            plan.append(("", 0, 0))
            wire += wire_len
            continue
        role, fmt_s, width = f
        names.append(role)
        formats.append(fmt_s)
        offsets.append(out if varlen else wire)
        roles[role] = width
        plan.append((role, out, width))
        out += width
        wire += wire_len
    if min_len < 1:
        return None
    dtype = np.dtype(
        {
            "names": names,
            "formats": formats,
            "offsets": offsets,
            "itemsize": max(out, 1) if varlen else wire,
        }
    )
    lay = Layout(
        fields=fields,
        scope_count=scope_count,
        dtype=dtype,
        roles=roles,
        record_len=0 if varlen else wire,
        min_len=min_len,
        varlen=varlen,
        plan=tuple(plan),
    )
    _LAYOUTS[key] = lay
    if len(_LAYOUTS) > _LAYOUTS_MAX:
        _LAYOUTS.popitem(last=False)
    return lay


@dataclass(slots=True, eq=False)
class Template:
    """One template as announced by an exporter (hashable by identity)."""

    layout: Layout
    options: bool
    updated: float
    exporter: str
    domain: int


@dataclass(slots=True)
class _ExporterTemplates:
    entries: OrderedDict[tuple[int, int], Template] = field(default_factory=OrderedDict)


class TemplateCache:
    """Templates per ``(exporter, domain, template id)``; at most ``max_per_exporter`` per
    exporter and ``max_total`` in all, the least recently announced evicted first."""

    def __init__(
        self, max_per_exporter: int = 1024, ttl: float = 1800.0, max_total: int = 16384
    ) -> None:
        self.max_per_exporter = max_per_exporter
        self.max_total = max(1, max_total)
        self.ttl = ttl
        self._by_exporter: dict[str, _ExporterTemplates] = {}
        # every template, least recently announced first (drives the global cap and expiry)
        self._order: OrderedDict[tuple[str, int, int], Template] = OrderedDict()
        # grows whenever a template is added, replaced or removed (not when refreshed):
        # the batched fast path re-reads the cache only then
        self.changes = 0

    def entries(self, exporter: str) -> OrderedDict[tuple[int, int], Template] | None:
        """The exporter's templates keyed (domain, template id); read-only for callers."""
        ex = self._by_exporter.get(exporter)
        return None if ex is None else ex.entries

    def get(self, exporter: str, domain: int, tid: int, now: float) -> Template | None:
        ex = self._by_exporter.get(exporter)
        if ex is None:
            return None
        t = ex.entries.get((domain, tid))
        if t is None:
            return None
        if now - t.updated > self.ttl:
            self._drop(exporter, domain, tid)
            return None
        return t

    def put(
        self, exporter: str, domain: int, tid: int, layout: Layout, options: bool, now: float
    ) -> tuple[Template, list[str]]:
        """Store (or refresh) a template; returns it and the exporters whose templates
        were evicted to make room (one entry per template)."""
        ex = self._by_exporter.get(exporter)
        if ex is None:
            ex = self._by_exporter[exporter] = _ExporterTemplates()
        key = (domain, tid)
        gkey = (exporter, domain, tid)
        old = ex.entries.get(key)
        if old is not None and old.layout is layout and old.options == options:
            old.updated = now
            ex.entries.move_to_end(key)
            self._order.move_to_end(gkey)
            return old, []
        t = Template(layout, options, now, exporter, domain)
        self.changes += 1
        ex.entries[key] = t
        ex.entries.move_to_end(key)
        self._order[gkey] = t
        self._order.move_to_end(gkey)
        victims: list[str] = []
        while len(ex.entries) > self.max_per_exporter:
            (d, i), _ = ex.entries.popitem(last=False)
            del self._order[(exporter, d, i)]
            victims.append(exporter)
        while len(self._order) > self.max_total:
            (e, d, i), _ = self._order.popitem(last=False)
            self._by_exporter[e].entries.pop((d, i), None)
            victims.append(e)
        return t, victims

    def withdraw(self, exporter: str, domain: int, tid: int | None, options: bool = False) -> None:
        """Remove one template, or (``tid`` None: IPFIX "all" withdrawal) all of a domain's
        templates (``options`` False) or options templates (True)."""
        ex = self._by_exporter.get(exporter)
        if ex is None:
            return
        if tid is not None:
            self._drop(exporter, domain, tid)
            return
        for d, i in [k for k, t in ex.entries.items() if k[0] == domain and t.options == options]:
            self._drop(exporter, d, i)

    def _drop(self, exporter: str, domain: int, tid: int) -> None:
        self.changes += 1
        ex = self._by_exporter.get(exporter)
        if ex is not None:
            ex.entries.pop((domain, tid), None)
        self._order.pop((exporter, domain, tid), None)

    def forget(self, exporter: str) -> int:
        """Drop every template of ``exporter``; returns how many."""
        ex = self._by_exporter.pop(exporter, None)
        if ex is None:
            return 0
        self.changes += 1
        for d, i in ex.entries:
            self._order.pop((exporter, d, i), None)
        return len(ex.entries)

    def expire(self, now: float) -> int:
        """Drop templates not announced for ``ttl`` seconds; returns how many."""
        n = 0
        while self._order:
            (e, d, i), t = next(iter(self._order.items()))
            if now - t.updated <= self.ttl:
                break
            self._drop(e, d, i)
            n += 1
        return n

    def count(self, exporter: str) -> int:
        ex = self._by_exporter.get(exporter)
        return 0 if ex is None else len(ex.entries)

    def total(self) -> int:
        """Templates held, all exporters."""
        return len(self._order)
