"""Per-process names for the namespaces and devices the root tests make.

Two test suites on one machine (two CI jobs, a developer beside CI) share one set of
network namespaces and one ``/tmp/shadowcast-lab`` state directory: a fixed prefix such as
``sctst-`` lets one suite's ``down`` remove the other's lab in the middle of its run.
:func:`lab_prefix` gives a 7-character prefix (the lab's limit, which keeps every device
name within Linux's 15-character ``IFNAMSIZ``) made of a letter naming the test, the
process id in base 36 (5 characters: pids are below 36**5) and ``-``. Prefixes of one
length that end in ``-`` are never prefixes of one another, so a ``down(prefix)`` removes
exactly what that test in that process made.
"""

from __future__ import annotations

import os

_DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
TOKEN_CHARS = 5


def process_token(pid: int | None = None) -> str:
    """The process id in base 36, zero-padded to 5 characters."""
    n = os.getpid() if pid is None else pid
    if not 0 <= n < 36**TOKEN_CHARS:
        raise ValueError(f"pid {n} does not fit {TOKEN_CHARS} base-36 characters")
    out = ""
    for _ in range(TOKEN_CHARS):
        n, d = divmod(n, 36)
        out = _DIGITS[d] + out
    return out


def lab_prefix(tag: str, pid: int | None = None) -> str:
    """``tag`` (one lowercase letter, one per test) + :func:`process_token` + ``-``."""
    if len(tag) != 1 or tag not in _DIGITS[10:]:
        raise ValueError(f"tag {tag!r}: one lowercase letter")
    return f"{tag}{process_token(pid)}-"
