"""The REST API on a served replay: tokens and scopes, rates, bodies, audit, and the data."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError
from served import ADMIN_TOKEN, READ_TOKEN, token_settings

from shadowcast.api.app import build_app
from shadowcast.api.config import ApiConfig
from shadowcast.api.state import ApiState
from shadowcast.plan.cycle import Decision

READ = {"Authorization": f"Bearer {READ_TOKEN}"}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def client(state: ApiState) -> TestClient:
    return TestClient(build_app(state, web=False))


def _audit(state: ApiState) -> list[dict[str, Any]]:
    return state.store.read("audit").sort_by("time").to_pylist()


def _proposed(client: TestClient) -> str:
    rows = client.get("/api/v1/plans", headers=READ).json()["plans"]
    return next(r["plan_id"] for r in rows if r["state"] == "proposed")


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer nope"}, {"Authorization": f"Basic {READ_TOKEN}"},
     {"Authorization": "Bearer"}],
)  # fmt: skip
def test_no_or_bad_token_is_401(client: TestClient, headers: dict[str, str]) -> None:
    r = client.get("/api/v1/links", headers=headers)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert "token" in r.json()["error"]


def test_read_token_reads_but_cannot_act(client: TestClient, state: ApiState) -> None:
    assert client.get("/api/v1/links", headers=READ).status_code == 200
    pid = _proposed(client)
    before = len(_audit(state))
    for path in (f"/api/v1/plans/{pid}/approve", f"/api/v1/plans/{pid}/rollback", "/api/v1/plans"):
        r = client.post(path, headers=READ, json={"reason": "try"})
        assert r.status_code == 403, path
    rows = _audit(state)[before:]
    assert [(r["token"], r["status"]) for r in rows] == [("noc", "forbidden")] * 3
    assert client.get("/api/v1/audit", headers=READ).status_code == 403


def test_admin_rejects_approves_and_rolls_back_every_one_audited(
    client: TestClient, state: ApiState
) -> None:
    before = len(_audit(state))
    pid = _proposed(client)
    r = client.post(f"/api/v1/plans/{pid}/reject", headers=ADMIN, json={"reason": "not now"})
    assert r.status_code == 200 and r.json()["state"] == "rejected"
    assert client.post(f"/api/v1/plans/{pid}/approve", headers=ADMIN).status_code == 409
    # an older proposal is superseded by the newest: only the newest can be approved
    plans = client.get("/api/v1/plans", headers=READ).json()["plans"]
    assert sum(p["state"] == "proposed" for p in plans) <= 1
    # the newest was rejected: the loop proposes again (here by hand, an older plan anew)
    svc = state.service
    assert svc is not None
    old = next(d.plan for d in reversed(svc.decisions) if d.action == "proposed" and d.plan)
    plan = dataclasses.replace(old, plan_id="fresh0001")
    svc.decisions.append(Decision(svc.decisions[-1].time_s + 1, "proposed", "x", 1.0, plan))
    assert client.post(f"/api/v1/plans/{old.plan_id}/approve", headers=ADMIN).status_code == 409
    r = client.post(f"/api/v1/plans/{plan.plan_id}/approve", headers=ADMIN)
    assert r.status_code == 200 and r.json()["state"] == "applied", r.text
    assert client.get(f"/api/v1/plans/{plan.plan_id}", headers=READ).json()["state"] == "applied"
    r = client.post(f"/api/v1/plans/{plan.plan_id}/rollback", headers=ADMIN, json={})
    assert r.status_code == 200 and r.json()["state"] == "rolled-back", r.text
    assert client.post(f"/api/v1/plans/{plan.plan_id}/rollback", headers=ADMIN).status_code == 409
    # a whole plan (as `shadowcast plan --json` writes it) applied through the checker
    r = client.post("/api/v1/plans", headers=ADMIN, json=plan.to_dict())
    assert r.status_code == 200 and r.json()["state"] == "applied", r.text
    rows = [(r["token"], r["action"], r["target"], r["status"]) for r in _audit(state)[before:]]
    assert rows == [
        ("ops", "reject", pid, "ok"),
        ("ops", "approve", pid, "refused"),
        ("ops", "approve", old.plan_id, "refused"),
        ("ops", "approve", plan.plan_id, "ok"),
        ("ops", "rollback", plan.plan_id, "ok"),
        ("ops", "rollback", plan.plan_id, "refused"),
        ("ops", "apply", plan.plan_id, "ok"),
    ]
    listed = client.get("/api/v1/audit", headers=ADMIN).json()["rows"]
    assert listed[0]["action"] == "apply" and listed[0]["token"] == "ops"


def test_malformed_json_is_422_naming_the_field(client: TestClient) -> None:
    pid = "any"  # bodies are checked before the plan is looked up
    r = client.post(f"/api/v1/plans/{pid}/reject", headers=ADMIN, json={"reason": 5})
    assert r.status_code == 422 and r.json()["fields"] == ["body.reason"]
    assert r.json()["error"].startswith("body.reason:")
    r = client.post(f"/api/v1/plans/{pid}/reject", headers=ADMIN, json={"why": "x"})
    assert r.status_code == 422 and "body.why" in r.json()["error"]
    r = client.post("/api/v1/plans", headers=ADMIN, json={"plan_id": "p", "topology": "ring"})
    assert r.status_code == 422 and "body.issued" in r.json()["fields"]
    r = client.post(
        f"/api/v1/plans/{pid}/reject",
        headers={**ADMIN, "Content-Type": "application/json"},
        content=b'{"reason": ',
    )
    assert r.status_code == 422 and r.json()["error"].startswith("body: invalid JSON")
    r = client.get("/api/v1/forecasts/links/A->B?hours=abc", headers=READ)
    assert r.status_code == 422 and r.json()["fields"] == ["query.hours"]


def test_body_limit_and_unknown_things(client: TestClient) -> None:
    big = {"reason": "x" * 70_000}
    r = client.post("/api/v1/plans/x/reject", headers=ADMIN, json=big)
    assert r.status_code == 413
    assert client.get("/api/v1/forecasts/links/X->Y", headers=READ).status_code == 404
    assert client.get("/api/v1/plans/nope", headers=READ).status_code == 404
    r = client.get("/api/v1/links", headers={**READ, "Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers  # CORS off by default
    assert r.headers["x-content-type-options"] == "nosniff"


def test_rate_limit_per_token(state: ApiState) -> None:
    slow = ApiState(token_settings(rate_per_minute=5), state.store, state.service)
    c = TestClient(build_app(slow, web=False))
    codes = [c.get("/api/v1/health", headers=READ).status_code for _ in range(7)]
    assert codes == [200] * 5 + [429] * 2
    r = c.get("/api/v1/health", headers=READ)
    assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
    assert c.get("/api/v1/health", headers=ADMIN).status_code == 200  # its own bucket


def test_the_data(client: TestClient, state: ApiState) -> None:
    h = client.get("/api/v1/health", headers=READ).json()
    assert h["status"] == "ready" and "rollup" in h["stages"]
    links = client.get("/api/v1/links", headers=READ).json()
    ab = next(r for r in links["links"] if r["name"] == "A->B")
    assert set(ab["predicted"]) == {"15m", "1h"} and 0 <= ab["predicted"]["1h"]["p_exceed"] <= 1
    assert ab["predicted"]["1h"]["upper"]["95"] >= ab["predicted"]["1h"]["util"]
    assert ab["runout"] is not None and ab["util_now"] is not None
    f = client.get("/api/v1/forecasts/links/A->B?horizon=1h", headers=READ).json()
    assert len(f["actual"]["util"]) == 96 and f["past"]["upper_95"] and f["forecast"]["upper_80"]
    c = client.get("/api/v1/forecasts/classes/medium", headers=READ).json()
    fo = c["forecast"]
    assert all(
        lo <= m <= up for lo, m, up in zip(fo["lower_80"], fo["mbps"], fo["upper_80"], strict=True)
    )
    a = client.get("/api/v1/alerts", headers=READ).json()
    assert a["history"] and a["history"][0]["labels"]["team"] == "west"
    assert {r["outcome"] for r in a["history"]} <= {"confirmed", "not reached", "pending"}
    assert client.get("/api/v1/tunnels", headers=READ).json()["tunnels"]
    assert client.get("/api/v1/accuracy", headers=READ).json()["summary"]
    apps = client.get("/api/v1/applications?last=1h", headers=READ).json()["rows"]
    assert {r["app"] for r in apps} >= {"NetFlix", "Zoom"}
    s = client.get("/api/v1/settings", headers=READ).json()
    assert {t["sha256"] for t in s["api"]["tokens"]} == {"<redacted>"}
    assert client.get("/docs").status_code == 200
    assert "/api/v1/links" in client.get("/openapi.json").json()["paths"]


def test_no_tokens_means_loopback_only() -> None:
    assert ApiConfig().tokens == [] and ApiConfig().host == "127.0.0.1"
    with pytest.raises(ValidationError, match="loopback"):
        ApiConfig(listen="0.0.0.0:8650")
    h = hashlib.sha256(b"t").hexdigest()
    assert ApiConfig(listen="0.0.0.0:8650", tokens=[{"name": "a", "sha256": h}]).port == 8650
    with pytest.raises(ValidationError, match="sha256"):
        ApiConfig(tokens=[{"name": "a", "sha256": "abc"}])
    with pytest.raises(ValidationError, match="unique"):
        ApiConfig(tokens=[{"name": "a", "sha256": h}, {"name": "a", "sha256": h}])
