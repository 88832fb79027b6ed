"""A small pure-Python reader of classic pcap files: Ethernet (+VLAN) / IPv4 / IPv6 / UDP.

Yields ``(timestamp, src address, src port, dst port, UDP payload)``; anything else
(TCP, fragments, other link types) is skipped. Bad files raise ``DataError`` naming them.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shadowcast.errors import DataError

_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101


@dataclass(frozen=True, slots=True)
class UdpPacket:
    time: float
    src: str
    sport: int
    dport: int
    payload: bytes


def _ip_udp(frame: bytes, off: int) -> tuple[str, int, int, bytes] | None:
    if len(frame) < off + 1:
        return None
    ver = frame[off] >> 4
    if ver == 4:
        if len(frame) < off + 20:
            return None
        ihl = (frame[off] & 0x0F) * 4
        total = struct.unpack_from("!H", frame, off + 2)[0]
        frag = struct.unpack_from("!H", frame, off + 6)[0]
        if frame[off + 9] != 17 or frag & 0x3FFF or ihl < 20:
            return None
        src = str(ipaddress.IPv4Address(frame[off + 12 : off + 16]))
        end = min(len(frame), off + total) if total else len(frame)
        udp = off + ihl
    elif ver == 6:
        if len(frame) < off + 40 or frame[off + 6] != 17:
            return None
        plen = struct.unpack_from("!H", frame, off + 4)[0]
        src = str(ipaddress.IPv6Address(frame[off + 8 : off + 24]))
        end = min(len(frame), off + 40 + plen)
        udp = off + 40
    else:
        return None
    if end - udp < 8:
        return None
    sport, dport, ulen = struct.unpack_from("!HHH", frame, udp)
    stop = min(end, udp + ulen) if ulen >= 8 else end
    return src, sport, dport, frame[udp + 8 : stop]


def read_udp(path: str | Path) -> Iterator[UdpPacket]:
    """UDP payloads of a classic pcap file, in file order."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"{p}: cannot read pcap: {exc}") from exc
    if len(raw) < 24 or raw[:4] not in _MAGIC:
        raise DataError(f"{p}: not a classic pcap file (bad magic)")
    endian, unit = _MAGIC[raw[:4]]
    linktype = struct.unpack_from(endian + "I", raw, 20)[0]
    if linktype not in (LINKTYPE_ETHERNET, LINKTYPE_RAW):
        raise DataError(f"{p}: unsupported link type {linktype}")
    rec = struct.Struct(endian + "IIII")
    off = 24
    while off + 16 <= len(raw):
        sec, frac, incl, _orig = rec.unpack_from(raw, off)
        off += 16
        if off + incl > len(raw):
            raise DataError(f"{p}: truncated record at byte {off - 16}")
        frame = raw[off : off + incl]
        off += incl
        if linktype == LINKTYPE_RAW:
            l3 = 0
        else:
            if len(frame) < 14:
                continue
            etype = struct.unpack_from("!H", frame, 12)[0]
            l3 = 14
            while etype in (0x8100, 0x88A8) and len(frame) >= l3 + 4:
                etype = struct.unpack_from("!H", frame, l3 + 2)[0]
                l3 += 4
            if etype not in (0x0800, 0x86DD):
                continue
        got = _ip_udp(frame, l3)
        if got is not None:
            yield UdpPacket(sec + frac * unit, got[0], got[1], got[2], got[3])
