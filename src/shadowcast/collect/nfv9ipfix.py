"""NetFlow v9 (RFC 3954) and IPFIX (RFC 7011) packets -> ``FLOW_SCHEMA``.

Per packet we only walk the set headers (a few Python steps): templates are compiled
and cached, data sets are appended to a *run* per (exporter, domain, template). At the
end of the batch every run is decoded with one ``np.frombuffer`` (see :mod:`flowsets`).
Data sets whose template is unknown wait in a small per-exporter queue (bounded count
and age) and are decoded when the template arrives.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from shadowcast.collect.base import DecoderStats, ExporterStats
from shadowcast.collect.columns import concat
from shadowcast.collect.datagrams import Datagrams
from shadowcast.collect.flowsets import ExporterState, Run, apply_options, repack_varlen, run_table
from shadowcast.collect.nffast import decode_batch
from shadowcast.collect.pending import Pending, PendingSets
from shadowcast.collect.sequence import SequenceTracker
from shadowcast.collect.templates import Template, TemplateCache
from shadowcast.collect.tmplsets import template_set

log = logging.getLogger(__name__)

V9_HEADER = struct.Struct("!HHIIII")  # version count uptime secs sequence source_id
IPFIX_HEADER = struct.Struct("!HHIII")  # version length export_time sequence domain
SET_HEADER = struct.Struct("!HH")
_IPFIX_1 = struct.Struct("!HHIIIHH")  # IPFIX header + first set header
_V9_1 = struct.Struct("!HHIIIIHH")  # NetFlow v9 header + first flowset header


class NfV9IpfixDecoder:
    """NetFlow v9 and IPFIX decoder with scoped, bounded template state."""

    def __init__(
        self,
        stats: DecoderStats | None = None,
        sampling_overrides: Mapping[str, int] | None = None,
        max_templates_per_exporter: int = 1024,
        template_ttl: float = 1800.0,
        pending_max: int = 256,
        pending_age: float = 30.0,
        max_templates: int = 16384,
        pending_bytes: int = 16 << 20,
    ) -> None:
        self.stats = stats if stats is not None else DecoderStats()
        self.overrides = dict(sampling_overrides or {})
        self.cache = TemplateCache(max_templates_per_exporter, template_ttl, max_templates)
        self.pending = PendingSets(pending_max, pending_age, pending_bytes)
        self.seq = SequenceTracker()
        self.state: dict[str, ExporterState] = {}
        self.at = 0  # the current datagram's place in its batch (runs keep arrival order)

    # -- public ---------------------------------------------------------------------
    def decode(self, packets: Sequence[tuple[bytes, str]], received: float) -> pa.Table:
        runs: dict[Template, Run] = {}
        self.walk(packets, received, runs, 0)
        return self.tables(runs)

    def decode_datagrams(self, dg: Datagrams, received: float) -> pa.Table:
        """The same as :meth:`decode`, most datagrams decoded together (:mod:`nffast`)."""
        return self.tables(decode_batch(self, dg, received))

    def walk(
        self,
        packets: Sequence[tuple[bytes, str]],
        received: float,
        runs: dict[Template, Run],
        first: int,
    ) -> None:
        """Datagram by datagram (``first``: the place of ``packets[0]`` in the batch)."""
        last: str | None = None
        st = ExporterStats()
        entries: dict[tuple[int, int], Template] | None = None
        ttl = self.cache.ttl
        expect = self.seq.expected
        for i, (data, exporter) in enumerate(packets, first):
            self.at = i
            if exporter != last:
                st = self.stats.of(exporter)
                entries = self.cache.entries(exporter)
                last = exporter
            size = len(data)
            st.packets += 1
            st.bytes += size
            # Fast path: one data set of a known fixed-length template, in sequence.
            if size >= 24 and entries is not None and data[0] == 0:
                if data[1] == 10:
                    _, length, secs, seq, domain, set_id, set_len = _IPFIX_1.unpack_from(data)
                    fits = length == size and set_len + 16 == size
                    uptime_ms, adv, hdr = -1, 0, 20
                elif data[1] == 9 and size >= 28:
                    _, count, uptime_ms, secs, seq, domain, set_id, set_len = _V9_1.unpack_from(
                        data
                    )
                    fits = set_len + 20 <= size < set_len + 24
                    adv, hdr = 1, 24
                else:
                    fits = False
                tmpl = entries.get((domain, set_id)) if fits and set_id >= 256 else None
                if (
                    tmpl is not None
                    and not tmpl.options
                    and received - tmpl.updated <= ttl
                    and not tmpl.layout.varlen
                ):
                    n = (set_len - 4) // tmpl.layout.record_len
                    key = (exporter, domain)
                    if n > 0 and expect.get(key) == seq:
                        expect[key] = (seq + (adv or n)) & 0xFFFFFFFF
                        st.records += n
                        run = runs.get(tmpl)
                        if run is None:
                            run = runs[tmpl] = Run(tmpl.layout, exporter, domain)
                        chunk = data[hdr : hdr + n * tmpl.layout.record_len]
                        run.add(chunk, n, secs * 1000, uptime_ms, i)
                        continue
            self.packet(data, exporter, received, st, runs)
            entries = self.cache.entries(exporter)

    def packet(
        self,
        data: bytes,
        exporter: str,
        received: float,
        st: ExporterStats,
        runs: dict[Template, Run],
    ) -> None:
        """One datagram the fast path does not take (already counted in packets/bytes)."""
        try:
            self._packet(data, exporter, received, st, runs)
        except (struct.error, ValueError, IndexError) as exc:  # defensive: never raise
            log.debug("dropping packet from %s: %s", exporter, exc)
            st.decode_errors += 1

    def tables(self, runs: dict[Template, Run]) -> pa.Table:
        """The batch's runs as one table, in the order their first datagram came."""
        tables = []
        for run in sorted(runs.values(), key=lambda r: min(r.at, default=0)):
            st = self.stats.of(run.exporter)
            try:
                tables.append(
                    run_table(run, self._state(run.exporter), self.overrides.get(run.exporter), st)
                )
            except (ValueError, TypeError, pa.ArrowException) as exc:
                log.debug("dropping run from %s: %s", run.exporter, exc)
                st.decode_errors += 1
        self._count_dropped()
        return concat(tables)

    # -- bounds (the worker calls these between batches) ----------------------------
    def forget(self, exporter: str) -> None:
        """Drop everything held for ``exporter`` (evicted: too many exporters)."""
        self.cache.forget(exporter)
        self.pending.forget(exporter)
        self.state.pop(exporter, None)
        self._count_dropped()

    def expire(self, now: float) -> None:
        """Drop templates past their TTL and data sets past their age."""
        self.cache.expire(now)
        self.pending.expire(now)
        self._count_dropped()

    def _count_dropped(self) -> None:
        for exporter, n in self.pending.drain_dropped().items():
            self.stats.of(exporter).pending_dropped += n

    def evicted(self, victims: list[str], st: ExporterStats, exporter: str) -> None:
        for victim in victims:
            (st if victim == exporter else self.stats.of(victim)).templates_evicted += 1

    def templates(self, exporter: str) -> int:
        """How many templates the exporter has in the cache."""
        return self.cache.count(exporter)

    def pending_count(self) -> int:
        """Data sets still waiting for their template (all exporters)."""
        return self.pending.count()

    # -- packets --------------------------------------------------------------------
    def _state(self, exporter: str) -> ExporterState:
        s = self.state.get(exporter)
        if s is None:
            s = self.state[exporter] = ExporterState()
        return s

    def _packet(
        self,
        data: bytes,
        exporter: str,
        received: float,
        st: ExporterStats,
        runs: dict[Template, Run],
    ) -> None:
        if len(data) < 4:
            st.decode_errors += 1
            return
        before = st.accounted()
        version = (data[0] << 8) | data[1]
        if version == 9:
            if len(data) < V9_HEADER.size:
                st.decode_errors += 1
                return
            _, count, uptime, secs, seq, domain = V9_HEADER.unpack_from(data)
            off, end, export_ms, uptime_ms = V9_HEADER.size, len(data), secs * 1000, uptime
            ipfix = False
        elif version == 10:
            if len(data) < IPFIX_HEADER.size:
                st.decode_errors += 1
                return
            _, length, secs, seq, domain = IPFIX_HEADER.unpack_from(data)
            if length < IPFIX_HEADER.size or length > len(data):
                st.decode_errors += 1
                return
            off, end, export_ms, uptime_ms = IPFIX_HEADER.size, length, secs * 1000, -1
            ipfix = True
        else:
            st.decode_errors += 1
            return
        n_records = 0
        uncounted = False  # a data set without template: this packet's record count is unknown
        entries = self.cache.entries(exporter)
        ttl = self.cache.ttl
        template_sets = (2, 3) if ipfix else (0, 1)
        unpack_set = SET_HEADER.unpack_from
        while end - off >= 4:
            set_id, set_len = unpack_set(data, off)
            if set_len < 4 or off + set_len > end:
                if not ipfix and set_id == 0 and set_len == 0:
                    break  # v9 trailing padding
                st.decode_errors += 1
                break
            body_start, body_end = off + 4, off + set_len
            off = body_end
            if set_id >= 256:
                tmpl = entries.get((domain, set_id)) if entries is not None else None
                if tmpl is not None and received - tmpl.updated > ttl:
                    tmpl = None
                    self.cache.withdraw(exporter, domain, set_id)
                if tmpl is None:
                    uncounted = True
                    self._miss(
                        data,
                        body_start,
                        body_end,
                        exporter,
                        domain,
                        set_id,
                        export_ms,
                        uptime_ms,
                        received,
                        st,
                    )
                    continue
                layout = tmpl.layout
                if layout.varlen or tmpl.options:
                    n_records += self.add(
                        tmpl, data, body_start, body_end, export_ms, uptime_ms, st, runs
                    )
                    continue
                n = (body_end - body_start) // layout.record_len
                if n == 0:
                    continue
                n_records += n
                st.records += n
                run = runs.get(tmpl)
                if run is None:
                    run = runs[tmpl] = Run(layout, tmpl.exporter, tmpl.domain)
                chunk = data[body_start : body_start + n * layout.record_len]
                run.add(chunk, n, export_ms, uptime_ms, self.at)
            elif set_id in template_sets:
                template_set(
                    self,
                    data,
                    body_start,
                    body_end,
                    exporter,
                    domain,
                    set_id in (1, 3),
                    ipfix,
                    received,
                    st,
                    runs,
                    set_id,
                )
                entries = self.cache.entries(exporter)
            else:  # reserved set id (IPFIX 0, 1, 4-255; NetFlow v9 2-255)
                st.unsupported_sets += 1
        if st.accounted() == before:
            st.empty_datagrams += 1  # headers and padding only, or data sets shorter than a record
        if ipfix:
            self.seq.check(st, (exporter, domain), seq, n_records, 1)
            if uncounted:
                self.seq.forget((exporter, domain))
        else:
            self.seq.check(st, (exporter, domain), seq, 1, max(count, 1))

    # -- data -------------------------------------------------------------------------
    def _miss(
        self,
        data: bytes,
        start: int,
        end: int,
        exporter: str,
        domain: int,
        tid: int,
        export_ms: int,
        uptime_ms: int,
        received: float,
        st: ExporterStats,
    ) -> None:
        """A data set without its template: count it and hold it (bounded) for later."""
        st.template_misses += 1
        self.pending.add(
            exporter, Pending(domain, tid, data[start:end], export_ms, uptime_ms, received)
        )

    def add(
        self,
        tmpl: Template,
        data: bytes,
        start: int,
        end: int,
        export_ms: int,
        uptime_ms: int,
        st: ExporterStats,
        runs: dict[Template, Run],
    ) -> int:
        layout = tmpl.layout
        if layout.varlen:
            buf, n, ok = repack_varlen(layout, data, start, end)
            if not ok:
                st.decode_errors += 1
        else:
            n = (end - start) // layout.record_len
            buf = data[start : start + n * layout.record_len]
        if n == 0:
            return 0
        if tmpl.options:
            st.options_records += n
            rec = np.frombuffer(buf, dtype=layout.dtype)
            apply_options(rec, layout, tmpl.domain, self._state(tmpl.exporter))
            return n
        st.records += n
        run = runs.get(tmpl)
        if run is None:
            run = runs[tmpl] = Run(layout, tmpl.exporter, tmpl.domain)
        run.add(buf, n, export_ms, uptime_ms, self.at)
        return n
