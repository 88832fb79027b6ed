"""Alerts judged by outcome: true, false alarm, missed episode, lead time."""

from __future__ import annotations

import numpy as np
import pytest

from shadowcast.records import Alert
from shadowcast.replay.evals import judge_replay

STEP = 300


def _alert(link: str, issued_s: int) -> Alert:
    t = np.datetime64(issued_s, "s")
    return Alert("LinkCapacityPredicted", link, "warning", 0.95, 0.9, t, t, 0, "")


def test_true_false_missed_and_lead() -> None:
    T = 60
    times = np.arange(T, dtype=np.int64) * STEP
    util = np.full((T, 2), 0.5)
    util[20:25, 0] = 0.95  # episode 1 on l0 from step 20: announced at step 14 (30 min)
    util[40:42, 0] = 0.95  # episode 2 on l0 from step 40: no alert before -> missed
    util[30:33, 1] = 0.95  # episode 3 on l1 from step 30: announced at step 29 (5 min)
    alerts = [
        _alert("l0", 14 * STEP),  # true, lead 30 min
        _alert("l0", 16 * STEP),  # true too (the same start inside its window)
        _alert("l1", 29 * STEP),  # true, lead 5 min
        _alert("l1", 50 * STEP),  # its window (to step 61) outlasts the series: undecided
        _alert("l0", 41 * STEP),  # under way, not announced: true, no lead
        _alert("l1", 5 * STEP),  # window 5..16: nothing -> false alarm
    ]
    doc = judge_replay(util, times, alerts, ["l0", "l1"], 0.9, 12, STEP, 0)
    assert doc["episodes"] == 3 and doc["episodes_announced"] == 2
    assert doc["alerts"] == 5  # the alert at step 50 is undecided at the end
    assert doc["undecided_alerts"] == 1
    assert doc["true_alerts"] == 4
    assert doc["precision"] == pytest.approx(4 / 5)
    assert doc["recall"] == pytest.approx(2 / 3)
    assert doc["lead_minutes_median"] == pytest.approx((30 + 5) / 2)
    assert doc["false_alarms_per_day"] == pytest.approx(1 / (T * STEP / 86400))


def test_episodes_too_early_to_announce_are_not_counted() -> None:
    times = np.arange(30, dtype=np.int64) * STEP
    util = np.full((30, 1), 0.5)
    util[3:6, 0] = 1.0  # starts 3 steps after the first forecast, window is 12: not counted
    doc = judge_replay(util, times, [], ["l0"], 0.9, 12, STEP, 0)
    assert doc["episodes"] == 0 and doc["recall"] is None and doc["precision"] is None
