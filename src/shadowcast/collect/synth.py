"""Deterministic builders of realistic flow-export packet streams (benches, tests, demo).

- :func:`build_stream` ``(proto, n_records, seed)``: NetFlow v5, v9, IPFIX or sFlow v5
  datagrams (~30 records per packet, IPv4, templates refreshed periodically; IPFIX
  records carry applicationId with an NBAR2-style options mapping id -> name).
- :func:`ipfix_export`: a ``FLOW_SCHEMA``-like Arrow table -> IPFIX messages
  (application names as applicationName (IE 96) or applicationId + options mapping).

Records are built as numpy structured arrays, so a million records take well under a
second.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shadowcast.collect.netflow5 import RECORD as V5_RECORD
from shadowcast.collect.sflow_synth import build_sflow
from shadowcast.collect.wire import (
    data_set,
    encode_records,
    ipfix_options_template,
    template_set,
)

APP_NAMES: Final = (
    "youtube",
    "netflix",
    "https",
    "ssh",
    "rtp",
    "zoom",
    "dns",
    "bittorrent",
    "smb",
    "quic",
)
NBAR_ENGINE: Final = 13  # Cisco NBAR2 classification engine id
APP_NAME_LEN: Final = 32
Cols = Mapping[int, npt.NDArray[np.generic]]

# IPFIX / v9 templates used by the builders: (element id, length)
V4_FIELDS: Final = (
    (8, 4),
    (12, 4),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
    (5, 1),
    (10, 4),
    (14, 4),
    (1, 8),
    (2, 8),
    (16, 4),
    (17, 4),
)
V6_FIELDS: Final = tuple(
    (27 if i == 8 else 28 if i == 12 else i, 16 if i in (8, 12) else n) for i, n in V4_FIELDS
)
IPFIX_TIME: Final = ((152, 8), (153, 8))
V9_TIME: Final = ((22, 4), (21, 4))


@dataclass(frozen=True, slots=True)
class Flows:
    """Synthetic flows as columns keyed by IPFIX element id (times in ms)."""

    cols: dict[int, npt.NDArray[np.generic]]
    app: npt.NDArray[np.int64]  # index into APP_NAMES

    def __len__(self) -> int:
        return len(self.app)


def synth_flows(n: int, seed: int = 0, start_ms: int = 1_700_000_000_000) -> Flows:
    """``n`` plausible backbone flows (heavy-tailed sizes, a few hundred prefixes)."""
    rng = np.random.default_rng(seed)
    src = (np.uint32(10 << 24) + rng.integers(0, 1 << 16, n).astype(np.uint32) * 7).astype(">u4")
    dst = (np.uint32(172 << 24 | 16 << 16) + rng.integers(0, 1 << 14, n)).astype(">u4")
    proto = np.where(rng.random(n) < 0.8, 6, 17).astype(np.uint8)
    packets = np.maximum(1, rng.pareto(1.2, n) * 3).astype(np.uint64)
    size = rng.integers(60, 1500, n).astype(np.uint64)
    start = start_ms + np.sort(rng.integers(0, 60_000, n)).astype(np.int64)
    cols: dict[int, npt.NDArray[np.generic]] = {
        8: src.view("V4"),
        12: dst.view("V4"),
        7: rng.integers(1024, 65535, n).astype(np.uint16),
        11: rng.choice(np.array([443, 80, 22, 53, 8080, 1935, 5004], np.uint16), n),
        4: proto,
        6: np.where(proto == 6, 0x18, 0).astype(np.uint8),
        5: rng.choice(np.array([0, 0, 0, 46 << 2, 10 << 2], np.uint8), n),
        10: rng.integers(1, 64, n).astype(np.uint32),
        14: rng.integers(1, 64, n).astype(np.uint32),
        1: packets * size,
        2: packets,
        16: rng.choice(np.array([64500, 64501, 15169, 2906, 13335], np.uint32), n),
        17: rng.choice(np.array([64510, 64511, 3356], np.uint32), n),
        152: start,
        153: start + rng.integers(0, 30_000, n),
    }
    return Flows(cols, rng.integers(0, len(APP_NAMES), n))


def _slices(n: int, per_packet: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + per_packet)) for i in range(0, n, per_packet)]


def build_v5(flows: Flows, per_packet: int = 30, export_ms: int | None = None) -> list[bytes]:
    n = len(flows)
    c = flows.cols
    rec = np.zeros(n, dtype=V5_RECORD)
    for name, ie in (
        ("src", 8),
        ("dst", 12),
        ("src_port", 7),
        ("dst_port", 11),
        ("proto", 4),
        ("tcp_flags", 6),
        ("tos", 5),
        ("in_if", 10),
        ("out_if", 14),
        ("src_as", 16),
        ("dst_as", 17),
    ):
        rec[name] = c[ie]
    rec["bytes"] = np.minimum(c[1], 0xFFFFFFFF)
    rec["packets"] = np.minimum(c[2], 0xFFFFFFFF)
    t0 = int(np.asarray(c[152])[0]) if n else 0
    boot = t0 - 1_000_000
    rec["first"] = (np.asarray(c[152], np.int64) - boot) % (1 << 32)
    rec["last"] = (np.asarray(c[153], np.int64) - boot) % (1 << 32)
    out = []
    seq = 0
    for a, b in _slices(n, per_packet):
        now = export_ms if export_ms is not None else int(np.asarray(c[153])[a:b].max()) + 1000
        hdr = struct.pack(
            "!HHIIIIBBH", 5, b - a, now - boot, now // 1000, (now % 1000) * 1_000_000, seq, 0, 1, 1
        )
        out.append(hdr + rec[a:b].tobytes())
        seq += b - a
    return out


def build_v9(
    flows: Flows,
    per_packet: int = 30,
    template_every: int = 20,
    source_id: int = 1,
    sampling: int = 1,
) -> list[bytes]:
    """NetFlow v9: template 256 + a sampler options table (FLOW_SAMPLER_ID 1 -> rate)."""
    n = len(flows)
    fields = V4_FIELDS + V9_TIME + ((48, 1),)
    c = dict(flows.cols)
    t0 = int(np.asarray(c[152])[0]) if n else 0
    boot = t0 - 1_000_000
    c[22] = ((np.asarray(c[152], np.int64) - boot) % (1 << 32)).astype(np.uint32)
    c[21] = ((np.asarray(c[153], np.int64) - boot) % (1 << 32)).astype(np.uint32)
    c[48] = np.ones(n, np.uint8)
    tmpl = template_set(0, 256, fields)
    scope = struct.pack("!HH", 1, 4)  # scope: system, 4 bytes
    opts = struct.pack("!HHHH", 48, 1, 34, 4)  # FLOW_SAMPLER_ID, SAMPLING_INTERVAL
    body = struct.pack("!HHH", 257, len(scope), len(opts)) + scope + opts
    body += b"\x00" * ((-len(body)) % 4)
    opt_tmpl = struct.pack("!HH", 1, 4 + len(body)) + body
    opt_data = data_set(257, struct.pack("!IBI", 0, 1, sampling))
    out = []
    for k, (a, b) in enumerate(_slices(n, per_packet)):
        now = (int(np.asarray(c[153])[a:b].max()) // 1000 + 1) * 1000  # whole seconds
        sets = b""
        count = b - a
        if k % template_every == 0:
            sets += tmpl + opt_tmpl + opt_data
            count += 3
        sets += data_set(256, encode_records(fields, {i: v[a:b] for i, v in c.items()}, b - a))
        hdr = struct.pack("!HHIIII", 9, count, now - boot, now // 1000, k, source_id)
        out.append(hdr + sets)
    return out


def _app_options(names: Sequence[str]) -> tuple[bytes, bytes]:
    """NBAR2-style options template 258 (scope applicationId) and its data (id -> name)."""
    tmpl = ipfix_options_template(258, [(95, 4)], [(96, APP_NAME_LEN)])
    rows = b"".join(
        struct.pack("!I", (NBAR_ENGINE << 24) | (i + 1))
        + name.encode()[:APP_NAME_LEN].ljust(APP_NAME_LEN, b"\x00")
        for i, name in enumerate(names)
    )
    return tmpl, data_set(258, rows)


def build_ipfix(
    flows: Flows,
    per_packet: int = 30,
    template_every: int = 20,
    domain: int = 1,
    app_names: Sequence[str] = APP_NAMES,
    app_mode: str = "id",
    sampling: int = 1,
) -> list[bytes]:
    """IPFIX with applicationId (+ options mapping) or applicationName (fixed 32 bytes);
    the observation domain's samplingInterval goes in an options record (template 259)."""
    n = len(flows)
    c = dict(flows.cols)
    extra = ipfix_options_template(259, [(149, 4)], [(34, 4)])
    extra += data_set(259, struct.pack("!II", domain, sampling))
    extra_records = 1
    if app_mode == "name":
        fields = V4_FIELDS + IPFIX_TIME + ((96, APP_NAME_LEN),)
        table = np.array([s.encode()[:APP_NAME_LEN] for s in app_names], f"S{APP_NAME_LEN}")
        c[96] = table[flows.app].view(f"V{APP_NAME_LEN}")
    else:
        fields = V4_FIELDS + IPFIX_TIME + ((95, 4),)
        c[95] = ((NBAR_ENGINE << 24) | (flows.app + 1)).astype(np.uint32)
        opt_tmpl, opt_data = _app_options(app_names)
        extra += opt_tmpl + opt_data
        extra_records += len(app_names)
    tmpl = template_set(2, 256, fields)
    out = []
    seq = 0
    for k, (a, b) in enumerate(_slices(n, per_packet)):
        now = int(np.asarray(c[153])[a:b].max()) // 1000 + 1
        sets = tmpl + extra if k % template_every == 0 else b""
        sets += data_set(256, encode_records(fields, {i: v[a:b] for i, v in c.items()}, b - a))
        out.append(struct.pack("!HHIII", 10, 16 + len(sets), now, seq, domain) + sets)
        # the sequence counts every data record, options data records included (RFC 7011)
        seq += b - a + (extra_records if k % template_every == 0 else 0)
    return out


