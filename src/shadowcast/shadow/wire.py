"""STAMP test-packet formats (RFC 8762 §4.2/§4.3, SSID from RFC 8972 §3).

Unauthenticated packets are 44 octets, authenticated ones 112 (HMAC-SHA-256 truncated to
16 octets over the first 96). Anything after the base layout is padding; replies are padded
to the length of the packet they answer (symmetric sizes, RFC 8762 §4.3)::

    sender, unauthenticated    seq(4) ts(8) err(2) ssid(2) mbz(28)
    sender, authenticated      seq(4) mbz(12) ts(8) err(2) ssid(2) mbz(68) hmac(16)
    reflector, unauthenticated seq(4) ts(8) err(2) ssid(2) rx_ts(8) s_seq(4) s_ts(8)
                               s_err(2) mbz(2) s_ttl(1) mbz(3)
    reflector, authenticated   seq(4) mbz(12) ts(8) err(2) ssid(2) mbz(4) rx_ts(8) mbz(8)
                               s_seq(4) mbz(12) s_ts(8) s_err(2) mbz(6) s_ttl(1) mbz(15)
                               hmac(16)

Timestamps are NTP 64-bit (seconds since 1900 << 32 | fraction).
"""

from __future__ import annotations

import hashlib
import hmac
import math
import struct
from dataclasses import dataclass

NTP_UNIX_OFFSET = 2_208_988_800
UNAUTH_LEN = 44
AUTH_LEN = 112
HMAC_LEN = 16
AUTH_COVERED = AUTH_LEN - HMAC_LEN
STAMP_PORT = 862

_SENDER_U = struct.Struct(">IQHH28x")
_SENDER_A = struct.Struct(">I12xQHH68x")
_REFL_U = struct.Struct(">IQHHQIQHHB3x")
_REFL_A = struct.Struct(">I12xQHH4xQ8xI12xQH6xB15x")
assert _SENDER_U.size == UNAUTH_LEN and _REFL_U.size == UNAUTH_LEN
assert _SENDER_A.size == AUTH_COVERED and _REFL_A.size == AUTH_COVERED


class WireError(ValueError):
    """A test packet was refused; ``kind`` is the drop counter to bump."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


def ntp_from_unix(t: float) -> int:
    """Unix seconds -> NTP 64-bit timestamp."""
    whole = math.floor(t)
    frac = int((t - whole) * 4_294_967_296.0) & 0xFFFFFFFF
    return (((whole + NTP_UNIX_OFFSET) & 0xFFFFFFFF) << 32) | frac


def unix_from_ntp(v: int) -> float:
    """NTP 64-bit timestamp -> Unix seconds (era 0)."""
    return float((v >> 32) - NTP_UNIX_OFFSET) + (v & 0xFFFFFFFF) / 4_294_967_296.0


@dataclass(frozen=True, slots=True)
class ErrorEstimate:
    """RFC 4656 §4.1.2 error estimate: ``multiplier * 2**(scale - 32)`` seconds."""

    synced: bool = False
    scale: int = 0
    multiplier: int = 1
    ptp: bool = False

    @property
    def seconds(self) -> float:
        return float(self.multiplier) * 2.0 ** (self.scale - 32)

    def encode(self) -> int:
        return (
            (int(self.synced) << 15)
            | (int(self.ptp) << 14)
            | ((self.scale & 0x3F) << 8)
            | (self.multiplier & 0xFF)
        )

    @classmethod
    def decode(cls, v: int) -> ErrorEstimate:
        return cls(bool(v >> 15 & 1), v >> 8 & 0x3F, v & 0xFF, bool(v >> 14 & 1))

    @classmethod
    def from_seconds(cls, s: float, *, synced: bool = False) -> ErrorEstimate:
        """Smallest representable estimate >= ``s`` (multiplier is never 0)."""
        for scale in range(64):
            mult = math.ceil(s * 2.0 ** (32 - scale))
            if mult <= 255:
                return cls(synced, scale, max(1, mult))
        return cls(synced, 63, 255)


@dataclass(frozen=True, slots=True)
class SenderTest:
    seq: int
    ts: int
    err: int
    ssid: int


@dataclass(frozen=True, slots=True)
class ReflectorTest:
    seq: int
    ts: int
    err: int
    ssid: int
    rx_ts: int
    sender_seq: int
    sender_ts: int
    sender_err: int
    sender_ttl: int


def _mac(key: bytes, covered: bytes) -> bytes:
    return hmac.new(key, covered, hashlib.sha256).digest()[:HMAC_LEN]


def _pad(body: bytes, size: int) -> bytes:
    return body + bytes(size - len(body)) if size > len(body) else body


def encode_sender(p: SenderTest, key: bytes | None = None, size: int = 0) -> bytes:
    """Session-sender test packet; ``key`` selects authenticated mode; padded to ``size``."""
    if key is None:
        return _pad(_SENDER_U.pack(p.seq, p.ts, p.err, p.ssid), size)
    body = _SENDER_A.pack(p.seq, p.ts, p.err, p.ssid)
    return _pad(body + _mac(key, body), size)


def decode_sender(buf: bytes, key: bytes | None = None) -> SenderTest:
    """Parse (and in authenticated mode verify) a session-sender packet or raise WireError."""
    if key is None:
        if len(buf) < UNAUTH_LEN:
            raise WireError("truncated", f"{len(buf)} < {UNAUTH_LEN} octets")
        return SenderTest(*_SENDER_U.unpack_from(buf))
    if len(buf) < AUTH_LEN:
        raise WireError("truncated", f"{len(buf)} < {AUTH_LEN} octets")
    if not hmac.compare_digest(_mac(key, buf[:AUTH_COVERED]), buf[AUTH_COVERED:AUTH_LEN]):
        raise WireError("auth", "hmac mismatch")
    return SenderTest(*_SENDER_A.unpack_from(buf))


def encode_reflector(p: ReflectorTest, key: bytes | None = None, size: int = 0) -> bytes:
    fields = (
        p.seq,
        p.ts,
        p.err,
        p.ssid,
        p.rx_ts,
        p.sender_seq,
        p.sender_ts,
        p.sender_err,
    )
    if key is None:
        return _pad(_REFL_U.pack(*fields, 0, p.sender_ttl), size)
    body = _REFL_A.pack(*fields, p.sender_ttl)
    return _pad(body + _mac(key, body), size)


def decode_reflector(buf: bytes, key: bytes | None = None) -> ReflectorTest:
    if key is None:
        if len(buf) < UNAUTH_LEN:
            raise WireError("truncated", f"{len(buf)} < {UNAUTH_LEN} octets")
        v = _REFL_U.unpack_from(buf)
        return ReflectorTest(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[9])
    if len(buf) < AUTH_LEN:
        raise WireError("truncated", f"{len(buf)} < {AUTH_LEN} octets")
    if not hmac.compare_digest(_mac(key, buf[:AUTH_COVERED]), buf[AUTH_COVERED:AUTH_LEN]):
        raise WireError("auth", "hmac mismatch")
    v = _REFL_A.unpack_from(buf)
    return ReflectorTest(v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8])


def base_len(key: bytes | None) -> int:
    return UNAUTH_LEN if key is None else AUTH_LEN
