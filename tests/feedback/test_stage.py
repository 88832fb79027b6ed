"""The feedback stage: a level shift is detected, alerted, adapted to and refitted for."""

from __future__ import annotations

import numpy as np

from shadowcast.feedback.config import FeedbackConfig
from shadowcast.feedback.stage import ALERT_NAME, FeedbackStage
from shadowcast.records import Forecast

STEP = 300
OD = [(a, b) for a in "ABC" for b in "ABC" if a != b]
CLASSES = ("high", "low")
LINKS = ["A->B", "B->C"]


def _stage(**kw: object) -> FeedbackStage:
    cfg = FeedbackConfig(**kw)  # type: ignore[arg-type]
    return FeedbackStage(cfg, CLASSES, OD, LINKS, 3, [80.0], STEP)


def _drive(fb: FeedbackStage, steps: int, shift_at: int, seed: int = 1):
    """A model that keeps forecasting the old level; series 0-1 ("high" from A) jump +60 %."""
    rng = np.random.default_rng(seed)
    n = len(CLASSES) * len(OD)
    level = np.linspace(50, 150, n)
    first_drift, first_retrain, last_fc, last_y = None, None, None, None
    for t in range(1, steps):
        y = level * (1 + 0.03 * rng.standard_normal(n))
        if t >= shift_at:
            y[:2] *= 1.6
        events = fb.observe("od", t * STEP, y)
        fb.observe("link", t * STEP, y[:2])
        if events and first_drift is None:
            first_drift = (t, events, fb.alerts(events))
        if fb.retrain_due((t + 1) * STEP) and first_retrain is None:
            first_retrain = t
        mean = np.repeat(level[:, None], 3, axis=1)
        fc = Forecast(mean=mean, lower={80.0: mean * 0.95}, upper={80.0: mean * 1.05}, model="m")
        out = fb.correct((t + 1) * STEP, fc, version=1)
        fb.issued("od", (t + 1) * STEP, out.mean[:, 0])
        fb.issued("link", (t + 1) * STEP, level[:2])
        last_fc, last_y = out, y
    return first_drift, first_retrain, last_fc, last_y


def test_a_shift_is_detected_alerted_adapted_and_refitted() -> None:
    fb = _stage()
    drift, retrain, fc, y = _drive(fb, 100, shift_at=60)
    assert drift is not None
    t, events, alerts = drift
    assert 60 <= t < 66  # within six 5-minute steps
    assert {e.group for e in events if e.kind == "od"} >= {"high@A>"}
    assert alerts and all(a.name == ALERT_NAME for a in alerts)
    assert retrain is not None and retrain - t <= 12  # refit an hour after the drift
    assert fc is not None and y is not None
    # the drifted series forecast their new level; the others (some adapting with them,
    # in a destination group they share) stay at theirs
    assert np.allclose(fc.mean[:2, 0], 1.6 * np.linspace(50, 150, 12)[:2], rtol=0.05)
    assert np.allclose(fc.mean[2:, 0], np.linspace(50, 150, 12)[2:], rtol=0.05)
    table = fb.take_drift_table()
    assert table is not None and "adapt+retrain" in table.column("action").to_pylist()
    summary = fb.summary_table(100 * STEP)
    assert summary is None  # the ledger fed no accuracy here
    other = _stage()
    assert other.load_state(fb.state())
    assert other.drifts == fb.drifts and other.retrain_at_s == fb.retrain_at_s


def test_no_drift_without_change_and_nothing_adapts_when_disabled() -> None:
    fb = _stage()
    drift, retrain, _, _ = _drive(fb, 200, shift_at=10_000)
    assert drift is None and retrain is None
    off = _stage(enabled=False, retrain_on_drift=False)
    drift, retrain, fc, _ = _drive(off, 100, shift_at=60)
    assert drift is not None and retrain is None  # still detected and reported
    assert fc is not None and np.allclose(fc.mean[:, 0], np.linspace(50, 150, 12))


def test_drifts_of_one_step_make_one_alert_per_kind_and_direction() -> None:
    fb = _stage()
    drift, _, _, _ = _drive(fb, 100, shift_at=60)
    assert drift is not None
    _, events, alerts = drift
    od = [e for e in events if e.kind == "od"]
    (alert,) = [a for a in alerts if a.labels["kind"] == "od"]
    assert alert.labels["groups"].split(",") == [e.group for e in od]
    assert str(sum(e.series for e in od)) in alert.message


def test_a_link_forecast_made_under_another_routing_is_not_tested() -> None:
    fb = _stage(drift_min_steps=2)
    load = np.array([100.0, 100.0])
    for t in range(1, 40):
        fb.issued("link", t * STEP, load, tag=0)
        assert fb.observe("link", t * STEP, load * (1 + 0.01 * (t % 3)), tag=0) == []
    fb.issued("link", 40 * STEP, load, tag=0)
    # the service moved traffic off the first link: the forecast predates the new routing
    assert fb.observe("link", 40 * STEP, np.array([10.0, 190.0]), tag=1) == []
    fb.issued("link", 41 * STEP, load, tag=1)
    assert fb.observe("link", 41 * STEP, np.array([10.0, 190.0]), tag=1) != []


def _persistence_run(ahead: int, shift_at: int, steps: int = 160) -> int | None:
    """A model that forecasts the last value at every step ahead (it absorbs a shift in one
    step); series 0-1 jump +30 % at ``shift_at`` (one step of it is not evidence enough).
    The first step with an OD drift."""
    fb = _stage(drift_ahead=ahead)
    rng = np.random.default_rng(5)
    n = len(CLASSES) * len(OD)
    level = np.linspace(50, 150, n)
    for t in range(1, steps):
        y = level * (1 + 0.03 * rng.standard_normal(n))
        if t >= shift_at:
            y[:2] *= 1.3
        if fb.observe("od", t * STEP, y):
            return t
        fb.issued("od", (t + 1) * STEP, np.repeat(y[:, None], 3, axis=1))
    return None


def test_drift_on_errors_some_steps_ahead_sees_a_shift_a_follower_absorbs() -> None:
    assert _persistence_run(1, shift_at=100) is None  # one step ahead: a single spike
    t = _persistence_run(3, shift_at=100)
    assert t is not None and 100 <= t < 106
    assert _persistence_run(3, shift_at=10_000) is None  # and nothing without a change


def test_a_drift_some_steps_ahead_is_recorded_not_acted_on() -> None:
    """The second test's drift is a row of drift_events (its group named with the steps
    ahead) and nothing more: no level adaptation, no refit."""
    fb = _stage(drift_ahead=3)
    rng = np.random.default_rng(5)
    n = len(CLASSES) * len(OD)
    level = np.linspace(50, 150, n)
    for t in range(1, 106):
        y = level * (1 + 0.03 * rng.standard_normal(n))
        y[:2] *= 1.3 if t >= 100 else 1.0
        fb.observe("od", t * STEP, y)
        fb.issued("od", (t + 1) * STEP, np.repeat(y[:, None], 3, axis=1))
    table = fb.take_drift_table()
    assert table is not None
    rows = table.to_pylist()
    assert rows and all(r["subject"].endswith("/3") and r["action"] == "none" for r in rows)
    assert fb.retrain_at_s is None and (fb.adapter.adapt_until < 0).all()
