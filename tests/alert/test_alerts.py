from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import numpy as np
import pytest
from pydantic import ValidationError

from shadowcast.alert.config import AlertConfig
from shadowcast.alert.notifiers import (
    AlertmanagerNotifier,
    WebhookNotifier,
    build_notifiers,
)
from shadowcast.alert.rules import CapacityRule
from shadowcast.errors import ConfigError

T0 = np.datetime64("2026-01-01T00:00:00", "s")


def test_rule_fires_once_with_lead_time_and_clears_with_hysteresis() -> None:
    rule = CapacityRule(["l1", "l2"], threshold=0.9, within_steps=4, step_s=300)
    pred = np.array([[0.5, 0.7, 0.95, 0.99], [0.1, 0.1, 0.1, 0.1]])
    first = rule.evaluate(T0, pred)
    assert [a.subject for a in first] == ["l1"]
    assert first[0].lead_s == 900 and first[0].value == pytest.approx(0.99)
    assert first[0].at == T0 + np.timedelta64(900, "s")
    assert rule.evaluate(T0, pred) == []  # still active: no repeat
    rule.evaluate(T0, np.full((2, 4), 0.87))  # below threshold, above clear level
    assert rule.evaluate(T0, pred) == []
    rule.evaluate(T0, np.full((2, 4), 0.5))  # cleared
    again = rule.evaluate(T0, pred)
    assert [a.subject for a in again] == ["l1"]
    beyond = CapacityRule(["l1"], threshold=0.9, within_steps=2, step_s=300)
    assert beyond.evaluate(T0, pred[:1]) == []  # crossing lies beyond the window


class _Sink(BaseHTTPRequestHandler):
    received: list[tuple[str, object]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Sink.received.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[str]:
    _Sink.received = []
    srv = HTTPServer(("127.0.0.1", 0), _Sink)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def test_webhook_and_alertmanager_payloads(sink: str) -> None:
    rule = CapacityRule(["a->b"], threshold=0.9, within_steps=2, step_s=300)
    alert = rule.evaluate(T0, np.array([[0.95, 1.2]]))[0]
    assert alert.severity == "critical"
    assert WebhookNotifier(sink + "/hook").send(alert)
    assert AlertmanagerNotifier(sink).send(alert)
    (p1, b1), (p2, b2) = _Sink.received
    assert p1 == "/hook" and isinstance(b1, dict) and b1["subject"] == "a->b"
    assert p2 == "/api/v2/alerts" and isinstance(b2, list)
    assert b2[0]["labels"]["link"] == "a->b" and b2[0]["startsAt"].startswith("2026-01-01")


def test_delivery_failure_is_counted_not_raised() -> None:
    n = WebhookNotifier("http://127.0.0.1:9/none", timeout=0.5)
    rule = CapacityRule(["x"], within_steps=1)
    assert not n.send(rule.evaluate(T0, np.array([[1.0]]))[0])
    assert n.failures == 1


def test_build_notifiers_validates() -> None:
    assert [n.name for n in build_notifiers(AlertConfig())] == ["log"]
    with pytest.raises(ConfigError, match="webhook_url"):
        build_notifiers(AlertConfig(notifiers=["webhook"]))
    with pytest.raises(ValidationError, match="notifiers"):  # refused when the settings load
        AlertConfig(notifiers=["pager"])  # type: ignore[list-item]


@pytest.mark.slow
def test_replay_applies_alert_clear_ratio() -> None:
    """alert.clear_ratio reaches the replay's rule: a lower ratio re-arms links later, so it
    never raises more alerts, and here fewer."""
    from shadowcast.datasets.synthetic import synthetic_dataset
    from shadowcast.forecast.registry import make_model
    from shadowcast.replay.config import ReplayConfig
    from shadowcast.replay.run import replay
    from shadowcast.store.memory import MemoryStore

    syn = synthetic_dataset(weeks=0.5, seed=1)
    cfg = ReplayConfig(models=["persistence"], warmup="1d", horizons=["15m"], levels=[80.0])
    counts = []
    for ratio in (1.0, 0.5):
        res = replay(
            syn.topology,
            syn.demands,
            MemoryStore(),
            cfg,
            lambda name, step: make_model(name, horizons=cfg.horizons),
            rule_threshold=0.8,
            rule_clear_ratio=ratio,
        )
        counts.append(len(res.alerts))
    assert counts[0] > counts[1] > 0
