"""The batched fast path of the NetFlow v9 / IPFIX decoder: most datagrams, no Python step each.

Most datagrams of a steady exporter carry one data set of a known fixed-length template,
in sequence. Their headers are read for the whole batch at once (one gather into a
structured array), their templates looked up once per distinct (exporter, domain,
template id), their sequence numbers checked against the datagram before them of the
same (exporter, domain), and their records copied out with one slice per template.

Only the others take the datagram-by-datagram walk (:meth:`NfV9IpfixDecoder.packet`):
templates, options, several sets, unknown templates, gaps, and the first datagram of a
scope whose expected sequence number lives in the tracker. They are visited in arrival
order (an event queue), so state changes the way the walk alone would change it: the
sequence tracker is brought up to date before each one, the datagram after one is checked
again, and when the template cache changed the rest of the batch is looked up again
(past ``MAX_RELOOKUPS`` in a batch, a template flood, the rest takes the plain walk).
Records keep arrival order (:class:`flowsets.Run` sorts by ``at``). One difference with
the walk: a template evicted under the global cap by another exporter's datagram in the
same batch may still decode this batch's records.
"""

from __future__ import annotations

import heapq
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from shadowcast.collect.datagrams import Datagrams, gather
from shadowcast.collect.flowsets import Run
from shadowcast.collect.templates import Template

if TYPE_CHECKING:
    from shadowcast.collect.nfv9ipfix import NfV9IpfixDecoder

I64 = npt.NDArray[np.int64]
BOOL = npt.NDArray[np.bool_]
MASK32 = 0xFFFFFFFF
MAX_RELOOKUPS = 8
# version, count (v9) or length (IPFIX), then five words: v9 uptime secs seq source-id
# set-header; IPFIX secs seq domain set-header (and the first record's first word)
_HEAD = np.dtype(
    [("ver", ">u2"), ("cnt", ">u2"), ("w1", ">u4"), ("w2", ">u4"), ("w3", ">u4")]
    + [("w4", ">u4"), ("w5", ">u4")]
)


