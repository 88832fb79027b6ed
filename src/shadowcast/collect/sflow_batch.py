"""The batched sFlow walk: datagrams, samples and records with numpy, a step for all at once.

A datagram's samples follow one another (each one's offset is the previous one's end),
so they are read as a frontier: step k reads the k-th sample header of every datagram
that has one, checks its length against the datagram, and moves each datagram's offset
past it; datagrams leave the frontier when done or broken. The records of every flow
sample are walked the same way. Counter samples, datagrams with more than
``MAX_SAMPLES`` samples and flow samples with more than ``MAX_RECORDS`` records (a few
steps with a long tail) go to the Python walk of :class:`sflow.SFlowDecoder`, in order.
The result and every counter are the walk's (tests/collect/test_batched_decode.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from shadowcast.collect.datagrams import Datagrams, read, words
from shadowcast.collect.sflow_rows import FlowRows, Sample, header_width, merge, rows_of

if TYPE_CHECKING:
    from shadowcast.collect.sflow import SFlowDecoder

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]
BOOL = npt.NDArray[np.bool_]
MAX_SAMPLES = 64
MAX_RECORDS = 16
SEQ_WINDOW = 1 << 20
_MAPPED = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)


class _Counts:
    """Per-exporter counters of one batch, added to the decoder's stats at the end."""

    def __init__(self, dg: Datagrams) -> None:
        self.dg = dg
        self.by: dict[str, I64] = {}

    def add(self, name: str, datagram: I64, values: I64 | int = 1) -> None:
        if not len(datagram):
            return
        w = np.broadcast_to(np.asarray(values, dtype=np.int64), datagram.shape)
        sums = np.bincount(self.dg.exporter[datagram], weights=w, minlength=len(self.dg.exporters))
        self.by[name] = self.by.get(name, 0) + sums.astype(np.int64)

    def flush(self, dec: SFlowDecoder) -> None:
        for name, sums in self.by.items():
            for i in np.flatnonzero(sums).tolist():
                st = dec.stats.of(self.dg.exporters[i])
                setattr(st, name, getattr(st, name) + int(sums[i]))


