"""Who is calling: bearer tokens (stored hashed, compared in constant time), scopes, rates.

* ``Authorization: Bearer <token>``: the token's SHA-256 is compared with every configured
  hash with :func:`hmac.compare_digest` (all of them, whatever matches: the time taken does
  not say which or how much matched). No header, another scheme or an unknown token: 401.
* scopes: ``read`` reads everything; ``admin`` also writes (approve, reject, apply,
  rollback). A read token on a write: 403 (and the attempt is audited).
* every token has its own token bucket (``api.rate_per_minute``; burst the same): past it,
  429 with ``Retry-After``.
* with no tokens configured the API only listens on loopback and every caller is the admin
  ``loopback`` (said once at startup).

The dashboard's pages accept the same token from a cookie set by its login form
(``HttpOnly``, ``SameSite=Strict``); its forms also carry a CSRF value derived from the
token, checked on every POST (``web/pages.py``). The API itself takes bearer tokens only.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from shadowcast.api.config import ApiConfig

SCOPES = ("read", "admin")
COOKIE = "shadowcast_token"


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller: the token's name (written in the audit table) and its scope."""

    name: str
    scope: str

    @property
    def admin(self) -> bool:
        return self.scope == "admin"


LOOPBACK = Principal("loopback", "admin")


class AuthError(Exception):
    """Refused: ``status`` 401 (who?), 403 (not allowed) or 429 (too many)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Tokens:
    """The configured tokens and their rate limits."""

    def __init__(self, config: ApiConfig, clock: Callable[[], float] | None = None) -> None:
        self.open = not config.tokens
        self._tokens = [(t.sha256, Principal(t.name, t.scope)) for t in config.tokens]
        self.rate_per_s = config.rate_per_minute / 60.0
        self.burst = max(1.0, config.rate_per_minute)
        self._clock = clock or time.monotonic
        self._buckets: dict[str, tuple[float, float]] = {}  # name -> (tokens, last)
        self._lock = threading.Lock()

    def identify(self, token: str | None) -> Principal:
        """The principal holding ``token`` (None: no token presented); AuthError 401."""
        if self.open:
            return LOOPBACK
        if not token:
            raise AuthError(401, "a bearer token is required (Authorization: Bearer <token>)")
        digest = token_hash(token)
        found: Principal | None = None
        for stored, principal in self._tokens:  # no early exit: every hash is compared
            if hmac.compare_digest(stored, digest):
                found = principal
        if found is None:
            raise AuthError(401, "unknown token")
        return found

    def from_header(self, header: str | None) -> Principal:
        if self.open:
            return LOOPBACK
        if not header:
            return self.identify(None)
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise AuthError(401, "only bearer tokens are accepted (Authorization: Bearer <token>)")
        return self.identify(value.strip())

    def charge(self, who: Principal) -> None:
        """One request of ``who``; AuthError 429 past its rate."""
        now = self._clock()
        with self._lock:
            tokens, last = self._buckets.get(who.name, (self.burst, now))
            tokens = min(self.burst, tokens + (now - last) * self.rate_per_s)
            if tokens < 1.0:
                self._buckets[who.name] = (tokens, now)
                wait = (1.0 - tokens) / self.rate_per_s
                raise AuthError(429, f"rate limit of {who.name!r} reached", math.ceil(wait))
            self._buckets[who.name] = (tokens - 1.0, now)

    @staticmethod
    def require_admin(who: Principal, action: str) -> None:
        if not who.admin:
            raise AuthError(403, f"{action} needs an admin token; {who.name!r} has scope read")


def csrf_value(token: str, secret: bytes) -> str:
    """The dashboard forms' CSRF field for the session holding ``token``."""
    return hmac.new(secret, token.encode(), hashlib.sha256).hexdigest()[:32]
