"""Wire encoders for NetFlow v9 / IPFIX: sets, templates, messages (tests, synth, demo)."""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence

import numpy as np
import numpy.typing as npt

Cols = Mapping[int, npt.NDArray[np.generic]]


def encode_records(fields: Sequence[tuple[int, int]], cols: Cols, n: int) -> bytes:
    """Records of a fixed-length template as bytes (one numpy assignment per field)."""
    names = [f"f{i}" for i in range(len(fields))]
    formats = [
        f">u{ln}"
        if ln in (1, 2, 4, 8) and (ie not in cols or cols[ie].dtype.kind != "V")
        else f"V{ln}"
        for ie, ln in fields
    ]
    arr = np.zeros(n, dtype=np.dtype({"names": names, "formats": formats}))
    for name, (ie, _) in zip(names, fields, strict=True):
        if ie in cols:
            arr[name] = cols[ie]
    return arr.tobytes()


def field_spec(f: tuple[int, ...]) -> bytes:
    """(element id, length) or (element id, length, enterprise number) on the wire."""
    if len(f) == 3 and f[2]:
        return struct.pack("!HHI", f[0] | 0x8000, f[1], f[2])
    return struct.pack("!HH", f[0], f[1])


def template_set(set_id: int, tid: int, fields: Sequence[tuple[int, ...]]) -> bytes:
    """A template set (IPFIX set id 2, NetFlow v9 flowset id 0) with one template."""
    body = struct.pack("!HH", tid, len(fields)) + b"".join(field_spec(f) for f in fields)
    return struct.pack("!HH", set_id, 4 + len(body)) + body


def ipfix_options_template(
    tid: int, scope: Sequence[tuple[int, ...]], opts: Sequence[tuple[int, ...]]
) -> bytes:
    fields = list(scope) + list(opts)
    body = struct.pack("!HHH", tid, len(fields), len(scope))
    body += b"".join(field_spec(f) for f in fields)
    return struct.pack("!HH", 3, 4 + len(body)) + body


def v9_options_template(
    tid: int, scope: Sequence[tuple[int, int]], opts: Sequence[tuple[int, int]]
) -> bytes:
    sc = b"".join(struct.pack("!HH", t, n) for t, n in scope)
    op = b"".join(struct.pack("!HH", t, n) for t, n in opts)
    body = struct.pack("!HHH", tid, len(sc), len(op)) + sc + op
    body += b"\x00" * ((-len(body)) % 4)
    return struct.pack("!HH", 1, 4 + len(body)) + body


def data_set(tid: int, payload: bytes, pad: bool = True) -> bytes:
    n = (-len(payload)) % 4 if pad else 0
    return struct.pack("!HH", tid, 4 + len(payload) + n) + payload + b"\x00" * n


def ipfix_message(sets: Sequence[bytes], seq: int = 0, domain: int = 1, now: int = 0) -> bytes:
    body = b"".join(sets)
    return struct.pack("!HHIII", 10, 16 + len(body), now, seq, domain) + body


def v9_packet(
    sets: Sequence[bytes],
    seq: int = 0,
    source_id: int = 1,
    now: int = 0,
    uptime: int = 0,
    count: int = 1,
) -> bytes:
    return struct.pack("!HHIIII", 9, count, uptime, now, seq, source_id) + b"".join(sets)
