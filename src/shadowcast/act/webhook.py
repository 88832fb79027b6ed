"""Webhook actuator: POST the plan JSON to a controller URL (urllib, no extra deps).

Body: ``{"action": "apply"|"rollback", "dry_run": bool, "plan": {...}}``. Any non-2xx
answer, timeout or connection error raises ActuationError; an apply that fails sends
nothing further (the controller did not accept it, so there is nothing to roll back).
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from typing import Any

from shadowcast.act.base import ApplyResult
from shadowcast.errors import ActuationError
from shadowcast.plan.base import Plan

log = logging.getLogger(__name__)


class WebhookActuator:
    name = "webhook"

    def __init__(
        self, url: str, *, timeout_s: float = 5.0, headers: dict[str, str] | None = None
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise ActuationError(f"webhook url must be http(s), got {url!r}")
        self.url = url
        self.timeout_s = timeout_s
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.last: Plan | None = None
        self.previous: Plan | None = None

    def _post(self, body: dict[str, Any]) -> str:
        req = urllib.request.Request(
            self.url, data=json.dumps(body).encode(), headers=self.headers, method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                text: str = resp.read().decode("utf-8", "replace")
                return text
        except urllib.error.HTTPError as exc:
            raise ActuationError(f"webhook {self.url} answered {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            raise ActuationError(f"webhook {self.url} unreachable: {exc}") from exc

    def apply(self, plan: Plan, *, dry_run: bool = True) -> ApplyResult:
        answer = self._post({"action": "apply", "dry_run": dry_run, "plan": plan.to_dict()})
        if not dry_run:
            self.previous, self.last = self.last, plan
        return ApplyResult(
            plan.plan_id,
            self.name,
            dry_run,
            "dry-run" if dry_run else "ok",
            (f"POST {self.url}",),
            answer[:2000],
        )

    def rollback(self) -> ApplyResult:
        if self.last is None:
            return ApplyResult("", self.name, False, "ok", (), "nothing to roll back")
        body: dict[str, Any] = {
            "action": "rollback",
            "plan_id": self.last.plan_id,
            "restore": self.previous.to_dict() if self.previous else None,
        }
        answer = self._post(body)
        pid = self.last.plan_id
        self.last, self.previous = self.previous, None
        return ApplyResult(pid, self.name, False, "ok", (f"POST {self.url} rollback",), answer)
