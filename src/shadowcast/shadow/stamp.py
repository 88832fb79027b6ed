"""STAMP session-sender (RFC 8762 §4.2) and the path metrics it derives.

A run sends ``count`` test packets on a schedule (periodic, or a paced train with a bounded
burst), collects the reflected packets with kernel receive timestamps, and keeps every
timestamp in numpy arrays (``StampRun``). ``StampRun.metrics()`` gives RTT, one-way delay in
each direction (meaningful where both ends share a clock, e.g. namespaces on one host) with
the error estimate declared by both ends, RFC 3550 interarrival jitter, and loss per
direction from the stateful reflector's own sequence numbers.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections import Counter
from dataclasses import asdict, dataclass

import numpy as np
from scipy.signal import lfilter

from shadowcast.errors import ProbeError
from shadowcast.records import F64, I64
from shadowcast.shadow.reflector import Reflector
from shadowcast.shadow.sockets import drain, open_udp
from shadowcast.shadow.wire import (
    STAMP_PORT,
    ErrorEstimate,
    SenderTest,
    WireError,
    base_len,
    decode_reflector,
    encode_sender,
    ntp_from_unix,
    unix_from_ntp,
)

__all__ = ["PathMetrics", "Reflector", "Sender", "StampRun", "rfc3550_jitter"]

_BUSY_WAIT_S = 0.002


def rfc3550_jitter(transit: F64) -> float:
    """RFC 3550 §6.4.1 interarrival jitter, J += (|D| - J)/16, over the non-NaN transits."""
    t = transit[~np.isnan(transit)]
    if t.size < 2:
        return math.nan
    d = np.abs(np.diff(t))
    return float(lfilter([1.0 / 16.0], [1.0, -15.0 / 16.0], d)[-1])


@dataclass(frozen=True, slots=True)
class PathMetrics:
    """Summary of one STAMP run; delays in milliseconds, losses as fractions."""

    sent: int
    received: int
    loss: float
    loss_fwd: float
    loss_bwd: float
    rtt_ms: float
    rtt_min_ms: float
    owd_fwd_ms: float
    owd_bwd_ms: float
    owd_err_ms: float
    jitter_ms: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class StampRun:
    """Every timestamp of one run (Unix seconds; NaN / -1 where the packet was lost)."""

    t1: F64  # sender transmit (user space, just before sendto)
    t2: F64  # reflector receive (its kernel timestamp)
    t3: F64  # reflector transmit
    t4: F64  # sender receive (kernel timestamp)
    t4_user: F64  # sender receive (user space, when the reply was read)
    rseq: I64  # reflector's own sequence number
    size: int
    err_s: float  # sum of both ends' declared error estimates
    duplicates: int = 0
    send_s: F64 | None = None  # how long each sendto took (a stall inside it shows here)

    @property
    def sent(self) -> int:
        return int(self.t1.size)

    @property
    def rtt(self) -> F64:
        """Round-trip time minus the reflector's residence time, seconds."""
        return (self.t4 - self.t1) - (self.t3 - self.t2)

    @property
    def owd_fwd(self) -> F64:
        return self.t2 - self.t1

    @property
    def owd_bwd(self) -> F64:
        return self.t4 - self.t3

    def metrics(self) -> PathMetrics:
        ok = self.rseq >= 0
        received = int(ok.sum())
        sent = self.sent
        loss = 1.0 - received / sent if sent else math.nan
        loss_fwd = loss_bwd = math.nan
        if received:
            rmax = int(self.rseq[ok].max())
            s_at = int(np.flatnonzero(self.rseq == rmax)[0])
            loss_fwd = max(0.0, 1.0 - (rmax + 1) / (s_at + 1))
            loss_bwd = max(0.0, 1.0 - received / (rmax + 1))
        rtt = self.rtt[ok]

        def ms(a: F64, f: str = "median") -> float:
            return float(getattr(np, f)(a) * 1e3) if a.size else math.nan

        return PathMetrics(
            sent=sent,
            received=received,
            loss=loss,
            loss_fwd=loss_fwd,
            loss_bwd=loss_bwd,
            rtt_ms=ms(rtt),
            rtt_min_ms=ms(rtt, "min"),
            owd_fwd_ms=ms(self.owd_fwd[ok]),
            owd_bwd_ms=ms(self.owd_bwd[ok]),
            owd_err_ms=self.err_s * 1e3,
            jitter_ms=rfc3550_jitter(self.owd_fwd) * 1e3,
        )


