"""Routing changes as events of the links whose load they move."""

from __future__ import annotations

import numpy as np

from shadowcast.feedback.config import FeedbackConfig
from shadowcast.feedback.routes import ROUTE_CHANGE, route_change_events
from shadowcast.feedback.stage import FeedbackStage

NAMES = ["A->B", "B->C", "A->C", "C->A", "B->A"]


def test_links_whose_load_moves_by_more_than_the_margin_are_events() -> None:
    before = np.array([100.0, 50.0, 80.0, 0.05, 40.0])
    # A->B fails (its load goes to B->C and A->C), C->A is near empty and moves a lot
    # relatively but not materially, B->A moves by 10 %: under the 20 % margin
    after = np.array([0.0, 150.0, 80.0, 0.5, 44.0])
    events = route_change_events(7, before, after, NAMES, margin=0.2)
    assert [(e.group, e.direction) for e in events] == [("A->B", -1), ("B->C", 1)]
    assert all(e.kind == ROUTE_CHANGE and e.time_s == 7 and e.series == 1 for e in events)
    assert [int(e.members[0]) for e in events] == [0, 1]
    assert np.isclose(events[0].scaled_error, -1.0) and np.isclose(events[1].statistic, 2.0)
    # a link that carried nothing and now carries much is an event too
    grown = route_change_events(7, np.array([0, 50, 80, 1, 40.0]), before, NAMES, margin=0.2)
    assert [e.group for e in grown] == ["A->B"]
    assert route_change_events(7, before, before, NAMES, margin=0.2) == []
    assert route_change_events(7, before, after[:3], NAMES, margin=0.2) == []  # shapes


def test_the_stage_records_route_changes_without_alerts_and_holds_their_drift_test() -> None:
    od = [("A", "B"), ("B", "A")]
    fb = FeedbackStage(FeedbackConfig(), ("high",), od, NAMES, 3, [80.0], 300)
    before = np.array([100.0, 50.0, 80.0, 10.0, 40.0])
    after = np.array([0.0, 150.0, 80.0, 10.0, 40.0])
    events = fb.route_change(600, before, after)
    assert [e.group for e in events] == ["A->B", "B->C"]
    assert fb.alerts(events) == []  # not an accuracy drift: the link forecasts follow it
    table = fb.take_drift_table()
    assert table is not None and table.column("kind").to_pylist() == [ROUTE_CHANGE] * 2
    assert table.column("action").to_pylist() == ["remap", "remap"]
    assert fb.counters()["route_changes"] == 2 and fb.counters()["drifts"] == 0
    quiet = fb.drift["link"].quiet
    assert quiet.tolist() == [24, 24, 0, 0, 0]  # their drift test starts over, quiet
    other = FeedbackStage(FeedbackConfig(), ("high",), od, NAMES, 3, [80.0], 300)
    assert other.load_state(fb.state()) and other.route_changes == 2
