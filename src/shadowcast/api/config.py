"""Settings of the REST API and dashboard (YAML key ``api``).

::

    api:
      listen: 127.0.0.1:8650
      tokens:
        - {name: noc, scope: read,  sha256: <hex of the token>}
        - {name: ops, scope: admin, sha256: <hex of the token>}

Tokens are stored hashed (``printf %s "$TOKEN" | sha256sum``); a request presents the token
itself as ``Authorization: Bearer <token>``. With no tokens the API listens on loopback only
(an address that is not loopback is refused) and every local caller is an admin.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
DEFAULT_PORT = 8650


class TokenConfig(BaseModel):
    """One bearer token: who (``name``, in the audit table), what (``scope``), and its
    SHA-256 in hex (never the token itself)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="who holds it: written in the audit table")
    scope: Literal["read", "admin"] = "read"
    sha256: str = Field(description="hex SHA-256 of the token (64 characters)")

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError("1-64 characters of letters, digits, _ . @ -")
        return v

    @field_validator("sha256")
    @classmethod
    def _hash(cls, v: str) -> str:
        v = v.strip().lower()
        if not _HEX64.match(v):
            raise ValueError("expected 64 hex characters (sha256sum of the token)")
        return v


def split_listen(text: str) -> tuple[str, int]:
    """``host:port`` (``[v6]:port`` for IPv6) -> (host, port); ValueError otherwise."""
    m = re.fullmatch(r"\[([0-9A-Fa-f:.]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", text.strip())
    if m is None:
        raise ValueError(f"expected host:port (or [v6]:port), got {text[:60]!r}")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is not in 0..65535")
    return host, port


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class ApiConfig(BaseModel):
    """``shadowcast run`` serves the REST API (``/api/v1``), its OpenAPI page (``/docs``),
    ``/metrics`` and the dashboard on ``listen``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="serve the API and dashboard from `shadowcast run`")
    listen: str = Field(f"127.0.0.1:{DEFAULT_PORT}", description="host:port ([v6]:port)")
    tokens: list[TokenConfig] = Field(default_factory=list, max_length=256)
    rate_per_minute: float = Field(
        600, gt=0, le=1_000_000, description="requests per minute per token (burst: the same)"
    )
    max_body_bytes: int = Field(
        65_536, ge=1024, le=16 * 1024 * 1024, description="larger request bodies get 413"
    )
    cors_origins: list[str] = Field(
        default_factory=list, max_length=32, description="CORS off unless origins are listed"
    )
    metrics_auth: bool = Field(
        False, description="require a token on /metrics too (Prometheus: bearer_token_file)"
    )

    @field_validator("listen")
    @classmethod
    def _listen(cls, v: str) -> str:
        split_listen(v)
        return v.strip()

    @model_validator(mode="after")
    def _loopback_without_tokens(self) -> ApiConfig:
        host, _ = split_listen(self.listen)
        if not self.tokens and not is_loopback(host):
            raise ValueError(
                f"listen {self.listen}: without api.tokens the API serves loopback only "
                "(127.0.0.1, ::1); add tokens to listen elsewhere"
            )
        names = [t.name for t in self.tokens]
        if len(set(names)) != len(names):
            raise ValueError("tokens: every name must be unique (the audit table names them)")
        return self

    @property
    def host(self) -> str:
        return split_listen(self.listen)[0]

    @property
    def port(self) -> int:
        return split_listen(self.listen)[1]
