"""The feedback loop through the API: applied actions judged by their effect."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from served import ADMIN_TOKEN, READ_TOKEN, served_acting

from shadowcast.api.app import build_app
from shadowcast.api.state import ApiState
from shadowcast.forecast.arena import read_versions

READ = {"Authorization": f"Bearer {READ_TOKEN}"}


@pytest.fixture(scope="module")
def acting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiState]:
    st = served_acting(tmp_path_factory.mktemp("acting"))
    yield st
    st.store.close()


@pytest.fixture
def client(acting: ApiState) -> TestClient:
    return TestClient(build_app(acting, web=False))


def test_actions_give_predicted_and_realised_mlu_per_applied_action(
    client: TestClient, acting: ApiState
) -> None:
    r = client.get("/api/v1/actions", params={"hours": 24 * 30}, headers=READ)
    assert r.status_code == 200, r.text
    doc = r.json()
    rows = doc["actions"]
    assert rows and doc["judged"] >= len(rows)
    svc = acting.service
    assert svc is not None
    applied = {d.plan.plan_id for d in svc.decisions if d.action == "applied" and d.plan}
    assert {a["plan_id"] for a in rows} <= applied
    assert {a["horizon"] for a in rows} <= set(svc.s.horizons)
    issued = [a["issued"] for a in rows]
    assert issued == sorted(issued, reverse=True)  # newest first
    # each figure is the stored rows' own: max over links of load / capacity
    tab = acting.store.read("action_outcomes").to_pandas()
    for a in rows[:5]:
        sel = tab[(tab.plan_id == a["plan_id"]) & (tab.horizon_s == a["horizon_s"])]
        assert len(sel) == a["links"] == len(svc.link_names)
        real = (sel.realised_mbps / sel.capacity_mbps).max()
        pred = (sel.predicted_mbps / sel.capacity_mbps).max()
        assert a["mlu_realised"] == pytest.approx(real, abs=1e-4)
        assert a["mlu_predicted"] == pytest.approx(pred, abs=1e-4)
        assert a["target"] >= a["issued"]
    assert all(np.isfinite(a["mlu_error"]) for a in rows)


def test_actions_window_counts_back_from_the_service_time(client: TestClient) -> None:
    every = client.get("/api/v1/actions", params={"hours": 24 * 30}, headers=READ).json()
    recent = client.get("/api/v1/actions", params={"hours": 6}, headers=READ).json()
    assert len(recent["actions"]) < len(every["actions"])
    assert all(a["target"] >= min(r["target"] for r in recent["actions"])
               for a in recent["actions"])  # fmt: skip
    cut = np.datetime64(recent["now"][:19]) - np.timedelta64(6, "h")
    assert all(np.datetime64(a["target"][:19]) >= cut for a in recent["actions"])


@pytest.mark.parametrize("hours", ["0", "-1", "99999", "x"])
def test_actions_bad_window_is_422_naming_it(client: TestClient, hours: str) -> None:
    r = client.get("/api/v1/actions", params={"hours": hours}, headers=READ)
    assert r.status_code == 422 and "hours" in r.json()["error"]


def test_actions_need_a_token(client: TestClient) -> None:
    assert client.get("/api/v1/actions").status_code == 401


def test_alert_tuning_shows_the_curve_of_the_latest_tuning(
    client: TestClient, acting: ApiState
) -> None:
    r = client.get("/api/v1/alerts/tuning", headers=READ)
    assert r.status_code == 200, r.text
    doc = r.json()
    svc = acting.service
    assert svc is not None and svc.s.tuner is not None
    rule = svc.s.rule
    assert doc["policy"] == "probability" and doc["tuned"] == svc.s.tuner.tuned
    tab = acting.store.read("alert_tuning")
    latest = tab.column("time").cast("int64").to_numpy().max() // 1000
    for c in rule.class_names:  # type: ignore[attr-defined]
        got = doc["classes"][c]
        assert got["p"] == rule.p.get(c, rule.default_p)  # type: ignore[attr-defined]
        assert got["tuned_at"][:19] == str(np.datetime64(int(latest), "s"))
        assert len(got["curve"]["p"]) == len(svc.s.tuner.grid)
    assert len(doc["history"]) == int((tab.column("chosen").to_numpy() == 1).sum())


# -- model rollback, now (these change the acting service's champion: last in the module) --


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _rollback_target(client: TestClient) -> dict[str, Any]:
    doc = client.get("/api/v1/models", headers=READ).json()
    older = [v for v in doc["versions"] if not v["champion"]]
    assert older, doc
    return dict(older[0])


def test_model_rollback_needs_admin_a_known_version_and_a_valid_body(
    client: TestClient, acting: ApiState
) -> None:
    before = acting.store.count("audit")
    r = client.post("/api/v1/models/rollback", headers=READ, json={"version": 1})
    assert r.status_code == 403
    r = client.post("/api/v1/models/rollback", headers=ADMIN, json={"version": 9999})
    assert r.status_code == 404 and "no model version 9999" in r.json()["error"]
    r = client.post("/api/v1/models/rollback", headers=ADMIN, json={"version": "one"})
    assert r.status_code == 422 and "version" in r.json()["error"]
    rows = acting.store.read("audit").sort_by("time").to_pylist()[before:]
    assert [(x["token"], x["action"], x["status"]) for x in rows] == [
        ("noc", "rollback", "forbidden"), ("ops", "model-rollback", "refused")]  # fmt: skip


def test_model_rollback_through_the_api_takes_effect_now(
    client: TestClient, acting: ApiState
) -> None:
    svc = acting.service
    assert svc is not None
    fc = svc.s.forecast
    target = _rollback_target(client)
    old = fc.version
    r = client.post("/api/v1/models/rollback", headers=ADMIN,
                    json={"version": target["version"], "reason": "bad retrain"})  # fmt: skip
    assert r.status_code == 200, r.text
    doc = r.json()
    # the running service's champion changed now, not at its next checkpoint
    assert doc["version"] == fc.version == old + 1 and doc["previous"] == old
    assert fc.model_name == target["model"] == doc["model"]
    assert fc.predict() is not None and fc.predict().model == target["model"]  # type: ignore[union-attr]
    events = acting.store.read("model_events").to_pylist()  # flushed with it
    last = [e for e in events if e["event"] == "rollback"][-1]
    assert f"to v{target['version']}" in last["reason"] and "ops" in last["reason"]
    saved = read_versions(svc.state_dir / "models")  # and saved: a restart keeps it
    assert saved["version"] == fc.version and "rollback_to" not in saved
    audit = acting.store.read("audit").sort_by("time").to_pylist()[-1]
    assert (audit["token"], audit["action"], audit["target"], audit["status"]) == (
        "ops", "model-rollback", f"v{target['version']}", "ok")  # fmt: skip


def test_the_models_command_rolls_back_through_a_running_api(
    acting: ApiState, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from shadowcast.api.server import ApiServer
    from shadowcast.cli import app

    svc = acting.service
    assert svc is not None
    server = ApiServer(acting, acting.settings.api)
    url = server.start()
    try:
        client = TestClient(build_app(acting, web=False))
        target = _rollback_target(client)
        base = ["forecast", "models", "rollback", str(target["version"]), "--api", url]
        monkeypatch.delenv("SHADOWCAST_API_TOKEN", raising=False)
        res = CliRunner().invoke(app, base)
        assert res.exit_code == 2 and "401" in res.output and "SHADOWCAST_API_TOKEN" in res.output
        res = CliRunner().invoke(app, [*base, "--json", "--reason", "cli"],
                                 env={"SHADOWCAST_API_TOKEN": ADMIN_TOKEN})  # fmt: skip
        assert res.exit_code == 0, res.output
        doc = json.loads(res.output.strip().splitlines()[-1])  # the server logs before it
        assert doc["applied"] and doc["version"] == svc.s.forecast.version
        assert svc.s.forecast.model_name == target["model"]
        res = CliRunner().invoke(app, ["forecast", "models", "rollback", "9999", "--api", url],
                                 env={"SHADOWCAST_API_TOKEN": ADMIN_TOKEN})  # fmt: skip
        assert res.exit_code == 2 and "no model version 9999" in res.output
    finally:
        server.stop()
    res = CliRunner().invoke(app, ["forecast", "models", "rollback", "1", "--api", url])
    assert res.exit_code == 2 and "did not answer" in res.output
    res = CliRunner().invoke(app, ["forecast", "models", "rollback", "1", "--api", "ftp://x"])
    assert res.exit_code == 2 and "not an http(s)" in res.output