class Sender:
    """STAMP session-sender towards ``host:port``; authenticated when ``key`` is given."""

    def __init__(
        self,
        host: str,
        port: int = STAMP_PORT,
        *,
        key: bytes | None = None,
        local: str | None = None,
        local_port: int = 0,
        size: int = 0,
        timeout_s: float = 1.0,
        error_estimate: ErrorEstimate | None = None,
        netns: str | None = None,
    ) -> None:
        self.netns = netns
        self.host, self.port, self.key = host, port, key
        self.local = local if local is not None else ("::" if ":" in host else "0.0.0.0")
        self.local_port = local_port
        self.size = size
        self.timeout_s = timeout_s
        self.err = error_estimate or ErrorEstimate.from_seconds(1e-6)
        self.counters: Counter[str] = Counter()

    async def run(self, count: int, interval_s: float, *, size: int | None = None) -> StampRun:
        """Send ``count`` packets ``interval_s`` apart and wait for the replies."""
        return await self.schedule(np.arange(count, dtype=np.float64) * interval_s, size=size)

    async def train(self, count: int, gap_s: float, *, size: int | None = None) -> StampRun:
        """A paced train (bounded burst): ``count`` packets, ``gap_s`` apart, busy-waited.

        When the process is descheduled mid-train the rest of the schedule slides instead
        of bursting to catch up, so every gap is either on time or visibly late."""
        offsets = np.arange(count, dtype=np.float64) * gap_s
        return await self.schedule(offsets, size=size, max_late_s=gap_s / 4)

    async def schedule(
        self, offsets: F64, *, size: int | None = None, max_late_s: float | None = None
    ) -> StampRun:
        """Send one packet at each offset (seconds from now); collect replies. With
        ``max_late_s``, a packet later than that shifts the remaining schedule."""
        n = int(offsets.size)
        psize = self.size if size is None else size
        t1, t2, t3, t4, t4u, send_s = (np.full(n, np.nan) for _ in range(6))
        rseq = np.full(n, -1, dtype=np.int64)
        ssid = secrets.randbelow(0xFFFF) + 1
        err_s = [0.0]
        dups = [0]
        try:
            sock = open_udp(self.local, self.local_port, self.netns)
        except OSError as exc:
            raise ProbeError(f"stamp sender: cannot bind {self.local}: {exc}") from exc
        loop = asyncio.get_running_loop()

        def on_readable() -> None:
            for data, _peer, rx, _ttl in drain(sock):
                now = time.time()
                try:
                    r = decode_reflector(data, self.key)
                except WireError as exc:
                    self.counters[f"dropped_{exc.kind}"] += 1
                    continue
                i = r.sender_seq
                if r.ssid != ssid or i >= n or not t1[i] == t1[i]:
                    self.counters["dropped_foreign"] += 1
                    continue
                if rseq[i] >= 0:
                    dups[0] += 1
                    continue
                rseq[i] = r.seq
                t2[i], t3[i] = unix_from_ntp(r.rx_ts), unix_from_ntp(r.ts)
                t4[i], t4u[i] = rx, now
                err_s[0] = self.err.seconds + ErrorEstimate.decode(r.err).seconds

        loop.add_reader(sock.fileno(), on_readable)
        try:
            sock.connect((self.host, self.port))
            start = time.perf_counter()
            for i in range(n):
                target = start + float(offsets[i])
                delay = target - time.perf_counter()
                if delay > _BUSY_WAIT_S:
                    await asyncio.sleep(delay - _BUSY_WAIT_S)
                while (late := time.perf_counter() - target) < 0:
                    pass
                if max_late_s is not None and late > max_late_s:
                    start += late
                now = time.time()
                pkt = SenderTest(seq=i, ts=ntp_from_unix(now), err=self.err.encode(), ssid=ssid)
                t1[i] = now
                try:
                    sock.send(encode_sender(pkt, self.key, psize))
                except OSError:
                    self.counters["send_errors"] += 1
                send_s[i] = time.time() - now
            deadline = time.perf_counter() + self.timeout_s
            while time.perf_counter() < deadline and (rseq < 0).any():
                await asyncio.sleep(0.005)
        except OSError as exc:
            raise ProbeError(f"stamp sender to {self.host}:{self.port}: {exc}") from exc
        finally:
            loop.remove_reader(sock.fileno())
            sock.close()
        self.counters["sent"] += n
        size_b = max(psize, base_len(self.key))
        return StampRun(t1, t2, t3, t4, t4u, rseq, size_b, err_s[0], dups[0], send_s)