def decode_batch(dec: SFlowDecoder, dg: Datagrams, received: float) -> FlowRows:
    """The flow samples of ``dg`` (sFlow v5 datagrams); counts into ``dec.stats``."""
    n = len(dg)
    counts = _Counts(dg)
    every = np.arange(n, dtype=np.int64)
    counts.add("packets", every)
    counts.add("bytes", every, dg.lengths)
    buf = np.ascontiguousarray(dg.buf)
    flat = buf.reshape(-1)
    base = dg.rows * buf.shape[1]
    end = base + dg.lengths
    h = words(flat, base, 10, end)
    v4 = h[:, 1] == 1
    head = np.where(v4, 12, np.where(h[:, 1] == 2, 24, -1000))
    ok = (dg.lengths >= 28) & (h[:, 0] == 5) & (head > 0) & (dg.lengths - head >= 16)
    sub = np.where(v4, h[:, 3], h[:, 6])
    seq = np.where(v4, h[:, 4], h[:, 7])
    n_samples = np.where(v4, h[:, 6], h[:, 9])
    _sequence(dec, dg, counts, np.flatnonzero(ok), sub, seq, n_samples)
    start = base + head + 16
    broken = ~ok | (ok & (n_samples > (end - start) // 8))
    ok &= ~broken
    counts.add("empty_datagrams", np.flatnonzero(ok & (n_samples == 0)))
    walk = ok & (n_samples > 0)
    big = np.flatnonzero(walk & (n_samples > MAX_SAMPLES))
    found = _samples(flat, np.flatnonzero(walk & (n_samples <= MAX_SAMPLES)), start, end, n_samples)
    dgi, k, fmt, s_start, s_end, cut = found
    broken[cut] = True
    flow = (fmt == 1) | (fmt == 3)
    counter = (fmt == 2) | (fmt == 4)
    counts.add("unsupported_samples", dgi[~flow & ~counter])
    counts.add("counter_samples", dgi[counter])
    out: list[Sample] = []
    # the Python walk, in arrival order: counter samples and datagrams with many samples
    todo = sorted(
        [(int(d), int(j), int(a), int(b), int(f)) for d, j, a, b, f in zip(
            dgi[counter], k[counter], s_start[counter], s_end[counter], fmt[counter],
            strict=True)]
        + [(int(d), -1, 0, 0, 0) for d in big]
    )  # fmt: skip
    for d, j, a, b, f in todo:
        row0 = int(base[d])
        data = dg.payload(d)
        host = dg.host(d)
        if j >= 0:
            dec.counter_sample(data, a - row0, b - row0, f == 4, host, received)
            continue
        st = dec.stats.of(host)
        at = (int(dg.exporter[d]), d << 16)
        p = int(start[d] - row0)
        if not dec.samples(data, p, int(n_samples[d]), host, received, st, out, at):
            broken[d] = True
    counts.add("decode_errors", np.flatnonzero(broken))
    rows = _flow_samples(dec, dg, counts, flat, base, dgi[flow], k[flow], s_start[flow],
                         s_end[flow], fmt[flow] == 3, out)  # fmt: skip
    counts.flush(dec)
    return merge([rows, rows_of(out)])


def _sequence(
    dec: SFlowDecoder,
    dg: Datagrams,
    counts: _Counts,
    rows: I64,
    sub: I64,
    seq: I64,
    n_samples: I64,
) -> None:
    """Sequence gaps per (exporter, sub-agent), in arrival order."""
    if not len(rows):
        return
    key = (dg.exporter[rows].astype(np.int64) << 32) | sub[rows]
    order = np.argsort(key, kind="stable")
    same = key[order[1:]] == key[order[:-1]]
    s = seq[rows]
    last = np.full(len(rows), -1, dtype=np.int64)
    last[order[1:][same]] = s[order[:-1][same]]
    firsts = np.sort(order[np.concatenate(([True], ~same))])
    for f in firsts.tolist():
        scope = (dg.host(int(rows[f])), int(sub[rows[f]]))
        prev = dec.seq.get(scope)
        last[f] = -1 if prev is None else prev
        if prev is None and len(dec.seq) >= dec.max_seq_scopes:
            dec.seq.clear()
        dec.seq[scope] = int(s[f])
    gap = np.where(last >= 0, (s - last - 1) % (1 << 32), 0)
    lost = (gap > 0) & (gap < SEQ_WINDOW)
    counts.add("sequence_gaps", rows[lost])
    counts.add("lost_records_estimate", rows[lost], gap[lost] * n_samples[rows[lost]])
    ends = order[np.concatenate((~same, [True]))]
    for i in ends.tolist():
        dec.seq[(dg.host(int(rows[i])), int(sub[rows[i]]))] = int(s[i])


def _samples(
    flat: npt.NDArray[np.uint8], rows: I64, start: I64, end: I64, n_samples: I64
) -> tuple[I64, I64, I64, I64, I64, I64]:
    """Sample headers of ``rows``, stepping through all datagrams at once: (datagram,
    index, format, body start, body end) per sample, and the datagrams cut short."""
    found: list[tuple[I64, I64, I64, I64, I64]] = []
    cut: list[I64] = []
    idx, pos, lim, left = rows, start[rows], end[rows], n_samples[rows]
    k = 0
    while len(idx):
        w = words(flat, pos, 2, lim)
        short = lim - pos < 8
        body = pos + 8
        over = ~short & (w[:, 1] > lim - body)
        good = ~short & ~over
        cut.append(idx[~good])
        g = np.flatnonzero(good)
        found.append((idx[g], np.full(len(g), k), w[g, 0], body[g], body[g] + w[g, 1]))
        left = left - 1
        keep = good & (left > 0)
        idx, pos, lim, left = idx[keep], (body + w[:, 1])[keep], lim[keep], left[keep]
        k += 1
    if not found:
        z = np.zeros(0, dtype=np.int64)
        return z, z, z, z, z, z
    cols = [np.concatenate([f[c] for f in found]).astype(np.int64) for c in range(5)]
    order = np.lexsort((cols[1], cols[0]))  # arrival order: by datagram, then sample
    cols = [c[order] for c in cols]
    return cols[0], cols[1], cols[2], cols[3], cols[4], np.concatenate(cut).astype(np.int64)


def _flow_samples(
    dec: SFlowDecoder,
    dg: Datagrams,
    counts: _Counts,
    flat: npt.NDArray[np.uint8],
    base: I64,
    dgi: I64,
    k: I64,
    start: I64,
    end: I64,
    expanded: BOOL,
    out: list[Sample],
) -> FlowRows:
    """Flow samples (format 1, or 3 expanded) -> rows; long ones through the walk."""
    need = np.where(expanded, 44, 32)
    short = end - start < need
    counts.add("decode_errors", dgi[short])
    w = words(flat, start, 11, end)
    rate = np.where(expanded, w[:, 3], w[:, 2])
    inp, outp = w[:, 5], w[:, 6]
    in_if = np.where(expanded, np.where(w[:, 6] == 0, w[:, 7], 0),
                     np.where(inp >> 30 == 0, inp & 0x3FFFFFFF, 0))  # fmt: skip
    out_if = np.where(expanded, np.where(w[:, 8] == 0, w[:, 9], 0),
                      np.where(outp >> 30 == 0, outp & 0x3FFFFFFF, 0))  # fmt: skip
    n_rec = np.where(expanded, w[:, 10], w[:, 7])
    rp = start + need
    too_many = ~short & (n_rec > (end - rp) // 8)
    counts.add("decode_errors", dgi[too_many])
    ok = ~short & ~too_many
    for i in np.flatnonzero(ok & (n_rec > MAX_RECORDS)).tolist():
        d = int(dgi[i])
        row0 = int(base[d])
        at = (int(dg.exporter[d]), (d << 16) + int(k[i]))
        st = dec.stats.of(dg.host(d))
        data = dg.payload(d)
        dec.flow_sample(data, int(start[i]) - row0, int(end[i]) - row0, bool(expanded[i]), st,
                        out, at)  # fmt: skip
    sel = np.flatnonzero(ok & (n_rec <= MAX_RECORDS))
    rec = _records(flat, rp[sel], end[sel], n_rec[sel])
    usable = rec.usable
    counts.add("decode_errors", dgi[sel[rec.broken]])
    counts.add("unsupported_samples", dgi[sel[~rec.broken & ~usable]])
    keep = sel[usable]
    counts.add("records", dgi[keep])
    u: npt.NDArray[np.bool_] | slice = slice(None) if usable.all() else usable  # no copies
    return FlowRows(
        exporter=dg.exporter[dgi[keep]].astype(np.int64),
        order=(dgi[keep] << 16) + k[keep],
        rate=rate[keep],
        in_if=in_if[keep],
        out_if=out_if[keep],
        frame_len=rec.frame_len[u],
        header=rec.header[u],
        hdr_len=rec.hdr_len[u],
        ip=rec.ip[u],
        has_ip=rec.has_ip[u] & (rec.hdr_len[u] == 0),
        src=rec.src[u],
        dst=rec.dst[u],
    )


@dataclass(frozen=True, slots=True)
class _Records:
    """What the records of each flow sample gave (see :func:`_records`)."""

    usable: BOOL
    broken: BOOL
    frame_len: I64
    header: U8
    hdr_len: I64
    ip: I64
    has_ip: BOOL
    src: U8
    dst: U8


def _records(flat: npt.NDArray[np.uint8], start: I64, end: I64, n_rec: I64) -> _Records:
    """Walk the records of each flow sample: the last usable raw header, the frame length
    of the last raw header record, the first sampled IPv4 / IPv6 record."""
    m = len(start)
    hdr_at = np.full(m, -1, dtype=np.int64)
    hlen = np.zeros(m, dtype=np.int64)
    proto = np.zeros(m, dtype=np.int64)
    frame_len = np.zeros(m, dtype=np.int64)
    ip = np.zeros((m, 6), dtype=np.int64)
    has_ip = np.zeros(m, dtype=bool)
    src = np.zeros((m, 16), dtype=np.uint8)
    dst = np.zeros((m, 16), dtype=np.uint8)
    broken = np.zeros(m, dtype=bool)
    idx, pos, lim, left = np.flatnonzero(n_rec > 0), start, end, n_rec
    pos, lim, left = pos[idx], lim[idx], left[idx]
    while len(idx):
        more = lim - pos >= 8
        w = words(flat, pos, 2, lim)
        body = pos + 8
        bad = more & (w[:, 1] > lim - body)
        broken[idx[bad]] = True
        go = more & ~bad
        rfmt, rlen = w[:, 0], w[:, 1]
        raw = np.flatnonzero(go & (rfmt == 1) & (rlen >= 16))
        if len(raw):
            r = words(flat, body[raw], 4, lim[raw])
            frame_len[idx[raw]] = r[:, 1]
            known = (r[:, 0] == 1) | (r[:, 0] == 11) | (r[:, 0] == 12)
            fine = (r[:, 3] <= rlen[raw] - 16) & known
            t = idx[raw[fine]]
            hdr_at[t], hlen[t], proto[t] = body[raw[fine]] + 16, r[fine, 3], r[fine, 0]
        for fmt, size, width in ((3, 32, 4), (4, 56, 16)):
            hit = np.flatnonzero(go & (rfmt == fmt) & (rlen >= size) & ~has_ip[idx])
            if not len(hit):
                continue
            t = idx[hit]
            a = body[hit]
            r = words(flat, a, 2, lim[hit])
            tail = words(flat, a + 8 + 2 * width, 4, lim[hit])
            ip[t] = np.column_stack([r, tail])
            s = read(flat, a + 8, width, lim[hit])
            d = read(flat, a + 8 + width, width, lim[hit])
            if width == 4:
                s = np.column_stack([np.broadcast_to(_MAPPED, (len(t), 12)), s])
                d = np.column_stack([np.broadcast_to(_MAPPED, (len(t), 12)), d])
            src[t], dst[t] = s, d
            has_ip[t] = True
        left = left - 1
        keep = go & (left > 0)
        idx, pos, lim, left = idx[keep], (body + rlen)[keep], lim[keep], left[keep]
    shift = np.where((proto == 11) | (proto == 12), 14, 0)
    total = np.where(hdr_at >= 0, shift + hlen, 0)
    header, hdr_len = _headers(flat, hdr_at, hlen, proto, shift, total)
    usable = ~broken & ((total > 0) | has_ip)
    return _Records(usable, broken, frame_len, header, hdr_len, ip, has_ip, src, dst)


def _headers(
    flat: npt.NDArray[np.uint8], at: I64, hlen: I64, proto: I64, shift: I64, total: I64
) -> tuple[npt.NDArray[np.uint8], I64]:
    """Sampled headers as an (n, width) matrix, IPv4 / IPv6 ones behind an Ethernet
    header (what follows a header in its row is left as it is: reads stop at its length)."""
    m = len(at)
    width = header_width(int(total.max()) if m else 0)
    has = np.flatnonzero(at >= 0)
    if len(has) == m:  # the common case: one copy
        first = at - shift
        block = read(flat, first, width, first + width)
    else:
        block = np.zeros((m, width), dtype=np.uint8)
        first = at[has] - shift[has]
        block[has] = read(flat, first, width, first + width)
    l3 = has[shift[has] > 0]
    block[l3, :12] = 0
    block[l3, 12] = np.where(proto[l3] == 11, 0x08, 0x86)
    block[l3, 13] = np.where(proto[l3] == 11, 0x00, 0xDD)
    return block, np.minimum(total, width)
