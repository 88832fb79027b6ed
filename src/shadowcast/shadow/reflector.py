"""STAMP session-reflector (RFC 8762 §4.3), stateful, for asyncio.

``Reflector.handle`` is the whole decision for one datagram (pure, fuzzable); ``start``
binds a socket and answers from the event loop. Checks, in order, each with a drop
counter: oversized, allow-list, per-source rate limit, truncated, HMAC (authenticated
mode), replay/staleness (authenticated mode). A dropped packet is never answered.
``from_config`` builds one from the ``shadow.stamp`` settings.

Replay window (authenticated mode): HMAC proves origin, not freshness. The window is
keyed by the SSID alone (RFC 8972 §3), never by the source address or port, which the
HMAC does not cover: a captured packet re-sent from elsewhere meets the same window. Per
SSID the reflector keeps the highest sender sequence number, a bitmap of the last
``replay_window`` numbers, the newest accepted timestamp and the timestamp that opened
the current run. A repeat, or a number older than the window, is dropped, unless its
timestamp is newer than every timestamp accepted for that SSID: a sender restart, which
opens a new run (a replay can never carry a newer authenticated timestamp than the packet
it copies). A packet timestamped before the current run began belongs to an earlier run
and is dropped, so a restart does not re-open the earlier run's sequence numbers.
Packets further than ``max_age_s`` from the reflector's clock are dropped as stale. An
SSID's state is forgotten only once its newest accepted timestamp is older than
``max_age_s``, when every packet it accepted would be refused as stale anyway; the SSID
space (65,536) bounds the table. Senders sharing a key must use distinct SSIDs.

The reflector's own sequence counter (stateful mode) is kept per (address, port, SSID).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from shadowcast.errors import ProbeError
from shadowcast.shadow.sockets import drain, open_udp
from shadowcast.shadow.wire import (
    ErrorEstimate,
    ReflectorTest,
    WireError,
    base_len,
    decode_sender,
    encode_reflector,
    ntp_from_unix,
    unix_from_ntp,
)

if TYPE_CHECKING:
    from shadowcast.shadow.config import StampConfig

log = logging.getLogger(__name__)

DROP_KINDS = ("oversized", "acl", "rate", "truncated", "auth", "replay", "stale")


@dataclass(slots=True)
class _Session:
    """The reflector's side of one (address, port, SSID): its own sequence counter."""

    next_seq: int = 0
    last_seen: float = 0.0


@dataclass(slots=True)
class _Freshness:
    """Anti-replay state of one SSID (authenticated mode)."""

    highest: int = -1
    window: int = 0  # bit i set: sequence number (highest - i) was accepted
    newest_ts: int = 0  # newest accepted sender timestamp (NTP)
    run_ts: int = 0  # timestamp of the first packet of the current run


