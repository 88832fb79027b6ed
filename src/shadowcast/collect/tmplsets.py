"""Template sets of NetFlow v9 (flowset 0/1) and IPFIX (set 2/3): definitions and
withdrawals into the decoder's cache; data sets that waited for a template are decoded."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from shadowcast.collect.base import ExporterStats
from shadowcast.collect.flowsets import Run
from shadowcast.collect.templates import FieldSpec, Layout, Template, compile_layout

if TYPE_CHECKING:
    from shadowcast.collect.nfv9ipfix import NfV9IpfixDecoder

FIELD = struct.Struct("!HH")
PEN = struct.Struct("!I")
V9_SCOPE_ENTERPRISE = 0xFFFFFFFF  # v9 scope types (system, interface, ...) are not IEs


# A template set the same as one read before (exporters re-send theirs every few
# datagrams) is not parsed again: what reading it does is replayed. Bounded in sets, in
# the templates they hold (each keeps a compiled layout alive) and in bytes per set.
_MEMO: dict[tuple[bool, int, bytes], tuple[Action, ...]] = {}
_MEMO_TEMPLATES = [0]
MEMO_MAX_TEMPLATES = 1024
MEMO_MAX_SET_BYTES = 4096
TEMPLATE, UNSUPPORTED, WITHDRAW, ERROR = 0, 1, 2, 3
Action = tuple[int, int, Layout | None, bool]  # (what, template id, layout, options)


def template_set(
    dec: NfV9IpfixDecoder,
    data: bytes,
    p: int,
    end: int,
    exporter: str,
    domain: int,
    options: bool,
    ipfix: bool,
    received: float,
    st: ExporterStats,
    runs: dict[Template, Run],
    set_id: int,
) -> None:
    """The template records in ``data[p:end]`` (one set), counted into ``st``."""
    key = (ipfix, set_id, data[p:end])
    actions = _MEMO.get(key)
    if actions is None:
        actions = _parse(data, p, end, options, ipfix)
        if end - p <= MEMO_MAX_SET_BYTES:
            if _MEMO_TEMPLATES[0] + len(actions) > MEMO_MAX_TEMPLATES:
                _MEMO.clear()
                _MEMO_TEMPLATES[0] = 0
            _MEMO[key] = actions
            _MEMO_TEMPLATES[0] += len(actions)
    for what, tid, layout, opts in actions:
        if what == ERROR:
            st.decode_errors += 1
            return
        if what == UNSUPPORTED:
            st.unsupported_templates += 1  # no field with a length, or 65535 in v9
            continue
        st.template_records += 1
        if what == WITHDRAW:
            dec.cache.withdraw(exporter, domain, None if tid == set_id else tid, options=opts)
            continue
        assert layout is not None
        tmpl, victims = dec.cache.put(exporter, domain, tid, layout, opts, received)
        if victims:
            dec.evicted(victims, st, exporter)
        for item in dec.pending.take(exporter, domain, tid, received):
            dec.add(tmpl, item.body, 0, len(item.body), item.export_ms, item.uptime_ms, st, runs)


def _parse(data: bytes, p: int, end: int, options: bool, ipfix: bool) -> tuple[Action, ...]:
    """What the set says, in order; ERROR ends it (the records before it still count)."""
    out: list[Action] = []
    while end - p >= 4:
        tid, a = FIELD.unpack_from(data, p)
        p += 4
        if tid == 0 and a == 0:
            break  # padding
        scope_count = 0
        if ipfix:
            n_fields = a
            if n_fields == 0:  # withdrawal (set 3: of options templates)
                out.append((WITHDRAW, tid, None, options))
                continue
            if options:
                if end - p < 2:
                    return (*out, (ERROR, 0, None, False))
                (scope_count,) = struct.unpack_from("!H", data, p)
                p += 2
                if scope_count == 0 or scope_count > n_fields:
                    return (*out, (ERROR, 0, None, False))
        elif options:
            if end - p < 2:
                return (*out, (ERROR, 0, None, False))
            scope_len = a
            (opt_len,) = struct.unpack_from("!H", data, p)
            p += 2
            if scope_len % 4 or opt_len % 4:
                return (*out, (ERROR, 0, None, False))
            scope_count = scope_len // 4
            n_fields = scope_count + opt_len // 4
        else:
            n_fields = a
        if tid < 256 or n_fields * 4 > end - p:
            return (*out, (ERROR, 0, None, False))
        fields: list[FieldSpec] = []
        for i in range(n_fields):
            if end - p < 4:
                return (*out, (ERROR, 0, None, False))
            ie, ln = FIELD.unpack_from(data, p)
            p += 4
            ent = 0
            if ipfix and ie & 0x8000:
                if end - p < 4:
                    return (*out, (ERROR, 0, None, False))
                (ent,) = PEN.unpack_from(data, p)
                p += 4
                ie &= 0x7FFF
            elif not ipfix and options and i < scope_count:
                ent = V9_SCOPE_ENTERPRISE
            fields.append((ent, ie, ln))
        layout = compile_layout(tuple(fields), scope_count)
        if layout is None or (not ipfix and layout.varlen):
            out.append((UNSUPPORTED, tid, None, options))
        else:
            out.append((TEMPLATE, tid, layout, options))
    return tuple(out)