class _Batch:
    """Per-datagram header fields and the fast-path verdicts of one batch."""

    def __init__(self, dg: Datagrams) -> None:
        h = gather(dg, 0, _HEAD.itemsize).view(_HEAD).reshape(len(dg))
        size = dg.lengths
        ver = h["ver"].astype(np.int64)
        self.v9 = (ver == 9) & (size >= 28)
        v10 = (ver == 10) & (size >= 24)
        w = {k: h[k].astype(np.int64) for k in ("w1", "w2", "w3", "w4", "w5")}
        v9 = self.v9
        sets = np.where(v9, w["w5"], w["w4"])
        self.set_id = sets >> 16
        self.set_len = sets & 0xFFFF
        fits9 = (self.set_len + 20 <= size) & (size < self.set_len + 24)
        fits10 = (h["cnt"].astype(np.int64) == size) & (self.set_len + 16 == size)
        self.cand = ((v9 & fits9) | (v10 & fits10)) & (self.set_id >= 256)
        self.domain = np.where(v9, w["w4"], w["w3"])
        self.seq = np.where(v9, w["w3"], w["w2"])
        self.export_ms = np.where(v9, w["w2"], w["w1"]) * 1000
        self.uptime = np.where(v9, w["w1"], -1)
        self.offset = np.where(v9, 24, 20)  # first record
        # the sequence scope (exporter, domain) and its previous / next datagram here
        scope = (dg.exporter.astype(np.int64) << 32) | self.domain
        self.scope = scope
        n = len(dg)
        self.prev = np.full(n, -1, dtype=np.int64)
        self.next = np.full(n, -1, dtype=np.int64)
        order = np.argsort(scope, kind="stable")
        same = scope[order[1:]] == scope[order[:-1]]
        self.prev[order[1:][same]] = order[:-1][same]
        self.next[order[:-1][same]] = order[1:][same]
        self.templates: list[Template | None] = []
        self.tmpl = np.full(n, -1, dtype=np.int64)
        self.count = np.zeros(n, dtype=np.int64)
        self.static = np.zeros(n, dtype=bool)

    def look_up(self, dec: NfV9IpfixDecoder, dg: Datagrams, received: float, start: int) -> None:
        """Templates of datagrams ``start:`` from the cache as it is now."""
        rows = np.flatnonzero(self.cand[start:]) + start
        self.tmpl[start:] = -1
        self.count[start:] = 0
        self.static[start:] = False
        if not len(rows):
            return
        key = (dg.exporter[rows].astype(np.int64) << 48) | (self.domain[rows] << 16)
        key |= self.set_id[rows]
        uniq, inv = np.unique(key, return_inverse=True)
        rec_len = np.zeros(len(uniq), dtype=np.int64)
        base = len(self.templates)
        ttl = dec.cache.ttl
        for i, k in enumerate(uniq.tolist()):
            entries = dec.cache.entries(dg.exporters[k >> 48])
            t = entries.get(((k >> 16) & MASK32, k & 0xFFFF)) if entries is not None else None
            usable = (
                t is not None
                and not t.options
                and not t.layout.varlen
                and received - t.updated <= ttl
            )
            self.templates.append(t if usable else None)
            if usable:
                assert t is not None
                rec_len[i] = t.layout.record_len
        size = rec_len[inv]
        count = np.where(size > 0, (self.set_len[rows] - 4) // np.maximum(size, 1), 0)
        ok = count > 0
        self.tmpl[rows[ok]] = base + inv[ok]
        self.count[rows] = count
        self.static[rows] = ok

    def advance(self) -> I64:
        """How far each datagram moves its scope's sequence number."""
        return np.where(self.v9, 1, self.count)

    def chained(self, known: BOOL) -> BOOL:
        """In sequence right after the previous datagram of its scope, that one being
        fast (``known``)."""
        p = self.prev
        has = p >= 0
        q = np.where(has, p, 0)
        want = (self.seq[q] + self.advance()[q]) & MASK32
        out: BOOL = has & known[q] & (self.seq == want)
        return out


def decode_batch(dec: NfV9IpfixDecoder, dg: Datagrams, received: float) -> dict[Template, Run]:
    """Decode ``dg`` (NetFlow v9 / IPFIX datagrams) into runs, counting into ``dec.stats``."""
    runs: dict[Template, Run] = {}
    n = len(dg)
    if n == 0:
        return runs
    b = _Batch(dg)
    b.look_up(dec, dg, received, 0)
    fast = b.static & b.chained(b.static)
    done = np.zeros(n, dtype=bool)
    queue = np.flatnonzero(~fast).tolist()  # ascending: already a heap
    expect = dec.seq.expected
    changes = dec.cache.changes
    relookups = 0
    stop = n  # datagrams from here on take the plain walk
    while queue:
        e = heapq.heappop(queue)
        if done[e]:
            continue
        done[e] = True
        scope = (dg.host(e), int(b.domain[e]))
        p = int(b.prev[e])
        if p >= 0 and fast[p]:  # the tracker has not seen the fast ones yet
            adv = 1 if b.v9[p] else int(b.count[p])
            expect[scope] = (int(b.seq[p]) + adv) & MASK32
        if b.static[e] and expect.get(scope) == int(b.seq[e]):
            fast[e] = True
            continue
        fast[e] = False
        dec.at = e
        dec.packet(dg.payload(e), scope[0], received, dec.stats.of(scope[0]), runs)
        s = int(b.next[e])
        if s >= 0 and fast[s]:
            fast[s] = False
            heapq.heappush(queue, s)
        if dec.cache.changes != changes:
            changes = dec.cache.changes
            relookups += 1
            if relookups > MAX_RELOOKUPS:
                stop = e + 1
                break
            b.look_up(dec, dg, received, e + 1)
            known = b.static.copy()
            known[: e + 1] = fast[: e + 1]
            fast[e + 1 :] = (b.static & b.chained(known))[e + 1 :]
            queue = sorted(set(queue) | set((np.flatnonzero(~fast[e + 1 :]) + e + 1).tolist()))
    head = dg.take(np.arange(stop))
    for host, k in head.per_exporter().items():
        dec.stats.of(host).packets += k
    for host, k in head.per_exporter(head.lengths).items():
        dec.stats.of(host).bytes += k
    if stop < n:  # the walk takes the rest: the tracker first learns the fast ones before
        before = b.prev[stop:]
        for i in np.unique(before[(before >= 0) & (before < stop)]).tolist():
            if fast[i]:
                scope = (dg.host(i), int(b.domain[i]))
                expect[scope] = (int(b.seq[i]) + int(b.advance()[i])) & MASK32
        fast[stop:] = False
    _add_fast(dec, dg, b, fast, runs)
    if stop < n:
        dec.walk(dg.take(np.arange(stop, n)).pairs(), received, runs, stop)
    return runs


def _add_fast(
    dec: NfV9IpfixDecoder, dg: Datagrams, b: _Batch, fast: BOOL, runs: dict[Template, Run]
) -> None:
    """Records of the fast datagrams into their runs; the tracker to the last of each scope."""
    rows = np.flatnonzero(fast)
    if not len(rows):
        return
    count = b.count[rows]
    for host, k in dg.take(rows).per_exporter(count).items():
        dec.stats.of(host).records += k
    # the last datagram of each scope, when fast, sets what the tracker expects next
    last = rows[b.next[rows] < 0]
    adv = b.advance()
    for i in last.tolist():
        scope = (dg.host(i), int(b.domain[i]))
        dec.seq.expected[scope] = (int(b.seq[i]) + int(adv[i])) & MASK32
    tmpl = b.tmpl[rows]
    order = np.argsort(tmpl, kind="stable")
    cuts = np.flatnonzero(np.diff(tmpl[order])) + 1
    for group in np.split(order, cuts):
        t = b.templates[int(tmpl[group[0]])]
        assert t is not None
        sel = rows[group]
        run = runs.get(t)
        if run is None:
            run = runs[t] = Run(t.layout, t.exporter, t.domain)
        size = t.layout.record_len
        counts, offsets = b.count[sel], b.offset[sel]
        # one slice per (records, offset) shape: usually one for the whole group
        shape = counts * 64 + offsets
        uniq, inv = np.unique(shape, return_inverse=True)
        for j, s in enumerate(uniq.tolist()):
            pick = sel[inv == j]
            k, off = s // 64, s % 64
            block = dg.buf[dg.rows[pick], off : off + k * size]
            run.chunks.append(np.ascontiguousarray(block).reshape(-1).data)
            run.spans.append(len(pick))
            run.counts.extend([k] * len(pick))
            run.export_ms.extend(b.export_ms[pick].tolist())
            run.uptime_ms.extend(b.uptime[pick].tolist())
            run.at.extend(pick.tolist())
