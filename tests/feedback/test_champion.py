"""Champion and challengers: scored by the same ledger, promoted only when better by a margin
over a window, every change logged, versions persisted and rolled back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shadowcast.errors import ForecastError
from shadowcast.feedback.champion import Referee, model_events_table
from shadowcast.feedback.ledger import Ledger
from shadowcast.forecast.arena import ArenaCycle, read_versions, request_rollback
from shadowcast.forecast.registry import make_model
from shadowcast.store.schema import MODEL_EVENTS_SCHEMA

STEP = 300
OD = (("a", "b"), ("b", "a"), ("a", "c"))
T0 = 1_700_000_100


def _rows(t: int, errs: dict[str, float]) -> list[dict[str, object]]:
    return [
        {"time": t, "kind": "od", "model": m, "abs_err": e, "abs_actual": 100.0}
        for m, e in errs.items()
    ]


def test_a_worse_challenger_is_never_promoted() -> None:
    ref = Referee(window_steps=12, margin=0.05)
    rng = np.random.default_rng(0)
    for t in range(500):
        ref.add(_rows(t, {"champ": 10 + rng.random(), "worse": 10.5 + rng.random()}))
        assert ref.decide("champ") is None


def test_a_slightly_better_challenger_within_the_margin_is_not_promoted() -> None:
    ref = Referee(window_steps=12, margin=0.05)
    for t in range(100):
        ref.add(_rows(t, {"champ": 10.0, "close": 9.7}))  # 3 % better: under the margin
        assert ref.decide("champ") is None


def test_a_better_challenger_is_promoted_once_the_window_is_full() -> None:
    ref = Referee(window_steps=12, margin=0.05, min_share=1.0)
    decided = None
    for t in range(30):
        ref.add(_rows(t, {"champ": 10.0, "better": 8.0, "worse": 12.0}))
        v = ref.decide("champ")
        if v is not None:
            decided = (t, v)
            break
    assert decided is not None
    t, v = decided
    assert t == 11  # the 12th step: the window is full
    assert v.challenger == "better" and v.champion_score == pytest.approx(0.1)
    assert v.challenger_score == pytest.approx(0.08) and "20.0% better" in v.reason
    ref.reset()
    assert ref.decide("better") is None


def _series(T: int) -> np.ndarray:
    """A square daily wave: seasonal naive is right, persistence misses every edge."""
    t = np.arange(T)[:, None]
    on = ((t % 288) >= 100) & ((t % 288) < 200)
    return 10.0 + 40.0 * on + np.zeros((T, len(OD)))


def _arena(champion: str, challenger: str, **kw: object) -> ArenaCycle:
    opts = {"horizons": ["15m", "1h"]}
    return ArenaCycle(
        lambda: make_model(champion, **opts),
        champion,
        ("high",),
        OD,
        STEP,
        horizon_steps=12,
        warmup_s=2 * 86400,
        retrain_every_s=None,
        keep_s=3 * 86400,
        challengers={challenger: lambda: make_model(challenger, **opts)},
        **kw,  # type: ignore[arg-type]
    )


def _run(arena: ArenaCycle, steps: int, window: int) -> tuple[Referee, list[int]]:
    ledger = Ledger({"15m": 3, "1h": 12}, STEP)
    ref = Referee(window_steps=window, margin=0.05)
    y = _series(steps)
    promoted_at = []
    for i in range(steps):
        t = T0 + i * STEP
        ledger.observe("od", t, y[i])
        arena.observe(t, {"high": y[i]})
        fc = arena.predict()
        if fc is None:
            continue
        end = t + STEP
        f = fc.by_class["high"]
        ledger.issue("od", end, fc.model, f.mean, f.lower, f.upper, y[i])
        for name, s in arena.predict_shadow(arena.horizon_steps).items():
            ledger.issue("od", end, name, s.mean, s.lower, s.upper, y[i])
        ref.add(ledger.take_rows())
        v = ref.decide(arena.model_name)
        if v is not None:
            arena.promote(v.challenger, end, v.reason, v.figures())
            ref.reset()
            promoted_at.append(i)
    return ref, promoted_at


def test_the_better_family_takes_over_within_the_window_and_events_are_logged() -> None:
    arena = _arena("persistence", "seasonal_naive")
    window = 144  # half a day
    _, promoted = _run(arena, 576 + 300, window)
    assert promoted and promoted[0] - 576 <= window + 12  # fitted at 576: window + horizon
    assert arena.model_name == "seasonal_naive" and "persistence@v1" in arena.shadow
    events = arena.take_events()
    kinds = [e["event"] for e in events]
    assert kinds[:1] == ["fit"] and "promote" in kinds and "demote" in kinds
    promo = next(e for e in events if e["event"] == "promote")
    assert promo["challenger_score"] < promo["champion_score"]
    table = model_events_table(events)
    assert table.schema == MODEL_EVENTS_SCHEMA and table.num_rows == len(events)


def test_the_worse_family_never_takes_over() -> None:
    arena = _arena("seasonal_naive", "persistence")
    _, promoted = _run(arena, 576 + 300, 144)
    assert promoted == [] and arena.model_name == "seasonal_naive"


def test_versions_are_saved_listed_and_rolled_back(tmp_path: Path) -> None:
    arena = _arena("persistence", "seasonal_naive")
    _run(arena, 576 + 300, 144)
    folder = tmp_path / "models"
    arena.save(folder)
    versions = read_versions(folder)["versions"]
    assert [v["version"] for v in versions] == [1, 2]
    assert versions[1]["reason"].startswith("promoted:")
    with pytest.raises(ForecastError, match="no model version 7"):
        request_rollback(folder, 7)
    request_rollback(folder, 1)
    # a restart: the saved champion comes back, then the requested rollback applies
    again = _arena("persistence", "seasonal_naive")
    assert again.load(folder)
    assert again.model_name == "seasonal_naive" and again.version == 2
    new = again.apply_requested_rollback(folder)
    assert new == 3 and again.model_name == "persistence"
    again.save(folder)
    assert "rollback_to" not in read_versions(folder)
    assert again.apply_requested_rollback(folder) is None
    assert any(v["reason"].startswith("rollback to v1") for v in again.versions_list())


def test_the_models_command_lists_and_requests_a_rollback(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from shadowcast.cli import app

    arena = _arena("persistence", "seasonal_naive")
    _run(arena, 576 + 300, 144)
    arena.save(tmp_path / "models")
    base = ["forecast", "models"]
    res = CliRunner().invoke(app, [*base, "list", "--state-dir", str(tmp_path), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert doc["champion"] == "seasonal_naive" and doc["version"] == 2
    assert [(v["version"], v["champion"], v["on_disk"]) for v in doc["versions"]] == [
        (1, False, True),
        (2, True, True),
    ]
    res = CliRunner().invoke(app, [*base, "rollback", "9", "--state-dir", str(tmp_path)])
    assert res.exit_code == 2 and "no model version 9" in res.output
    res = CliRunner().invoke(app, [*base, "rollback", "1", "--state-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert read_versions(tmp_path / "models")["rollback_to"] == 1
    res = CliRunner().invoke(app, [*base, "list", "--state-dir", str(tmp_path / "nothing")])
    assert res.exit_code == 2 and "no saved models" in res.output


def test_a_restart_keeps_the_challengers_in_shadow(tmp_path: Path) -> None:
    arena = _arena("seasonal_naive", "persistence", keep_versions=5)
    _run(arena, 576 + 30, 144)
    arena.refit(arena.last_s or 0, reason="drift", keep_previous=True)
    assert set(arena.shadow) == {"persistence", "seasonal_naive@v1"}
    folder = tmp_path / "models"
    arena.save(folder)
    again = _arena("seasonal_naive", "persistence", keep_versions=5)
    assert again.load(folder)
    assert set(again.shadow) == set(arena.shadow)
    assert again.shadow_since == arena.shadow_since
    for name, m in arena.shadow.items():  # the same models, not refitted ones
        a, b = m.predict(12, (80.0,)), again.shadow[name].predict(12, (80.0,))
        np.testing.assert_allclose(a.mean, b.mean)
        np.testing.assert_allclose(a.upper[80.0], b.upper[80.0])
    # a challenger no longer in shadow leaves no file behind
    again.drop_shadow("persistence")
    again.save(folder)
    assert not list(folder.glob("shadow-persistence-*.pkl"))
    third = _arena("seasonal_naive", "persistence", keep_versions=5)
    assert third.load(folder) and set(third.shadow) == {"seasonal_naive@v1"}
