"""Notifiers: log, generic webhook (JSON POST, HMAC-signed), Prometheus Alertmanager.

Alertmanager gets each alert with its labels (``alertname``, ``link``, ``class``: the
application class carrying most of the link's predicted load, ``severity``, ``team``: from
``alert.teams``) and the lead time as annotations. While the condition holds the alert is
re-sent every ``alert.resend`` with ``endsAt`` a few re-sends ahead (as Prometheus does), so
Alertmanager keeps it firing; when the rule clears it is sent once more with ``endsAt`` at
the clearing time, and Alertmanager resolves it.
"""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from shadowcast.alert.base import Notifier
from shadowcast.alert.config import AlertConfig
from shadowcast.alert.signing import HEADER, sign
from shadowcast.errors import ConfigError
from shadowcast.records import Alert
from shadowcast.units import format_duration, parse_duration

log = logging.getLogger(__name__)


def _iso(t: np.datetime64) -> str:
    return datetime.fromtimestamp(int(t.astype("datetime64[s]").astype(np.int64)), UTC).isoformat()


def alert_json(
    alert: Alert, status: str = "firing", ends: np.datetime64 | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "status": status,
        "name": alert.name,
        "subject": alert.subject,
        "severity": alert.severity,
        "value": alert.value,
        "threshold": alert.threshold,
        "issued": _iso(alert.issued),
        "at": _iso(alert.at),
        "lead_s": alert.lead_s,
        "message": alert.message,
        "labels": dict(alert.labels),
    }
    if ends is not None:
        out["resolved"] = _iso(ends)
    return out


@dataclass
class LogNotifier:
    name: str = "log"
    sent: int = 0

    def send(self, alert: Alert) -> bool:
        log.warning(
            "alert %s: %s", alert.name, alert.message,
            extra={"alert": alert.name, "subject": alert.subject},
        )  # fmt: skip
        self.sent += 1
        return True

    def resolve(self, alert: Alert, at: np.datetime64) -> bool:
        log.info(
            "alert %s resolved: %s", alert.name, alert.subject,
            extra={"alert": alert.name, "at": _iso(at)},
        )  # fmt: skip
        return True

    def refresh(self, firing: Sequence[Alert], now: np.datetime64) -> None:
        return None


def _post(url: str, body: bytes, timeout: float, headers: dict[str, str] | None = None) -> bool:
    req = urllib.request.Request(
        url,
        data=body,
        headers={"Content-Type": "application/json", **(headers or {})},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310
            return 200 <= int(resp.status) < 300
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        log.error("alert delivery failed: %s", exc, extra={"url": url})
        return False


@dataclass
class WebhookNotifier:
    """POSTs each alert (and its resolution) as one JSON object, signed with HMAC-SHA256
    in ``X-Shadowcast-Signature`` when a secret is given (see ``alert/signing.py``)."""

    url: str
    timeout: float = 5.0
    secret: bytes | None = None
    name: str = "webhook"
    failures: int = 0

    def _deliver(self, payload: dict[str, Any]) -> bool:
        body = json.dumps(payload).encode()
        headers = {HEADER: sign(self.secret, body)} if self.secret else {}
        ok = _post(self.url, body, self.timeout, headers)
        self.failures += not ok
        return ok

    def send(self, alert: Alert) -> bool:
        return self._deliver(alert_json(alert))

    def resolve(self, alert: Alert, at: np.datetime64) -> bool:
        return self._deliver(alert_json(alert, "resolved", at))

    def refresh(self, firing: Sequence[Alert], now: np.datetime64) -> None:
        return None


@dataclass
class AlertmanagerNotifier:
    """POSTs to Alertmanager's v2 API (see the module docstring)."""

    url: str
    timeout: float = 5.0
    resend_s: int = 60
    name: str = "alertmanager"
    failures: int = 0
    extra_labels: dict[str, str] = field(default_factory=dict)
    _last_sent: np.datetime64 | None = None

    def body(self, alert: Alert, ends: np.datetime64) -> dict[str, Any]:
        labels = {
            "alertname": alert.name,
            "link": alert.subject,
            "severity": alert.severity,
            **{k: v for k, v in alert.labels.items() if v},
            **self.extra_labels,
        }
        return {
            "labels": labels,
            "annotations": {
                "summary": alert.message,
                "predicted_at": _iso(alert.at),
                "lead_seconds": str(alert.lead_s),
                "lead_time": format_duration(alert.lead_s),
                "predicted_utilisation": f"{alert.value:.3f}",
            },
            "startsAt": _iso(alert.issued),
            "endsAt": _iso(ends),
        }

    def _ends(self, now: np.datetime64) -> np.datetime64:
        return now + np.timedelta64(4 * self.resend_s, "s")

    def _deliver(self, bodies: list[dict[str, Any]]) -> bool:
        if not bodies:
            return True
        url = self.url.rstrip("/") + "/api/v2/alerts"
        ok = _post(url, json.dumps(bodies).encode(), self.timeout)
        self.failures += not ok
        return ok

    def send(self, alert: Alert) -> bool:
        return self._deliver([self.body(alert, self._ends(alert.issued))])

    def resolve(self, alert: Alert, at: np.datetime64) -> bool:
        return self._deliver([self.body(alert, at)])

    def refresh(self, firing: Sequence[Alert], now: np.datetime64) -> None:
        due = self._last_sent is None or now - self._last_sent >= np.timedelta64(self.resend_s, "s")
        if due and firing:
            self._deliver([self.body(a, self._ends(now)) for a in firing])
            self._last_sent = now


def webhook_secret(config: AlertConfig) -> bytes | None:
    value = os.environ.get(config.webhook_secret_env, "")
    if not value:
        log.warning(
            "webhook bodies are not signed: set the HMAC secret in the environment",
            extra={"variable": config.webhook_secret_env},
        )
        return None
    return value.encode()


def build_notifiers(config: AlertConfig) -> list[Notifier]:
    out: list[Notifier] = []
    for name in config.notifiers:
        if name == "log":
            out.append(LogNotifier())
        elif name == "webhook":
            if config.webhook_url is None:
                raise ConfigError("alert.webhook_url: required when 'webhook' is a notifier")
            out.append(WebhookNotifier(str(config.webhook_url), secret=webhook_secret(config)))
        elif name == "alertmanager":
            if config.alertmanager_url is None:
                raise ConfigError("alert.alertmanager_url: required for 'alertmanager'")
            resend = parse_duration(config.resend)
            out.append(AlertmanagerNotifier(str(config.alertmanager_url), resend_s=resend))
        else:
            raise ConfigError(
                f"alert.notifiers: unknown notifier {name!r} (log, webhook, alertmanager)"
            )
    return out
