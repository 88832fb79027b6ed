from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

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
    signed: list[tuple[Any, str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Sink.received.append((self.path, json.loads(body)))
        if "X-Shadowcast-Signature" in self.headers:
            sig = self.headers["X-Shadowcast-Signature"]
            _Sink.signed.append((json.loads(body), sig, body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def sink() -> Iterator[str]:
    _Sink.received = []
    _Sink.signed = []
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


def test_the_service_rule_takes_alert_clear_ratio(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """alert.clear_ratio reaches the living service's rule (and a lower ratio re-arms a link
    later: fewer alerts on the same predictions)."""
    import numpy as np

    from shadowcast.clock import SimClock
    from shadowcast.records import Link, Topology
    from shadowcast.service.wiring import Environment, build_service
    from shadowcast.settings import load_settings
    from shadowcast.store.memory import MemoryStore

    topo = Topology("ab", ("A", "B"), (Link("A", "B", 1e9), Link("B", "A", 1e9)))
    s = load_settings(None, environ={})
    s = s.model_copy(update={"alert": s.alert.model_copy(update={"clear_ratio": 0.5})})
    env = Environment(topology=topo, store=MemoryStore(), clock=SimClock(0), state_dir=tmp_path)
    svc = build_service(s, env)
    assert svc.s.rule.clear_ratio == 0.5
    counts = []
    for ratio in (1.0, 0.5):
        rule = CapacityRule(["A->B"], 0.8, 1, 300, clear_ratio=ratio)
        t = np.datetime64(0, "s")
        n = 0
        for u in [0.85, 0.7, 0.85, 0.3, 0.85]:
            n += len(rule.evaluate(t, np.array([[u]])))
        counts.append(n)
    assert counts == [3, 2]


def test_rule_hands_back_what_cleared_and_keeps_what_fires() -> None:
    rule = CapacityRule(["l1", "l2"], threshold=0.9, within_steps=2, step_s=300)
    rule.evaluate(T0, np.array([[0.95, 0.95], [0.5, 0.5]]))
    assert list(rule.firing) == [0] and rule.resolved == []
    rule.evaluate(T0, np.array([[0.88, 0.88], [0.5, 0.5]]))  # under threshold, above clear
    assert list(rule.firing) == [0] and rule.resolved == []
    rule.evaluate(T0, np.array([[0.5, 0.5], [0.5, 0.5]]))
    assert [a.subject for a in rule.resolved] == ["l1"] and rule.firing == {}


def test_teams_first_glob_wins() -> None:
    from shadowcast.alert.stage import team_of

    teams = {"fra->*": "core", "*->ams": "edge", "*": "noc"}
    assert team_of("fra->ams", teams) == "core"
    assert team_of("lon->ams", teams) == "edge"
    assert team_of("lon->par", teams) == "noc"
    assert team_of("x", {}) == "unassigned"
    with pytest.raises(ValidationError, match="teams"):
        AlertConfig(teams={"": "x"})


def test_webhook_body_is_signed_and_resolutions_follow(
    sink: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from shadowcast.alert.signing import HEADER, verify
    from shadowcast.alert.stage import deliver

    secret = b"s3cret-for-the-test"
    monkeypatch.setenv("SHADOWCAST_WEBHOOK_SECRET", secret.decode())
    (n,) = build_notifiers(AlertConfig(notifiers=["webhook"], webhook_url=sink + "/hook"))
    assert isinstance(n, WebhookNotifier) and n.secret == secret
    rule = CapacityRule(["a->b"], threshold=0.9, within_steps=2, step_s=300)
    deliver(rule, [n], T0, np.array([[0.95, 1.0]]), teams={"a->*": "west"})
    deliver(rule, [n], T0 + 300, np.array([[0.2, 0.2]]))
    (b1, h1, raw), (b2, _, _) = _Sink.signed
    assert b1["status"] == "firing" and b1["labels"] == {"team": "west"}
    assert b2["status"] == "resolved" and b2["resolved"].startswith("2026-01-01T00:05")
    assert verify(secret, h1, raw)  # what the receiver got is what was signed
    assert not verify(b"other", h1, raw) and not verify(secret, h1, raw + b" ")
    assert not verify(secret, h1, raw, now=int(h1.split(",")[0][2:]) + 3600)  # too old
    assert HEADER == "X-Shadowcast-Signature"
