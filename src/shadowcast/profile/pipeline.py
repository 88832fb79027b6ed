"""The profile stage end to end: identify -> place -> series (-> store) -> path events."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pyarrow as pa

from shadowcast.profile.config import ProfileConfig
from shadowcast.profile.events import AppPathEvent, PathEvents
from shadowcast.profile.identify import Profiler
from shadowcast.profile.series import SeriesBuilder
from shadowcast.profile.storage import SeriesStore
from shadowcast.store.base import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Processed:
    flows: pa.Table  # PROFILED_SCHEMA: FLOW_SCHEMA + src/dst region, ingress, egress
    series: pa.Table  # SERIES_SCHEMA, 1-minute grain
    events: list[AppPathEvent]


class ProfilePipeline:
    """Construct once per process; ``process`` every flow batch."""

    def __init__(self, config: ProfileConfig | None = None, *, store: Store | None = None) -> None:
        self.config = config or ProfileConfig()
        cfg = self.config
        self.profiler = Profiler(cfg)
        self.builder = SeriesBuilder(
            cfg.peak_s, cfg.renormalise, cfg.error_z, cfg.sketch_alpha, cfg.max_spread_s
        )
        self.store = SeriesStore(store, cfg.tiers, self.builder) if store is not None else None
        self.events = PathEvents(cfg.event_idle_s, cfg.event_rate_per_min)

    def process(self, flows: pa.Table) -> Processed:
        profiled = self.profiler.identify(flows)
        series = self.builder.build(profiled)
        if self.store is not None:
            self.store.write_minutes(series)
        events = self.events.observe(profiled)
        return Processed(profiled, series, events)
