"""Data-record runs -> columns: the batched half of the NetFlow v9 / IPFIX decoder.

All records of one template (same exporter and domain) in a batch arrive here as one
buffer and are decoded with a single ``np.frombuffer`` over the template's compiled
dtype. Variable-length records are first re-packed (one Python step per record) into the
template's fixed *projected* layout, then take the same path.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shadowcast.collect.base import ExporterStats
from shadowcast.collect.columns import (
    as_native,
    as_uint,
    dict_str,
    flow_table,
    str_column,
    v4_to_16,
    v6_to_16,
)
from shadowcast.collect.fields import ROLE_KIND
from shadowcast.collect.frames import parse_frames
from shadowcast.collect.netflow5 import uptime_to_ms
from shadowcast.collect.templates import VARLEN, Layout

_U16 = struct.Struct("!H")
I64 = npt.NDArray[np.int64]
U64 = npt.NDArray[np.uint64]


def repack_varlen(
    layout: Layout, body: bytes | memoryview, start: int, end: int
) -> tuple[bytes, int, bool]:
    """Walk variable-length records in ``body[start:end]``; returns (packed, count, ok).

    Every step consumes at least one byte and every length is checked against ``end``,
    so the walk is bounded by the set length.
    """
    size = layout.dtype.itemsize
    out: list[bytes] = []
    p = start
    ok = True
    fields = layout.fields
    plan = layout.plan
    while end - p >= layout.min_len:
        rec = bytearray(size)
        q = p
        for (_, _, ln), (role, off, width) in zip(fields, plan, strict=True):
            if ln == VARLEN:
                if q >= end:
                    ok = False
                    break
                ln = body[q]
                q += 1
                if ln == 255:
                    if q + 2 > end:
                        ok = False
                        break
                    (ln,) = _U16.unpack_from(body, q)
                    q += 2
            if q + ln > end:
                ok = False
                break
            if role:
                val = bytes(body[q : q + ln])
                kind = ROLE_KIND[role]
                if kind in ("uint", "raw"):
                    val = val[-8:]
                    rec[off + width - len(val) : off + width] = val
                elif kind in ("str", "frame"):
                    val = val[:width]
                    rec[off : off + len(val)] = val
                elif len(val) == width:
                    rec[off : off + width] = val
            q += ln
        if not ok:
            break
        out.append(bytes(rec))
        p = q
    return b"".join(out), len(out), ok


@dataclass(slots=True)
class Run:
    """Record buffers of one (exporter, domain, template) gathered over a batch.

    ``chunks`` hold the records back to back; ``counts``, ``export_ms``, ``uptime_ms`` and
    ``at`` (the datagram's place in the batch) have one entry per datagram, in the order of
    the chunks. Chunks may come out of arrival order (the batched fast path adds its
    datagrams last): :func:`run_table` puts the records back in arrival order."""

    layout: Layout
    exporter: str
    domain: int
    chunks: list[bytes | memoryview] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    export_ms: list[int] = field(default_factory=list)
    uptime_ms: list[int] = field(default_factory=list)  # -1 for IPFIX
    at: list[int] = field(default_factory=list)
    spans: list[int] = field(default_factory=list)  # datagrams in each chunk

    def add(self, chunk: bytes, n: int, export_ms: int, uptime_ms: int, at: int) -> None:
        """The ``n`` records of one datagram."""
        self.chunks.append(chunk)
        self.spans.append(1)
        self.counts.append(n)
        self.export_ms.append(export_ms)
        self.uptime_ms.append(uptime_ms)
        self.at.append(at)


@dataclass(slots=True)
class ExporterState:
    """What options data told us about one exporter (bounded)."""

    samplers: dict[tuple[int, int], int] = field(default_factory=dict)  # (domain, id) -> rate
    domain_rate: dict[int, int] = field(default_factory=dict)
    app_names: dict[int, str] = field(default_factory=dict)
    sys_init_ms: dict[int, int] = field(default_factory=dict)


MAX_OPTION_ENTRIES = 65536  # sampler ids / application ids per exporter
MAX_DOMAINS = 4096  # observation domains with options state per exporter


def rate_from(rec: np.ndarray, roles: dict[str, int]) -> U64:
    """Per-record sampling rate from in-record sampling IEs (0 = not given)."""
    n = len(rec)
    rate = np.zeros(n, dtype=np.uint64)
    if "sampling_interval" in roles:
        rate = as_uint(rec["sampling_interval"])
    if "sampler_random_interval" in roles:
        r = as_uint(rec["sampler_random_interval"])
        rate = np.where(rate == 0, r, rate)
    if "sampling_size" in roles and "sampling_population" in roles:
        k = as_uint(rec["sampling_size"])
        pop = as_uint(rec["sampling_population"])
        r = np.where(k > 0, pop // np.maximum(k, 1), 0).astype(np.uint64)
        rate = np.where(rate == 0, r, rate)
    if "sampling_pkt_interval" in roles and "sampling_pkt_space" in roles:
        i = as_uint(rec["sampling_pkt_interval"])
        s = as_uint(rec["sampling_pkt_space"])
        r = np.where(i > 0, (i + s) // np.maximum(i, 1), 0).astype(np.uint64)
        rate = np.where(rate == 0, r, rate)
    return rate


def sampler_ids(rec: np.ndarray, roles: dict[str, int]) -> U64 | None:
    for role in ("sampler_id", "selector_id"):
        if role in roles:
            return as_uint(rec[role])
    return None


def _sampler_rates(ids: U64, domain: int, state: ExporterState) -> U64:
    """Each record's rate from its sampler id (0: unknown); one id is the common case."""
    if len(ids) and ids.min() == ids.max():
        return np.full(len(ids), state.samplers.get((domain, int(ids[0])), 0), dtype=np.uint64)
    uniq, inv = np.unique(ids, return_inverse=True)
    lut = np.array([state.samplers.get((domain, int(u)), 0) for u in uniq], dtype=np.uint64)
    return lut[inv.reshape(-1)]


def apply_options(rec: np.ndarray, layout: Layout, domain: int, state: ExporterState) -> None:
    """Options data: sampler tables, application names, system init time."""
    roles = layout.roles
    rate = rate_from(rec, roles)
    ids = sampler_ids(rec, roles)
    for i in range(len(rec)):
        r = int(rate[i])
        if r > 0:
            if ids is not None:
                if len(state.samplers) < MAX_OPTION_ENTRIES:
                    state.samplers[(domain, int(ids[i]))] = r
            else:
                if domain in state.domain_rate or len(state.domain_rate) < MAX_DOMAINS:
                    state.domain_rate[domain] = r
    if "app_id" in roles and "app_name" in roles:
        app_ids = as_uint(rec["app_id"])
        for i in range(len(rec)):
            name = bytes(rec["app_name"][i]).split(b"\x00", 1)[0].decode("utf-8", "replace")
            if name and len(state.app_names) < MAX_OPTION_ENTRIES:
                state.app_names[int(app_ids[i])] = name.strip()
    if "sys_init_ms" in roles and len(rec):
        if domain in state.sys_init_ms or len(state.sys_init_ms) < MAX_DOMAINS:
            state.sys_init_ms[domain] = int(as_uint(rec["sys_init_ms"])[-1])


def _times(
    rec: np.ndarray, roles: dict[str, int], export_ms: I64, uptime: I64, sys_init: int | None
) -> tuple[I64, I64]:
    def abs_time(prefix: str) -> I64 | None:
        if f"{prefix}_ms" in roles:
            return as_uint(rec[f"{prefix}_ms"]).astype(np.int64)
        if f"{prefix}_s" in roles:
            return as_uint(rec[f"{prefix}_s"]).astype(np.int64) * 1000
        if f"{prefix}_ntp" in roles:
            v = as_uint(rec[f"{prefix}_ntp"])
            secs = (v >> np.uint64(32)).astype(np.int64) - 2_208_988_800
            frac = (v & np.uint64(0xFFFFFFFF)).astype(np.int64)
            return secs * 1000 + (frac * 1000 >> 32)
        if f"{prefix}_delta_us" in roles:
            return export_ms - as_uint(rec[f"{prefix}_delta_us"]).astype(np.int64) // 1000
        role = "first_uptime" if prefix == "start" else "last_uptime"
        if role in roles:
            t = as_uint(rec[role])
            if (uptime >= 0).all():
                return uptime_to_ms(export_ms, uptime, t)
            if sys_init is not None:
                return sys_init + t.astype(np.int64)
        return None

    start = abs_time("start")
    end = abs_time("end")
    if end is None:  # firewalls (Cisco ASA NSEL) stamp the event, not the flow end
        end = abs_time("obs")
    if end is None:
        end = export_ms if start is None else start
    if start is None:
        if "duration_ms" in roles:
            start = end - as_uint(rec["duration_ms"]).astype(np.int64)
        else:
            start = end
    return start, end


def _addresses(rec: np.ndarray, layout: Layout, side: str) -> npt.NDArray[np.uint8]:
    """16-byte addresses; with both families in a template (tunnels, MPLS), the one
    declared later is preferred per record unless it is all zero."""
    off = {name: int(v[1]) for name, v in (rec.dtype.fields or {}).items()}
    has4, has6 = f"{side}4" in layout.roles, f"{side}6" in layout.roles
    a4 = v4_to_16(rec[f"{side}4"]) if has4 else None
    a6 = v6_to_16(rec[f"{side}6"]) if has6 else None
    if a4 is None:
        return a6 if a6 is not None else np.zeros((len(rec), 16), np.uint8)
    if a6 is None:
        return a4
    first, second = (a4, a6) if off[f"{side}4"] < off[f"{side}6"] else (a6, a4)
    tail = second[:, 12:] if second is a4 else second
    empty: npt.NDArray[np.bool_] = ~np.any(tail, axis=1)
    return np.where(empty[:, None], first, second)


def _app(
    rec: np.ndarray, roles: dict[str, int], state: ExporterState
) -> tuple[list[str], npt.NDArray[np.int32]] | None:
    """Application names from the exporter as (distinct names, index per row)."""
    if "app_name" in roles:
        return str_column(rec["app_name"])
    if "l7_proto_name" in roles:
        return str_column(rec["l7_proto_name"])
    if "app_id" in roles:
        ids = as_uint(rec["app_id"])
        uniq, inv = np.unique(ids, return_inverse=True)
        names = []
        for u in uniq.tolist():
            name = state.app_names.get(u)
            if name is None:
                shift = 24 if u < (1 << 32) else 56
                name = f"{u >> shift}:{u & ((1 << shift) - 1)}" if u else ""
            names.append(name)
        return names, inv.astype(np.int32).reshape(-1)
    return None


def _in_order(run: Run) -> tuple[np.ndarray, I64, I64, I64]:
    """The run's records in arrival order, and per record its packet's export time and
    uptime. Out-of-order chunks are cut into the fewest slices that restore the order."""
    size = run.layout.dtype.itemsize
    counts = np.array(run.counts, dtype=np.int64)
    export_ms = np.array(run.export_ms, dtype=np.int64)
    uptime = np.array(run.uptime_ms, dtype=np.int64)
    at = np.array(run.at, dtype=np.int64)
    chunks = run.chunks
    if len(at) > 1 and (at[1:] < at[:-1]).any():
        spans = np.array(run.spans, dtype=np.int64)
        chunk = np.repeat(np.arange(len(chunks)), spans)
        start = np.cumsum(counts) - counts  # of each datagram's records, in all the chunks
        first = start - np.repeat(start[np.cumsum(spans) - spans], spans)  # in its chunk
        order = np.argsort(at, kind="stable")
        c, s, k = chunk[order], first[order], counts[order]
        cut = np.flatnonzero((c[1:] != c[:-1]) | (s[1:] != s[:-1] + k[:-1])) + 1
        lo = np.concatenate(([0], cut))
        hi = np.concatenate((cut, [len(order)]))
        stop = s[hi - 1] + k[hi - 1]
        views = [memoryview(chunks[ci]).cast("B") for ci in range(len(chunks))]
        chunks = [
            views[ci][a * size : b * size]
            for ci, a, b in zip(c[lo].tolist(), s[lo].tolist(), stop.tolist(), strict=True)
        ]
        counts, export_ms, uptime = k, export_ms[order], uptime[order]
    rec = np.frombuffer(b"".join(chunks), dtype=run.layout.dtype)
    return rec, counts, np.repeat(export_ms, counts), np.repeat(uptime, counts)


def run_table(run: Run, state: ExporterState, override: int | None, st: ExporterStats) -> pa.Table:
    """Decode one run with a single ``frombuffer``; counts unknown rates and counterless records."""
    layout = run.layout
    roles = layout.roles
    rec, counts, export_ms, uptime = _in_order(run)
    n = len(rec)
    cols: dict[str, npt.NDArray[np.generic]] = {}
    cols["time_start"], cols["time_end"] = _times(
        rec, roles, export_ms, uptime, state.sys_init_ms.get(run.domain)
    )
    for side in ("src", "dst"):
        cols[f"{side}_addr"] = _addresses(rec, layout, side)
    frame: dict[str, npt.NDArray[np.generic]] = {}
    if "frame_section" in roles:
        width = roles["frame_section"]
        raw = np.ascontiguousarray(rec["frame_section"]).view(np.uint8).reshape(n, width)
        frame = parse_frames(raw, np.full(n, width, dtype=np.int64))
        for side in ("src", "dst"):
            if f"{side}4" not in roles and f"{side}6" not in roles:
                cols[f"{side}_addr"] = frame[f"{side}_addr"]
    for col, role in (
        ("src_port", "src_port"),
        ("dst_port", "dst_port"),
        ("proto", "proto"),
        ("tos", "tos"),
        ("tcp_flags", "tcp_flags"),
        ("src_as", "src_as"),
        ("dst_as", "dst_as"),
    ):
        if role in roles:
            v = as_native(rec[role])
            small = col in ("tcp_flags", "proto", "tos") and v.dtype.itemsize > 1
            cols[col] = v & v.dtype.type(0xFF) if small else v
        elif col in frame:
            cols[col] = frame[col]
    iface: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("in_if", ("in_if", "in_phys")),
        ("out_if", ("out_if", "out_phys")),
    )
    for col, choices in iface:
        for role in choices:
            if role in roles:
                cols[col] = as_native(rec[role])
                break
    if override:
        rate = np.full(n, override, dtype=np.uint64)
    else:
        rate = rate_from(rec, roles)
        missing = rate == 0
        if missing.any():
            ids = sampler_ids(rec, roles)
            if ids is not None and state.samplers:
                rate = np.where(missing, _sampler_rates(ids, run.domain, state), rate)
                missing = rate == 0
            dom = state.domain_rate.get(run.domain)
            if dom and missing.any():
                rate[missing] = dom
                missing = rate == 0
            k = int(missing.sum())
            if k:
                st.unknown_sampling += k
                rate[missing] = 1
    counters: tuple[tuple[str, tuple[str, ...]], ...] = (
        ("bytes", ("bytes", "bytes_init", "bytes_total", "bytes_post")),
        ("packets", ("packets", "packets_init", "packets_total", "packets_post")),
    )
    for col, choices in counters:
        for role in choices:
            if role in roles:
                cols[col] = as_uint(rec[role]) * rate
                break
    if "frame_section" in roles:  # one sampled packet per record
        if "bytes" not in cols and "frame_size" in roles:
            cols["bytes"] = as_uint(rec["frame_size"]) * rate
        cols.setdefault("packets", rate)
    if "bytes" not in cols and "packets" not in cols:
        st.records_without_counters += n
    cols["sampling_rate"] = rate
    strings: dict[str, pa.Array | str] = {}
    app = _app(rec, roles, state)
    if app is not None:
        names, index = app
        strings["app"] = dict_str(names, index)
        strings["app_source"] = dict_str(["exporter" if a else "" for a in names], index)
    return flow_table(n, cols, run.exporter, strings)