def _app_codes(flows: pa.Table, n: int) -> tuple[list[str], npt.NDArray[np.int64]]:
    """Distinct non-empty app names and, per row, an index into them (-1: none)."""
    if "app" not in flows.column_names or n == 0:
        return [], np.full(n, -1, dtype=np.int64)
    enc = flows.column("app").combine_chunks().fill_null("").dictionary_encode()
    names = [str(v) for v in enc.dictionary.to_pylist()]
    uniq = sorted(set(names) - {""})
    pos = {a: i for i, a in enumerate(uniq)}
    lut = np.array([pos.get(a, -1) for a in names], dtype=np.int64)
    return uniq, lut[enc.indices.to_numpy(zero_copy_only=False)]


def _addr_matrix(col: pa.ChunkedArray) -> npt.NDArray[np.uint8]:
    """A binary(16) column as an (n, 16) uint8 matrix, without a Python object per row."""
    arr = col.combine_chunks() if col.num_chunks else pa.array([], pa.binary(16))
    n = len(arr)
    if n == 0:
        return np.zeros((0, 16), np.uint8)
    buf = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
    return buf[arr.offset * 16 : (arr.offset + n) * 16].reshape(n, 16)


def build_stream(
    proto: str,
    n_records: int,
    seed: int = 0,
    per_packet: int = 30,
    start_ms: int = 1_700_000_000_000,
) -> list[bytes]:
    """A deterministic packet stream: ``proto`` in v5 | v9 | ipfix | sflow; flows start
    within a minute of ``start_ms`` (a live collector checks times against its clock)."""
    flows = synth_flows(n_records, seed, start_ms)
    if proto in ("v5", "netflow5"):
        return build_v5(flows, per_packet)
    if proto in ("v9", "netflow9"):
        return build_v9(flows, per_packet)
    if proto == "ipfix":
        return build_ipfix(flows, per_packet)
    if proto == "sflow":
        return build_sflow(flows.cols, per_packet=min(per_packet, 10), seed=seed)
    raise ValueError(f"unknown protocol {proto!r}: expected v5, v9, ipfix or sflow")


