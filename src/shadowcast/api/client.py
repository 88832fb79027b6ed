"""A small client of the running service's REST API for the command line (stdlib only).

The token comes from an environment variable (never the command line, which other users
see in the process list); without one no ``Authorization`` header is sent (a service
without tokens listens on loopback and takes every local caller as an admin). Failures are
one-line errors: unreachable or refused tokens are ConfigError, a refusal of the request
itself ForecastError-like errors chosen by the caller (``refused``).
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from shadowcast.errors import ConfigError, ShadowcastError

TIMEOUT_S = 30.0


def base_url(url: str) -> str:
    """``url`` checked: http(s)://host[:port], no path beyond ``/``."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"--api {url!r}: not an http(s)://host:port address")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def call(
    url: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    token_env: str,
    refused: type[ShadowcastError],
) -> dict[str, Any]:
    """``method`` ``url + path`` with a JSON body; the JSON answer. 401/403 and an
    unreachable service: ConfigError; any other refusal: ``refused`` with the API's error."""
    token = os.environ.get(token_env, "").strip()
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base_url(url) + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:  # noqa: S310 (checked)
            answer = json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        why = _error_of(exc)
        if exc.code in (401, 403):
            hint = "" if token else f" (no token: set {token_env})"
            raise ConfigError(f"--api {url}: {exc.code} {why}{hint}") from None
        raise refused(f"{method} {path}: {exc.code} {why}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ConfigError(f"--api {url}: the service did not answer ({reason})") from None
    return dict(answer) if isinstance(answer, dict) else {"answer": answer}


def _error_of(exc: urllib.error.HTTPError) -> str:
    try:
        doc = json.loads(exc.read() or b"{}")
    except (ValueError, OSError):
        return str(exc.reason)
    return str(doc.get("error", exc.reason)) if isinstance(doc, dict) else str(exc.reason)
