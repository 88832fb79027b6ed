"""HMAC-SHA256 signatures of webhook bodies (``X-Shadowcast-Signature``).

The header is ``t=<unix seconds>,sha256=<hex>`` where the digest is the HMAC-SHA256, keyed
with the shared secret, of ``<t>.`` followed by the raw body: a receiver recomputes it over
the bytes it got, compares in constant time, and refuses timestamps too far from its clock
(a captured request cannot be replayed later). The secret comes from the environment
(``alert.webhook_secret_env``, default ``SHADOWCAST_WEBHOOK_SECRET``), never the settings file.
"""

from __future__ import annotations

import hashlib
import hmac
import time

HEADER = "X-Shadowcast-Signature"


def sign(secret: bytes, body: bytes, now: float | None = None) -> str:
    """The header value for ``body``."""
    t = int(time.time() if now is None else now)
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},sha256={mac}"


def verify(
    secret: bytes, header: str, body: bytes, *, tolerance_s: float = 300, now: float | None = None
) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` within ``tolerance_s`` of now."""
    try:
        parts = dict(p.split("=", 1) for p in header.split(","))
        t = int(parts["t"])
        got = parts["sha256"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    want = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, got)
