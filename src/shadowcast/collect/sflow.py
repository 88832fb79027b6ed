"""sFlow v5 datagrams -> flow records (scaled by the sampling rate) and interface counters.

The datagram walk (samples, records: a few ``struct`` steps each, every length checked
against the datagram) collects the sampled packet headers; the headers of the whole
batch are then parsed together with numpy: Ethernet, up to two 802.1Q/QinQ tags,
IPv4 / IPv6, TCP / UDP ports and TCP flags. ``bytes = frame length x rate`` and
``packets = rate``. Counter samples (generic interface counters) are buffered and
returned by :meth:`SFlowDecoder.counters` as a :data:`COUNTER_SCHEMA` table.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shadowcast.collect.base import DecoderStats, ExporterStats
from shadowcast.collect.columns import concat, flow_table
from shadowcast.collect.frames import parse_headers
from shadowcast.store.schema import INTERFACE_COUNTERS_SCHEMA

COUNTER_SCHEMA = INTERFACE_COUNTERS_SCHEMA  # the store's interface_counters table

# (rate, in_if, out_if, frame length, raw header or b"", sampled IP record or None)
IpData = tuple[
    int, int, int, int, int, int, bytes, bytes
]  # len proto sport dport flags tos src dst
Sample = tuple[int, int, int, int, bytes, IpData | None]
_MAPPED = b"\x00" * 10 + b"\xff\xff"

_U32 = struct.Struct("!I")
_HDR_V4 = struct.Struct("!IIIII")  # (after address) sub_agent seq uptime n_samples
_FLOW = struct.Struct("!IIIIIIII")  # seq source rate pool drops input output n_records
_XFLOW = struct.Struct("!IIIIIIIIIII")  # expanded flow sample
_REC = struct.Struct("!II")
_FAST = struct.Struct("!14I")  # flow sample header + first record header + raw header
_FASTX = struct.Struct("!17I")  # the same for an expanded flow sample
_RAW = struct.Struct("!IIII")  # header protocol, frame length, stripped, header length
_IFCNT = struct.Struct("!IIQIIQIIIIIIQIIIII")  # generic interface counters (first 84 bytes)
_IPV4 = struct.Struct("!II4s4sIIII")
_IPV6 = struct.Struct("!II16s16sIIII")
# sampled header protocols: 1 Ethernet; 11 IPv4 and 12 IPv6 get a synthetic Ethernet header
_L2 = {1: b"", 11: b"\x00" * 12 + b"\x08\x00", 12: b"\x00" * 12 + b"\x86\xdd"}
MAX_COUNTERS = 1_000_000  # counter rows buffered between two counters() calls
MAX_SEQ_SCOPES = 65536


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
        self._seq: dict[tuple[str, int], int] = {}

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
        tables = []
        by_exp: dict[str, list[Sample]] = {}
        for data, exporter in packets:
            st = self.stats.of(exporter)
            st.packets += 1
            st.bytes += len(data)
            out = by_exp.setdefault(exporter, [])
            try:
                if not self._datagram(data, exporter, received, st, out):
                    st.decode_errors += 1
            except (struct.error, IndexError, ValueError):
                st.decode_errors += 1
        for exporter, samples in by_exp.items():
            if samples:
                tables.append(self._table(exporter, samples, received))
        return concat(tables)

    def _datagram(
        self,
        d: bytes,
        exporter: str,
        received: float,
        st: ExporterStats,
        out: list[Sample],
    ) -> bool:
        end = len(d)
        if end < 28 or _U32.unpack_from(d, 0)[0] != 5:
            return False
        atype = _U32.unpack_from(d, 4)[0]
        p = 8 + {1: 4, 2: 16}.get(atype, -1000)
        if p < 8 or end - p < 16:
            return False
        sub, seq, _uptime, n_samples = struct.unpack_from("!IIII", d, p)
        p += 16
        key = (exporter, sub)
        last = self._seq.get(key)
        gap = (seq - last - 1) % (1 << 32) if last is not None else 0
        if 0 < gap < (1 << 20):
            st.sequence_gaps += 1
            st.lost_records_estimate += gap * n_samples  # estimate: samples per datagram
        if key not in self._seq and len(self._seq) >= MAX_SEQ_SCOPES:
            self._seq.clear()
        self._seq[key] = seq
        if n_samples > (end - p) // 8:
            return False
        if n_samples == 0:
            st.empty_datagrams += 1
        fast, fastx = _FAST.unpack_from, _FASTX.unpack_from
        for _ in range(n_samples):
            if end - p < 8:
                return False
            fmt, slen = _REC.unpack_from(d, p)
            p += 8
            if slen > end - p:
                return False
            s_end = p + slen
            if fmt == 1 and slen >= _FAST.size:
                # fast path: a flow sample whose first record is an Ethernet raw header
                _, _, rate, _, _, inp, outp, n_rec, rfmt, rlen, hp, flen, _, hlen = fast(d, p)
                if n_rec >= 1 and rfmt == 1 and hp == 1 and hlen <= rlen - 16 <= slen - 56:
                    h0 = p + _FAST.size
                    in_if = inp & 0x3FFFFFFF if inp >> 30 == 0 else 0
                    out_if = outp & 0x3FFFFFFF if outp >> 30 == 0 else 0
                    out.append((rate, in_if, out_if, flen, d[h0 : h0 + hlen], None))
                    st.records += 1
                    p = s_end
                    continue
            elif fmt == 3 and slen >= _FASTX.size:
                (_, _, _, rate, _, _, in_f, in_v, out_f, out_v, n_rec, rfmt, rlen, hp, flen, _,
                 hlen) = fastx(d, p)  # fmt: skip
                if n_rec >= 1 and rfmt == 1 and hp == 1 and hlen <= rlen - 16 <= slen - 68:
                    h0 = p + _FASTX.size
                    in_if = in_v if in_f == 0 else 0
                    out_if = out_v if out_f == 0 else 0
                    out.append((rate, in_if, out_if, flen, d[h0 : h0 + hlen], None))
                    st.records += 1
                    p = s_end
                    continue
            if fmt in (1, 3):
                self._flow_sample(d, p, s_end, fmt == 3, exporter, st, out)
            elif fmt in (2, 4):
                st.counter_samples += 1
                self._counter_sample(d, p, s_end, fmt == 4, exporter, received)
            else:  # drop notifications (5), enterprise formats: skipped, counted
                st.unsupported_samples += 1
            p = s_end
        return True

    def _flow_sample(
        self,
        d: bytes,
        p: int,
        end: int,
        expanded: bool,
        exporter: str,
        st: ExporterStats,
        out: list[Sample],
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
                if hlen <= rlen - _RAW.size and proto in _L2:
                    header = _L2[proto] + d[p + _RAW.size : p + _RAW.size + hlen]
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
        out.append((rate, in_if, out_if, frame_len, header, None if header else ipdata))

    def _counter_sample(
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

    def _table(
        self,
        exporter: str,
        samples: list[Sample],
        received: float,
    ) -> pa.Table:
        n = len(samples)
        meta = np.array([s[:4] for s in samples], dtype=np.uint64).reshape(n, 4)
        rate = meta[:, 0].copy()
        override = self.overrides.get(exporter)
        if override:
            rate[:] = override
        unknown = rate == 0
        if unknown.any():
            self.stats.of(exporter).unknown_sampling += int(unknown.sum())
            rate[unknown] = 1
        hdr_rows = [i for i, s in enumerate(samples) if s[4]]
        cols: dict[str, npt.NDArray[np.generic]] = {
            "src_addr": np.zeros((n, 16), np.uint8),
            "dst_addr": np.zeros((n, 16), np.uint8),
        }
        for name in ("src_port", "dst_port", "proto", "tos", "tcp_flags"):
            cols[name] = np.zeros(n, np.uint64)
        frame = meta[:, 3].copy()
        if hdr_rows:
            parsed = parse_headers([samples[i][4] for i in hdr_rows])
            idx = np.array(hdr_rows)
            for name, v in parsed.items():
                if name != "ip":
                    cols[name][idx] = v
        ips = [(i, s[5]) for i, s in enumerate(samples) if s[5] is not None]
        if ips:
            idx = np.array([i for i, _ in ips])
            vals = np.array([ip[:6] for _, ip in ips], dtype=np.uint64).reshape(len(ips), 6)
            frame[idx] = vals[:, 0]
            masks = (0xFF, 0xFFFF, 0xFFFF, 0xFF, 0xFF)
            for k, name in enumerate(("proto", "src_port", "dst_port", "tcp_flags", "tos")):
                cols[name][idx] = vals[:, k + 1] & np.uint64(masks[k])
            for side, raw in (
                ("src_addr", b"".join(ip[6] for _, ip in ips)),
                ("dst_addr", b"".join(ip[7] for _, ip in ips)),
            ):
                cols[side][idx] = np.frombuffer(raw, np.uint8).reshape(len(ips), 16)
        ms = np.full(n, int(received * 1000), dtype=np.int64)
        cols.update(
            time_start=ms,
            time_end=ms,
            bytes=frame * rate,
            packets=rate,
            sampling_rate=rate,
            in_if=meta[:, 1],
            out_if=meta[:, 2],
        )
        return flow_table(n, cols, exporter)
