"""The alert tuner's choices in the store (``alert_tuning``) and through the API
(``GET /api/v1/alerts/tuning``): the living service on a series where p gets chosen."""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from shadowcast.alert.policy import ProbabilityRule
from shadowcast.alert.tuner import PolicyTuner, p_grid
from shadowcast.api.app import build_app
from shadowcast.api.state import ApiState
from shadowcast.replay.driver import run_replay
from shadowcast.store.config import StoreConfig, open_store
from shadowcast.store.schema import ALERT_TUNING_SCHEMA
from shadowcast.store.shared import SharedStore

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_policy_service import _settings, _source  # noqa: E402

TOKEN = "tuning-read-token-0123"


def test_the_tuning_table_is_the_curve_and_the_choice() -> None:
    tuner = PolicyTuner(["a", "b"], 4, 0.9, 0.95, target_precision=0.5, min_alerts=1,
                        grid=p_grid(0.1, 0.9, 0.2))  # fmt: skip
    assert tuner.table(0).num_rows == 0  # never tuned
    for t in range(40):  # link a: P 0.8 every 10 steps, over 2 steps later; b: never over
        sig = np.array([0.8 if t % 10 == 0 else 0.0, 0.0])
        tuner.record(sig, np.array([1.0 if t % 10 == 2 else 0.0, 0.0]))
    chosen = tuner.tune()
    tab = tuner.table(3600)
    assert tab.schema == ALERT_TUNING_SCHEMA
    assert tab.num_rows == sum(len(c) for c in tuner.curves.values()) == 2 * 5
    rows = tab.to_pylist()
    assert {r["time"].timestamp() for r in rows} == {3600}
    a = [r for r in rows if r["link_class"] == "a"]
    assert chosen["a"] == 0.1
    assert [r["p"] for r in a if r["chosen"]] == [0.1] and {r["chosen_p"] for r in a} == {0.1}
    assert a[0]["precision"] == 1.0 and a[0]["alerts"] >= 1
    b = [r for r in rows if r["link_class"] == "b"]  # no alert at all: NaN, the pooled p
    assert all(np.isnan(r["precision"]) for r in b)
    assert {r["chosen_p"] for r in b} == {chosen["b"]}


def test_the_service_stores_each_tuning_and_the_api_shows_p_and_its_curve(
    tmp_path: Path,
) -> None:
    s = _settings()
    tokens = [
        {"name": "noc", "scope": "read", "sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}
    ]
    api = s.api.model_validate({"listen": "127.0.0.1:0", "tokens": tokens})
    settings = s.model_copy(update={"api": api})
    store = SharedStore(open_store(StoreConfig(data_dir=tmp_path, path="replay.duckdb")))
    try:
        run = run_replay(settings, _source(), store, tmp_path / "state", ipfix=False,
                         mode="observe")  # fmt: skip
        tab = store.read("alert_tuning")
        rule, tuner = run.service.s.rule, run.service.s.tuner
        assert isinstance(rule, ProbabilityRule) and tuner is not None
        grid = len(tuner.grid)
        t = tab.column("time").cast("int64").to_numpy() // 1000
        cls = np.asarray(tab.column("link_class").to_pylist())
        times = np.unique(t)
        assert len(times) >= 3 and np.all(np.diff(times) % (6 * 3600) == 0)  # every 6h
        for when in times:
            for c in np.unique(cls[t == when]):
                sel = (t == when) & (cls == c)
                assert sel.sum() == grid  # the whole curve
                chosen = tab.filter(sel).to_pandas()
                picked = chosen[chosen.chosen == 1]
                if np.isfinite(chosen.chosen_p.iloc[0]):
                    assert len(picked) == 1
                    assert picked.p.iloc[0] == pytest.approx(chosen.chosen_p.iloc[0])
        last = tab.filter((t == times[-1]) & (cls == "thin")).to_pandas()
        assert last.chosen_p.iloc[0] == tuner.chosen["thin"] == rule.p["thin"]

        state = ApiState(settings, store)
        state.attach(run.service)
        client = TestClient(build_app(state, web=False))
        r = client.get("/api/v1/alerts/tuning", params={"hours": 24 * 30},
                       headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        assert r.status_code == 200, r.text
        doc = r.json()
        assert doc["policy"] == "probability" and doc["target_precision"] == 0.85
        thin = doc["classes"]["thin"]
        assert thin["p"] == rule.p["thin"] and thin["curve"]["p"] == sorted(thin["curve"]["p"])
        assert len(thin["curve"]["p"]) == grid
        i = thin["curve"]["p"].index(thin["p"])
        assert thin["precision"] == thin["curve"]["precision"][i] >= 0.85
        assert thin["alerts"] == thin["curve"]["alerts"][i] >= 1
        assert doc["classes"]["<=1G"]["p"] == rule.p.get("<=1G", rule.default_p)
        hist = doc["history"]
        assert hist and [h["time"] for h in hist] == sorted((h["time"] for h in hist), reverse=True)
        latest = next(h for h in hist if h["class"] == "thin")
        assert latest["p"] == thin["p"] and latest["time"] == thin["tuned_at"]
        assert len(hist) == int((tab.column("chosen").to_numpy() == 1).sum())
        bad = client.get("/api/v1/alerts/tuning", params={"hours": "0"},
                         headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
        assert bad.status_code == 422 and "hours" in bad.json()["error"]
    finally:
        store.close()
