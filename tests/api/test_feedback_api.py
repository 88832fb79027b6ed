"""The feedback loop through the API: applied actions judged by their effect."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from served import READ_TOKEN, served_acting

from shadowcast.api.app import build_app
from shadowcast.api.state import ApiState

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
