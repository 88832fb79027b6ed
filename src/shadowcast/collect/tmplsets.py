"""Template sets of NetFlow v9 (flowset 0/1) and IPFIX (set 2/3): definitions and
withdrawals into the decoder's cache; data sets that waited for a template are decoded."""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from shadowcast.collect.base import ExporterStats
from shadowcast.collect.flowsets import Run
from shadowcast.collect.templates import FieldSpec, Template, compile_layout

if TYPE_CHECKING:
    from shadowcast.collect.nfv9ipfix import NfV9IpfixDecoder

FIELD = struct.Struct("!HH")
PEN = struct.Struct("!I")
V9_SCOPE_ENTERPRISE = 0xFFFFFFFF  # v9 scope types (system, interface, ...) are not IEs


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
    while end - p >= 4:
        tid, a = FIELD.unpack_from(data, p)
        p += 4
        if tid == 0 and a == 0:
            return  # padding
        scope_count = 0
        if ipfix:
            n_fields = a
            if n_fields == 0:  # withdrawal
                st.template_records += 1
                dec.cache.withdraw(
                    exporter, domain, None if tid == set_id else tid, options=set_id == 3
                )
                continue
            if options:
                if end - p < 2:
                    st.decode_errors += 1
                    return
                (scope_count,) = struct.unpack_from("!H", data, p)
                p += 2
                if scope_count == 0 or scope_count > n_fields:
                    st.decode_errors += 1
                    return
        elif options:
            if end - p < 2:
                st.decode_errors += 1
                return
            scope_len = a
            (opt_len,) = struct.unpack_from("!H", data, p)
            p += 2
            if scope_len % 4 or opt_len % 4:
                st.decode_errors += 1
                return
            scope_count = scope_len // 4
            n_fields = scope_count + opt_len // 4
        else:
            n_fields = a
        if tid < 256 or n_fields * 4 > end - p:
            st.decode_errors += 1
            return
        fields: list[FieldSpec] = []
        for i in range(n_fields):
            if end - p < 4:
                st.decode_errors += 1
                return
            ie, ln = FIELD.unpack_from(data, p)
            p += 4
            ent = 0
            if ipfix and ie & 0x8000:
                if end - p < 4:
                    st.decode_errors += 1
                    return
                (ent,) = PEN.unpack_from(data, p)
                p += 4
                ie &= 0x7FFF
            elif not ipfix and options and i < scope_count:
                ent = V9_SCOPE_ENTERPRISE
            fields.append((ent, ie, ln))
        layout = compile_layout(tuple(fields), scope_count)
        if layout is None or (not ipfix and layout.varlen):
            st.unsupported_templates += 1  # no field with a length, or 65535 in v9
            continue
        st.template_records += 1
        tmpl, victims = dec.cache.put(exporter, domain, tid, layout, options, received)
        if victims:
            dec.evicted(victims, st, exporter)
        for item in dec.pending.take(exporter, domain, tid, received):
            dec.add(tmpl, item.body, 0, len(item.body), item.export_ms, item.uptime_ms, st, runs)
