"""Settings of the living service (YAML key ``service``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from shadowcast.units import Duration, parse_duration


class ServiceConfig(BaseModel):
    """``shadowcast run``: one service, every stage on one clock.

    ``mode``: ``observe`` forecasts and alerts only; ``advise`` also plans and keeps the
    plans for an operator's approval; ``auto`` applies plans through the checker and the
    configured actuator (``act``), rolling back on failure. ``topology`` is the backbone
    (SNDlib XML, GraphML or node-link JSON); flows map onto its routers through the
    profiler's sites file and ``rollup.edge_to_node``.
    """

    model_config = ConfigDict(extra="forbid")

    mode: Literal["observe", "advise", "auto"] = "observe"
    topology: Path | None = None
    capacities_from: Path | None = None
    state_dir: Path | None = Field(
        None, description="models and checkpoints (default data_dir/state)"
    )
    warmup: Duration = Field("2d", description="history needed before the first fit")
    retrain_every: Duration = Field("1d", description="refit the models on this schedule")
    keep: Duration = Field("14d", description="history kept in memory for refits")
    plan_horizon: Duration = Field("1h", description="plans are sized for the peak over this")
    plan_trigger: float = Field(
        0.8, gt=0, le=2.0, description="plan when a link's predicted peak reaches this"
    )
    plan_min_interval: Duration = Field(
        "15m", description="least time between applied plans (unless overload is predicted)"
    )
    probe_interval: Duration = Field("5m", description="a round of shadow probes this often")
    probes_per_round: int = Field(16, ge=0, le=10_000)
    checkpoint_every: Duration = Field("1h", description="flush the store and save the models")
    retention_every: Duration = Field(
        "1h", description="delete rows past store.retention_days (and profile tiers') this often"
    )
    flush_s: float = Field(5.0, gt=0, le=3600, description="stage output flushed this often")
    # stage output while the store fails (service/writer.py): held in memory up to
    # store_buffer_bytes, then in spill_dir (default state_dir/spool) up to spill_max_bytes,
    # retried with backoff up to retry_max apart; lost (counted) only past both bounds
    store_buffer_bytes: int = Field(
        256 << 20, ge=1 << 20, le=1 << 40, description="stage rows held while the store fails"
    )
    spill_dir: Path | None = Field(
        None, description="stage rows spilled here past store_buffer_bytes (state_dir/spool)"
    )
    spill_max_bytes: int = Field(1 << 30, ge=0, le=1 << 44, description="spill folder bound")
    retry_max: Duration = Field("30s", description="longest wait between store retries")
    # where the rollup's flows come from: the service's own collector, or the store's flows
    # table (several collectors into one store; service/storefeed.py), polled every
    # flows_poll for the flows that ended flows_lateness ago or more, reading back
    # flows_max_duration (the exporters' active timeout); rollup.lateness_s must cover
    # flows_lateness + flows_poll
    flows_from: Literal["collector", "store"] = "collector"
    flows_poll: Duration = Field("5s", description="flows_from store: poll this often")
    flows_lateness: Duration = Field("5s", description="flows_from store: time to store a flow")
    flows_max_duration: Duration = Field(
        "5m", description="flows_from store: the longest a flow record spans"
    )
    read_socket: bool = Field(
        True, description="serve read-only store access to other commands over a Unix socket"
    )

    def seconds(self, name: str) -> int:
        return parse_duration(str(getattr(self, name)))
