"""Hostile-input helpers for the property tests: mutations of a valid document.

An edit is ``(op, a, b, token)``; :func:`mutate` applies a list of them in order:

* ``cut``  — keep the first ``a % (len + 1)`` bytes (truncation);
* ``put``  — overwrite at ``a`` with ``token``;
* ``ins``  — insert ``token`` at ``a``;
* ``del``  — delete ``b % 64 + 1`` bytes at ``a``;
* ``dup``  — insert a copy of ``b % 64 + 1`` bytes from ``b`` at ``a``;
* ``flip`` — flip bit ``b % 8`` of the byte at ``a``.

Tokens mix random bytes with fragments known to hurt parsers (encodings, entities, deep
nesting, huge numbers, aliases, NUL, invalid UTF-8). Regressions are written as
``@example(edits=[("put", OFFSET, 0, b"u-f-8")])``.
"""

from __future__ import annotations

from collections.abc import Sequence

from hypothesis import strategies as st

Edit = tuple[str, int, int, bytes]

TOKENS: tuple[bytes, ...] = (
    b"<",
    b">",
    b"&",
    b"&amp;",
    b"&x;",
    b"<!--",
    b"<![CDATA[",
    b'encoding="u-f-8"',
    b'encoding="cp932"',
    b'encoding="utf-16"',
    b"<!DOCTYPE n [<!ENTITY x 'y'>]>",
    b"[" * 1200,
    b"{" * 3,
    b"]}",
    b"9" * 5000,
    b"-1",
    b"0",
    b"1e400",
    b"1e39",
    b"NaN",
    b"nan",
    b"Infinity",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b'"',
    b"'",
    b"\\",
    b"\\u0000",
    b":",
    b"- ",
    b"? ",
    b"&a ",
    b"*a",
    b"!!python/object:os.system ",
    b"!!binary ",
    b"<<: ",
    b",",
    b"\t",
    b"\n",
    b"\r",
    b"\x00",
    b"\xff\xfe",
    b"\xef\xbb\xbf",
    b"\xc3",
    b"\xed\xa0\x80",
    b"2024-01-01T00:00:00Z",
    b"99999-99-99",
    b"65536",
    b"4294967296",
    b"\xff" * 4,
)

OPS = ("cut", "put", "ins", "del", "dup", "flip")

edit = st.tuples(
    st.sampled_from(OPS),
    st.integers(0, 1 << 20),
    st.integers(0, 1 << 20),
    st.one_of(st.sampled_from(TOKENS), st.binary(min_size=1, max_size=8)),
)
#: One to six edits of a valid document.
EDITS = st.lists(edit, min_size=1, max_size=6)


def mutate(data: bytes, edits: Sequence[Edit]) -> bytes:
    """Apply ``edits`` (see the module docstring) to ``data``."""
    d = bytearray(data)
    for op, a, b, token in edits:
        n = len(d)
        if op == "cut":
            del d[a % (n + 1) :]
        elif op == "put" and n:
            i = a % n
            d[i : i + len(token)] = token
        elif op == "ins":
            i = a % (n + 1)
            d[i:i] = token
        elif op == "del" and n:
            i = a % n
            del d[i : i + b % 64 + 1]
        elif op == "dup" and n:
            i, j = a % (n + 1), b % n
            d[i:i] = d[j : j + b % 64 + 1]
        elif op == "flip" and n:
            d[a % n] ^= 1 << (b % 8)
    return bytes(d)


def one_clear_line(message: str, names: str) -> None:
    """An error message fit for ``error: ...``: one line, naming ``names``, no input dump."""
    assert names in message, message
    assert "\n" not in message, message
    assert len(message) < 600, f"{len(message)} chars: {message[:200]}..."
