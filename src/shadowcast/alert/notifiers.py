"""Notifiers: log, generic webhook (JSON POST), Prometheus Alertmanager (/api/v2/alerts)."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from shadowcast.alert.base import Notifier
from shadowcast.alert.config import AlertConfig
from shadowcast.errors import ConfigError
from shadowcast.records import Alert

log = logging.getLogger(__name__)


def _iso(t: np.datetime64) -> str:
    return datetime.fromtimestamp(int(t.astype("datetime64[s]").astype(np.int64)), UTC).isoformat()


def alert_json(alert: Alert) -> dict[str, object]:
    return {
        "name": alert.name,
        "subject": alert.subject,
        "severity": alert.severity,
        "value": alert.value,
        "threshold": alert.threshold,
        "issued": _iso(alert.issued),
        "at": _iso(alert.at),
        "lead_s": alert.lead_s,
        "message": alert.message,
    }


@dataclass
class LogNotifier:
    name: str = "log"
    sent: int = 0

    def send(self, alert: Alert) -> bool:
        log.warning("capacity alert: %s", alert.message, extra={"subject": alert.subject})
        self.sent += 1
        return True


def _post(url: str, body: object, timeout: float) -> bool:
    req = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
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
    """POSTs each alert as one JSON object."""

    url: str
    timeout: float = 5.0
    name: str = "webhook"
    failures: int = 0

    def send(self, alert: Alert) -> bool:
        ok = _post(self.url, alert_json(alert), self.timeout)
        self.failures += not ok
        return ok


@dataclass
class AlertmanagerNotifier:
    """POSTs to Alertmanager's v2 API; ``endsAt`` is the predicted crossing + 1 h."""

    url: str
    timeout: float = 5.0
    name: str = "alertmanager"
    failures: int = 0
    extra_labels: dict[str, str] = field(default_factory=dict)

    def send(self, alert: Alert) -> bool:
        body = [
            {
                "labels": {
                    "alertname": alert.name,
                    "link": alert.subject,
                    "severity": alert.severity,
                    **self.extra_labels,
                },
                "annotations": {
                    "summary": alert.message,
                    "predicted_at": _iso(alert.at),
                    "lead_seconds": str(alert.lead_s),
                },
                "startsAt": _iso(alert.issued),
                "endsAt": _iso(alert.at + np.timedelta64(3600, "s")),
            }
        ]
        ok = _post(self.url.rstrip("/") + "/api/v2/alerts", body, self.timeout)
        self.failures += not ok
        return ok


def build_notifiers(config: AlertConfig) -> list[Notifier]:
    out: list[Notifier] = []
    for name in config.notifiers:
        if name == "log":
            out.append(LogNotifier())
        elif name == "webhook":
            if config.webhook_url is None:
                raise ConfigError("alert.webhook_url: required when 'webhook' is a notifier")
            out.append(WebhookNotifier(str(config.webhook_url)))
        elif name == "alertmanager":
            if config.alertmanager_url is None:
                raise ConfigError("alert.alertmanager_url: required for 'alertmanager'")
            out.append(AlertmanagerNotifier(str(config.alertmanager_url)))
        else:
            raise ConfigError(
                f"alert.notifiers: unknown notifier {name!r} (log, webhook, alertmanager)"
            )
    return out
