"""New application path events: new, deduplicated, returning after idle, rate-limited."""

from __future__ import annotations

import pyarrow as pa
from profile_flowgen import one_flow

from shadowcast.profile.config import ProfileConfig
from shadowcast.profile.events import PathEvents
from shadowcast.profile.identify import Profiler

T0 = 1_700_000_000_000


def _batch(*flows: pa.Table) -> pa.Table:
    return Profiler(ProfileConfig(use_model=False)).identify(pa.concat_tables(flows))


def test_new_dedup_and_returning() -> None:
    ev = PathEvents(idle_s=600, rate_per_min=100)
    first = ev.observe(
        _batch(
            one_flow(app="Zoom", time_start=T0, time_end=T0 + 1000),
            one_flow(app="Zoom", time_start=T0 + 5000, time_end=T0 + 9000),
            one_flow(app="HTTP", time_start=T0 + 2000, time_end=T0 + 3000, in_if=3),
        )
    )
    assert [(e.application, e.category, e.returning) for e in first] == [
        ("Zoom", "voip", False),
        ("HTTP", "web", False),
    ]
    assert first[0].first_seen.timestamp() * 1000 == T0
    assert first[0].ingress == "exporter:192.0.2.1"
    # seen again shortly after: nothing
    assert (
        ev.observe(_batch(one_flow(app="Zoom", time_start=T0 + 60_000, time_end=T0 + 61_000))) == []
    )
    # idle for more than 600 s: it returns
    back = ev.observe(_batch(one_flow(app="Zoom", time_start=T0 + 700_000, time_end=T0 + 701_000)))
    assert [(e.application, e.returning) for e in back] == [("Zoom", True)]


def test_unnamed_traffic_is_not_announced() -> None:
    ev = PathEvents()
    assert ev.observe(_batch(one_flow(app=""))) == []


def test_rate_limit_suppresses_and_reoffers() -> None:
    ev = PathEvents(idle_s=3600, rate_per_min=2)
    flows = [one_flow(app=f"app{i}", time_start=T0 + i, time_end=T0 + i + 1) for i in range(5)]
    got = ev.observe(_batch(*flows))
    assert len(got) == 2 and ev.suppressed == 3
    # next minute, the suppressed paths are offered again (not remembered as announced)
    later = [
        one_flow(app=f"app{i}", time_start=T0 + 61_000, time_end=T0 + 62_000) for i in range(5)
    ]
    again = ev.observe(_batch(*later))
    assert {e.application for e in again} <= {"app2", "app3", "app4"} and len(again) == 2