def ipfix_export(
    flows: pa.Table,
    *,
    domain: int = 1,
    per_packet: int = 30,
    template_every: int = 20,
    app_mode: str = "id",
    seq_start: int = 0,
) -> list[bytes]:
    """Encode a ``FLOW_SCHEMA``-like table as IPFIX messages.

    IPv4-mapped addresses go out as IPv4 (template 256), others as IPv6 (template 257).
    Bytes and packets are divided by ``sampling_rate`` (when > 1) and the rate is sent as
    samplingInterval, so a collector that scales restores them. ``app`` is sent as
    applicationName (``app_mode="name"``) or applicationId + options mapping ("id").
    ``seq_start`` continues an exporter's sequence numbers from an earlier call.
    """
    enc = _IpfixEncoded(flows, app_mode)
    return enc.messages(0, flows.num_rows, domain, per_packet, template_every, seq_start)


def ipfix_export_groups(
    flows: pa.Table,
    bounds: Sequence[tuple[int, int]],
    *,
    domain: int = 1,
    per_packet: int = 30,
    template_every: int = 20,
    app_mode: str = "id",
    seq_start: Sequence[int] | None = None,
) -> list[list[bytes]]:
    """:func:`ipfix_export` of several exporters' rows at once: ``bounds`` are the row
    ranges ``[a, b)`` of each exporter (rows sorted by exporter); the records are encoded in
    one pass, then cut into each exporter's own messages (own sequence numbers, templates
    and options at the head of its stream)."""
    enc = _IpfixEncoded(flows, app_mode)
    seqs = list(seq_start) if seq_start is not None else [0] * len(bounds)
    return [
        enc.messages(a, b, domain, per_packet, template_every, seq)
        for (a, b), seq in zip(bounds, seqs, strict=True)
    ]


