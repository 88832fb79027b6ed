"""Routing changes seen by the service, as events of the links whose load they move.

The service maps its link forecasts under the routing in force, so when the IGP routes
around a failed link (or an operator rolls a plan back) the link forecasts are right at
once and no error drift ever shows. The links' behaviour changed all the same, and an
operator expects to see it: when the routing in force changed since the last step, the
step's measured demand is routed under the routing before and after the change, and every
link whose load moved by more than ``margin`` of its load before (and by more than
``floor_share`` of the busiest link's load, so that near-empty links do not speak) is a
``route-change`` event. Only what the service itself knows is used: its routing state and
its own measurements.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from shadowcast.feedback.drift import DriftEvent
from shadowcast.records import F64

ROUTE_CHANGE = "route-change"


def route_change_events(
    t_s: int,
    before: F64,
    after: F64,
    names: Sequence[str],
    margin: float,
    floor_share: float = 0.01,
) -> list[DriftEvent]:
    """The links whose load (the same demand, routed ``before`` and ``after`` a routing
    change) moved by more than ``margin`` of the load before (module docstring).
    ``statistic`` is the relative move, ``scaled_error`` the same, signed."""
    b = np.nan_to_num(np.asarray(before, dtype=np.float64))
    a = np.nan_to_num(np.asarray(after, dtype=np.float64))
    if b.shape != a.shape or b.shape != (len(names),):
        return []
    moved = a - b
    floor = floor_share * max(float(np.maximum(np.abs(a), np.abs(b)).max(initial=0.0)), 1e-12)
    base = np.maximum(np.abs(b), floor)
    rel = moved / base
    hit = (np.abs(moved) > margin * np.abs(b)) & (np.abs(moved) > floor)
    return [
        DriftEvent(
            t_s,
            ROUTE_CHANGE,
            names[i],
            1 if moved[i] > 0 else -1,
            float(abs(rel[i])),
            float(rel[i]),
            1,
            np.array([i], dtype=np.int64),
        )  # fmt: skip
        for i in map(int, np.flatnonzero(hit))
    ]