class Reflector:
    """Stateful STAMP session-reflector; unauthenticated when ``key`` is None."""

    def __init__(
        self,
        *,
        key: bytes | None = None,
        allow: Sequence[str] = ("0.0.0.0/0", "::/0"),
        rate_pps: float = 2000.0,
        burst: float = 200.0,
        max_size: int = 1472,
        replay_window: int = 1024,
        max_age_s: float | None = 30.0,
        session_idle_s: float = 120.0,
        max_sessions: int = 4096,
        error_estimate: ErrorEstimate | None = None,
        clock: Callable[[], float] = time.time,
        netns: str | None = None,
    ) -> None:
        self.netns = netns
        self.key = key
        self.allow = [ipaddress.ip_network(a, strict=False) for a in allow]
        self.rate_pps = rate_pps
        self.burst = burst
        self.max_size = max(max_size, base_len(key))
        self.replay_window = replay_window
        self.max_age_s = max_age_s
        self.session_idle_s = session_idle_s
        self.max_sessions = max_sessions
        self.err = (error_estimate or ErrorEstimate.from_seconds(1e-6)).encode()
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self._sessions: OrderedDict[tuple[str, int, int], _Session] = OrderedDict()
        self._fresh_by_ssid: OrderedDict[int, _Freshness] = OrderedDict()
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()
        self._sock: socket.socket | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_config(
        cls,
        cfg: StampConfig,
        *,
        netns: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> Reflector:
        """A reflector with every ``shadow.stamp`` setting applied (a key: authenticated)."""
        return cls(
            key=cfg.key(),
            allow=cfg.allow,
            rate_pps=cfg.rate_pps,
            burst=cfg.burst,
            max_size=cfg.max_size,
            replay_window=cfg.replay_window,
            max_age_s=cfg.max_age_s,
            clock=clock,
            netns=netns,
        )

    # ------------------------------------------------------------------ decisions
    def _allowed(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == n.version and ip in n for n in self.allow)

    def _take_token(self, host: str, now: float) -> bool:
        tokens, last = self._buckets.pop(host, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate_pps)
        ok = tokens >= 1.0
        self._buckets[host] = (tokens - 1.0 if ok else tokens, now)
        if len(self._buckets) > self.max_sessions:
            self._buckets.popitem(last=False)
        return ok

    def _session(self, key: tuple[str, int, int], now: float) -> _Session:
        s = self._sessions.pop(key, None)
        if s is None or now - s.last_seen > self.session_idle_s:
            s = _Session()
        self._sessions[key] = s
        while len(self._sessions) > self.max_sessions:
            self._sessions.popitem(last=False)
        return s

    def _forgettable(self, f: _Freshness, now: float) -> bool:
        """True once every packet this SSID accepted would be dropped as stale."""
        return self.max_age_s is not None and now - unix_from_ntp(f.newest_ts) > self.max_age_s

    def _freshness(self, ssid: int, now: float) -> _Freshness:
        f = self._fresh_by_ssid.pop(ssid, None)
        if f is None or self._forgettable(f, now):
            f = _Freshness()
        while self._fresh_by_ssid:  # least recently used first
            oldest = next(iter(self._fresh_by_ssid.values()))
            if not self._forgettable(oldest, now):
                break
            self._fresh_by_ssid.popitem(last=False)
        self._fresh_by_ssid[ssid] = f
        return f

    def _fresh(self, f: _Freshness, seq: int, ts: int) -> bool | None:
        """Anti-replay check; on acceptance updates ``f`` and returns whether the packet
        opened a new run (a sender restart). None: a replay (or an earlier run's packet)."""
        w = self.replay_window
        restart = False
        if f.highest >= 0 and ts < f.run_ts:
            return None  # timestamped before the current run began
        if f.highest < 0:
            f.highest, f.window, f.run_ts = seq, 1, ts
        elif seq > f.highest:
            shift = seq - f.highest
            f.window = ((f.window << shift) | 1) & ((1 << w) - 1) if shift < w else 1
            f.highest = seq
        elif seq > f.highest - w and not f.window & (1 << (f.highest - seq)):
            f.window |= 1 << (f.highest - seq)
        elif ts > f.newest_ts:  # seen or too old, but newer than anything: a new run
            f.highest, f.window, f.run_ts, restart = seq, 1, ts, True
        else:
            return None
        f.newest_ts = max(f.newest_ts, ts)
        return restart

    def handle(
        self, data: bytes, peer: tuple[str, int], rx_time: float, ttl: int = 255
    ) -> bytes | None:
        """Decide on one datagram: the reply to send, or None (dropped and counted)."""
        self.counters["received"] += 1
        now = self.clock()
        if len(data) > self.max_size:
            return self._drop("oversized")
        if not self._allowed(peer[0]):
            return self._drop("acl")
        if not self._take_token(peer[0], now):
            return self._drop("rate")
        try:
            p = decode_sender(data, self.key)
        except WireError as exc:
            return self._drop(exc.kind)
        restart = False
        if self.key is not None:
            if self.max_age_s is not None and abs(unix_from_ntp(p.ts) - now) > self.max_age_s:
                return self._drop("stale")
            verdict = self._fresh(self._freshness(p.ssid, now), p.seq, p.ts)
            if verdict is None:
                return self._drop("replay")
            restart = verdict
        s = self._session((peer[0], peer[1], p.ssid), now)
        if restart:
            s.next_seq = 0
        s.last_seen = now
        reply = ReflectorTest(
            seq=s.next_seq & 0xFFFFFFFF,
            ts=ntp_from_unix(self.clock()),
            err=self.err,
            ssid=p.ssid,
            rx_ts=ntp_from_unix(rx_time),
            sender_seq=p.seq,
            sender_ts=p.ts,
            sender_err=p.err,
            sender_ttl=ttl & 0xFF,
        )
        s.next_seq += 1
        self.counters["reflected"] += 1
        return encode_reflector(reply, self.key, size=len(data))

    def _drop(self, kind: str) -> bytes | None:
        self.counters[f"dropped_{kind}"] += 1
        return None

    @property
    def dropped(self) -> int:
        return sum(v for k, v in self.counters.items() if k.startswith("dropped_"))

    # ------------------------------------------------------------------ socket
    async def start(self, host: str = "127.0.0.1", port: int = 862) -> tuple[str, int]:
        """Bind and start answering; returns the bound address."""
        try:
            self._sock = open_udp(host, port, self.netns)
        except OSError as exc:
            raise ProbeError(f"stamp reflector: cannot bind {host}:{port}: {exc}") from exc
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._sock.fileno(), self._on_readable)
        addr = self._sock.getsockname()
        log.info("stamp reflector listening", extra={"addr": addr})
        return str(addr[0]), int(addr[1])

    def _on_readable(self) -> None:
        assert self._sock is not None
        for data, peer, rx, ttl in drain(self._sock):
            reply = self.handle(data, peer, rx, ttl)
            if reply is not None:
                try:
                    self._sock.sendto(reply, peer)
                except OSError:
                    self.counters["send_errors"] += 1

    def stop(self) -> None:
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None

    async def __aenter__(self) -> Reflector:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.stop()