class _IpfixEncoded:
    """Every record encoded once, per template layout, ready to be cut into messages."""

    def __init__(self, flows: pa.Table, app_mode: str) -> None:
        self._encode(flows, app_mode)

    def _encode(self, flows: pa.Table, app_mode: str) -> None:
        n = flows.num_rows
        names = flows.column_names

        def col(name: str, dtype: str, default: int = 0) -> npt.NDArray[np.generic]:
            if name in names:
                return np.asarray(flows.column(name).to_numpy(zero_copy_only=False)).astype(dtype)
            return np.full(n, default, dtype=dtype)

        src, dst = _addr_matrix(flows.column("src_addr")), _addr_matrix(flows.column("dst_addr"))
        prefix = np.array([0] * 10 + [255, 255], np.uint8)
        is_v4 = (src[:, :12] == prefix).all(axis=1) & (dst[:, :12] == prefix).all(axis=1)
        rate = np.maximum(col("sampling_rate", "u8", 1), 1)
        uniq, app_ix = _app_codes(flows, n)
        ts = flows.column("time_start").cast(pa.int64()).to_numpy() if n else np.zeros(0, np.int64)
        te = flows.column("time_end").cast(pa.int64()).to_numpy() if n else np.zeros(0, np.int64)
        base: dict[int, npt.NDArray[np.generic]] = {
            7: col("src_port", "u2"),
            11: col("dst_port", "u2"),
            4: col("proto", "u1"),
            6: col("tcp_flags", "u1"),
            5: col("tos", "u1"),
            10: col("in_if", "u4"),
            14: col("out_if", "u4"),
            1: col("bytes", "u8") // rate,
            2: col("packets", "u8") // rate,
            16: col("src_as", "u4"),
            17: col("dst_as", "u4"),
            152: ts,
            153: te,
            34: rate.astype("u4"),
        }
        if app_mode == "name":
            app_field: tuple[int, int] = (96, APP_NAME_LEN)
            table = np.array([a.encode()[:APP_NAME_LEN] for a in uniq] + [b""], f"S{APP_NAME_LEN}")
            base[96] = table[app_ix].view(f"V{APP_NAME_LEN}")
            extra = b""
        else:
            app_field = (95, 4)
            base[95] = np.where(app_ix >= 0, (NBAR_ENGINE << 24) | (app_ix + 1), 0).astype("u4")
            opt_tmpl, opt_data = _app_options(uniq) if uniq else (b"", b"")
            extra = opt_tmpl + opt_data
        tail = IPFIX_TIME + ((34, 4), app_field)
        layouts = ((256, V4_FIELDS + tail, is_v4, 12, 4), (257, V6_FIELDS + tail, ~is_v4, 0, 16))
        templates = b"".join(template_set(2, t, f) for t, f, m, _, _ in layouts if m.any())
        # Encode every record of a layout at once, then cut the fixed-size records per packet.
        encoded: list[tuple[int, npt.NDArray[np.intp], bytes, int]] = []
        for tid, fields, mask, off, width in layouts:
            idx = np.flatnonzero(mask)
            if idx.size == 0:
                continue
            cols = {i: v[idx] for i, v in base.items()}
            v_src = np.ascontiguousarray(src[idx][:, off : off + width])
            v_dst = np.ascontiguousarray(dst[idx][:, off : off + width])
            cols[fields[0][0]] = v_src.view(f"V{width}").reshape(-1)
            cols[fields[1][0]] = v_dst.view(f"V{width}").reshape(-1)
            blob = encode_records(fields, cols, int(idx.size))
            encoded.append((tid, idx, blob, len(blob) // int(idx.size)))
        self.encoded, self.templates, self.extra = encoded, templates, extra
        self.uniq, self.te = uniq, te

    def messages(
        self, a0: int, b0: int, domain: int, per_packet: int, template_every: int, seq: int
    ) -> list[bytes]:
        encoded, templates, extra, uniq, te = (
            self.encoded, self.templates, self.extra, self.uniq, self.te,
        )  # fmt: skip
        out: list[bytes] = []
        for k, (a, b) in enumerate(_slices(b0 - a0, per_packet)):
            a, b = a + a0, b + a0
            sets = templates + extra if k % template_every == 0 else b""
            for tid, idx, blob, reclen in encoded:
                lo, hi = np.searchsorted(idx, [a, b])
                if hi > lo:
                    sets += data_set(tid, blob[int(lo) * reclen : int(hi) * reclen])
            now = int(te[a:b].max()) // 1000 + 1 if b > a else 0
            out.append(struct.pack("!HHIII", 10, 16 + len(sets), now, seq, domain) + sets)
            seq += b - a + (len(uniq) if extra and k % template_every == 0 else 0)
        return out
