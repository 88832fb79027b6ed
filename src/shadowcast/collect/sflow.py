"""sFlow v5 datagrams -> flow records (scaled by the sampling rate) and interface counters.

A batch is walked with numpy (:mod:`sflow_batch`): datagram headers together, then the
samples of every datagram one step at a time (the n-th sample of all datagrams in one
pass), then the records of every flow sample the same way; every length is checked
against its datagram and sample. The sampled packet headers of the whole batch are then
parsed together (:mod:`frames`): Ethernet, up to two 802.1Q/QinQ tags, IPv4 / IPv6,
TCP / UDP ports and TCP flags. ``bytes = frame length x rate`` and ``packets = rate``.

The datagram-by-datagram walk below (:meth:`SFlowDecoder.walk`) reads counter samples,
datagrams with more than ``sflow_batch.MAX_SAMPLES`` samples and flow samples with more
than ``sflow_batch.MAX_RECORDS`` records, and is the reference the batched walk is
tested against. Counter samples (generic interface counters) are buffered and returned by
:meth:`SFlowDecoder.counters` as a :data:`COUNTER_SCHEMA` table.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa

from shadowcast.collect.base import DecoderStats, ExporterStats
from shadowcast.collect.columns import concat
from shadowcast.collect.datagrams import Datagrams, pair_batches
from shadowcast.collect.sflow_batch import decode_batch
from shadowcast.collect.sflow_rows import IpData, Sample, flow_table, rows_of
from shadowcast.store.schema import INTERFACE_COUNTERS_SCHEMA

COUNTER_SCHEMA = INTERFACE_COUNTERS_SCHEMA  # the store's interface_counters table

_MAPPED = b"\x00" * 10 + b"\xff\xff"
_U32 = struct.Struct("!I")
_FLOW = struct.Struct("!IIIIIIII")  # seq source rate pool drops input output n_records
_XFLOW = struct.Struct("!IIIIIIIIIII")  # expanded flow sample
_REC = struct.Struct("!II")
_RAW = struct.Struct("!IIII")  # header protocol, frame length, stripped, header length
_IFCNT = struct.Struct("!IIQIIQIIIIIIQIIIII")  # generic interface counters (first 84 bytes)
_IPV4 = struct.Struct("!II4s4sIIII")
_IPV6 = struct.Struct("!II16s16sIIII")
# sampled header protocols: 1 Ethernet; 11 IPv4 and 12 IPv6 get a synthetic Ethernet header
L2 = {1: b"", 11: b"\x00" * 12 + b"\x08\x00", 12: b"\x00" * 12 + b"\x86\xdd"}
MAX_COUNTERS = 1_000_000  # counter rows buffered between two counters() calls
MAX_SEQ_SCOPES = 65536
SEQ_WINDOW = 1 << 20  # a larger jump is a restart, not a loss


class SFlowDecoder:
    """sFlow v5 decoder; flows from :meth:`decode`, interface counters from :meth:`counters`."""

    def __init__(
        self,
        stats: DecoderStats | None = None,
        sampling_overrides: Mapping[str, int] | None = None,
    ) -> None:
        self.stats = stats if stats is not None else DecoderStats()
        self.overrides = dict(sampling_overrides or {})
        self._counters: list[tuple[float, str, tuple[int, ...]]] = []
        self.seq: dict[tuple[str, int], int] = {}
        self.max_seq_scopes = MAX_SEQ_SCOPES

    def counters(self) -> pa.Table:
        """Interface counters seen since the last call (then forgotten)."""
        rows, self._counters = self._counters, []
        if not rows:
            return COUNTER_SCHEMA.empty_table()
        vals = np.array([r[2] for r in rows], dtype=np.uint64).reshape(len(rows), 6)
        times = np.array([int(r[0] * 1000) for r in rows], dtype=np.int64)
        cols = [
            pa.array(times).cast(COUNTER_SCHEMA.field("time").type),
            pa.array([r[1] for r in rows], type=pa.string()),
        ]
        for i, f in enumerate(list(COUNTER_SCHEMA)[2:]):
            cols.append(pa.array(vals[:, i]).cast(f.type))
        return pa.Table.from_arrays(cols, schema=COUNTER_SCHEMA)

    def decode(self, packets: Sequence[tuple[bytes, str]], received: float) -> pa.Table:
        return concat([self.decode_datagrams(dg, received) for dg in pair_batches(packets)])

    def decode_datagrams(self, dg: Datagrams, received: float) -> pa.Table:
        return flow_table(self, dg.exporters, decode_batch(self, dg, received), received)

    def walk(self, packets: Sequence[tuple[bytes, str]], received: float) -> pa.Table:
        """Datagram by datagram, in Python (the reference for the batched walk)."""
        index: dict[str, int] = {}
        out: list[Sample] = []
        for i, (data, exporter) in enumerate(packets):
            st = self.stats.of(exporter)
            st.packets += 1
            st.bytes += len(data)
            at = (index.setdefault(exporter, len(index)), i << 16)
            try:
                if not self._datagram(data, exporter, received, st, out, at):
                    st.decode_errors += 1
            except (struct.error, IndexError, ValueError):
                st.decode_errors += 1
        return flow_table(self, tuple(index), rows_of(out), received)

    # -- the datagram walk --------------------------------------------------------------
    def check_sequence(
        self, st: ExporterStats, exporter: str, sub: int, seq: int, n_samples: int
    ) -> None:
        key = (exporter, sub)
        last = self.seq.get(key)
        gap = (seq - last - 1) % (1 << 32) if last is not None else 0
        if 0 < gap < SEQ_WINDOW:
            st.sequence_gaps += 1
            st.lost_records_estimate += gap * n_samples  # estimate: samples per datagram
        if key not in self.seq and len(self.seq) >= MAX_SEQ_SCOPES:
            self.seq.clear()
        self.seq[key] = seq

    def _datagram(
        self,
        d: bytes,
        exporter: str,
        received: float,
        st: ExporterStats,
        out: list[Sample],
        at: tuple[int, int],
    ) -> bool:
        end = len(d)
        if end < 28 or _U32.unpack_from(d, 0)[0] != 5:
            return False
        atype = _U32.unpack_from(d, 4)[0]
        p = 8 + {1: 4, 2: 16}.get(atype, -1000)
        if p < 8 or end - p < 16:
            return False
        sub, seq, _uptime, n_samples = struct.unpack_from("!IIII", d, p)
        self.check_sequence(st, exporter, sub, seq, n_samples)
        p += 16
        if n_samples > (end - p) // 8:
            return False
        if n_samples == 0:
            st.empty_datagrams += 1
        return self.samples(d, p, n_samples, exporter, received, st, out, at)

    def samples(
        self,
        d: bytes,
        p: int,
        n_samples: int,
        exporter: str,
        received: float,
        st: ExporterStats,
        out: list[Sample],
        at: tuple[int, int],
    ) -> bool:
        """The samples from ``p`` on; False when one runs past the datagram."""
        end = len(d)
        for k in range(n_samples):
            if end - p < 8:
                return False
            fmt, slen = _REC.unpack_from(d, p)
            p += 8
            if slen > end - p:
                return False
            if fmt in (1, 3):
                self.flow_sample(d, p, p + slen, fmt == 3, st, out, (at[0], at[1] + k))
            elif fmt in (2, 4):
                st.counter_samples += 1
                self.counter_sample(d, p, p + slen, fmt == 4, exporter, received)
            else:  # drop notifications (5), enterprise formats: skipped, counted
                st.unsupported_samples += 1
            p += slen
        return True

    def flow_sample(
        self,
        d: bytes,
        p: int,
        end: int,
        expanded: bool,
        st: ExporterStats,
        out: list[Sample],
        at: tuple[int, int],
    ) -> None:
        if expanded:
            if end - p < _XFLOW.size:
                st.decode_errors += 1
                return
            _, _, _, rate, _, _, in_f, in_v, out_f, out_v, n_rec = _XFLOW.unpack_from(d, p)
            p += _XFLOW.size
            in_if = in_v if in_f == 0 else 0
            out_if = out_v if out_f == 0 else 0
        else:
            if end - p < _FLOW.size:
                st.decode_errors += 1
                return
            _, _, rate, _, _, inp, outp, n_rec = _FLOW.unpack_from(d, p)
            p += _FLOW.size
            in_if = inp & 0x3FFFFFFF if inp >> 30 == 0 else 0
            out_if = outp & 0x3FFFFFFF if outp >> 30 == 0 else 0
        header = b""
        frame_len = 0
        ipdata: IpData | None = None
        if n_rec > (end - p) // 8:
            st.decode_errors += 1
            return
        for _ in range(n_rec):
            if end - p < 8:
                break
            rfmt, rlen = _REC.unpack_from(d, p)
            p += 8
            if rlen > end - p:
                st.decode_errors += 1
                return
            if rfmt == 1 and rlen >= _RAW.size:
                proto, frame_len, _, hlen = _RAW.unpack_from(d, p)
                if hlen <= rlen - _RAW.size and proto in L2:
                    header = L2[proto] + d[p + _RAW.size : p + _RAW.size + hlen]
            elif rfmt == 3 and rlen >= _IPV4.size and ipdata is None:
                ln, pr, s, t, sp, dp, fl, tos = _IPV4.unpack_from(d, p)
                ipdata = (ln, pr, sp, dp, fl, tos, _MAPPED + s, _MAPPED + t)
            elif rfmt == 4 and rlen >= _IPV6.size and ipdata is None:
                ln, pr, s6, t6, sp, dp, fl, tos = _IPV6.unpack_from(d, p)
                ipdata = (ln, pr, sp, dp, fl, tos, s6, t6)
            p += rlen
        if not header and ipdata is None:  # no record, or a header protocol we cannot parse
            st.unsupported_samples += 1
            return
        st.records += 1
        out.append((at, rate, in_if, out_if, frame_len, header, None if header else ipdata))

    def counter_sample(
        self, d: bytes, p: int, end: int, expanded: bool, exporter: str, received: float
    ) -> None:
        p += 12 if expanded else 8
        if end - p < 4:
            return
        (n_rec,) = _U32.unpack_from(d, p)
        p += 4
        for _ in range(min(n_rec, (end - p) // 8)):
            if end - p < 8:
                return
            rfmt, rlen = _REC.unpack_from(d, p)
            p += 8
            if rlen > end - p:
                return
            if rfmt == 1 and rlen >= _IFCNT.size and len(self._counters) < MAX_COUNTERS:
                c = _IFCNT.unpack_from(d, p)
                # ifIndex, ifSpeed, in/out octets, in/out ucast+mcast+bcast packets
                vals = (c[0], c[2], c[5], c[12], c[6] + c[7] + c[8], c[13] + c[14] + c[15])
                self._counters.append((received, exporter, vals))
            p += rlen
