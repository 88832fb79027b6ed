"""Settings of the living service (YAML key ``service``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shadowcast.errors import ConfigError
from shadowcast.units import parse_duration


def _duration(v: str) -> str:
    try:
        parse_duration(v)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    return v


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
    warmup: str = Field("2d", description="history needed before the first fit")
    retrain_every: str = Field("1d", description="refit the models on this schedule")
    keep: str = Field("14d", description="history kept in memory for refits")
    plan_horizon: str = Field("1h", description="plans are sized for the peak over this")
    plan_trigger: float = Field(
        0.8, gt=0, le=2.0, description="plan when a link's predicted peak reaches this"
    )
    plan_min_interval: str = Field(
        "15m", description="least time between applied plans (unless overload is predicted)"
    )
    probe_interval: str = Field("5m", description="a round of shadow probes this often")
    probes_per_round: int = Field(16, ge=0, le=10_000)
    checkpoint_every: str = Field("1h", description="flush the store and save the models")
    flush_s: float = Field(5.0, gt=0, le=3600, description="stage output flushed this often")
    read_socket: bool = Field(
        True, description="serve read-only store access to other commands over a Unix socket"
    )

    @field_validator(
        "warmup",
        "retrain_every",
        "keep",
        "plan_horizon",
        "plan_min_interval",
        "probe_interval",
        "checkpoint_every",
    )
    @classmethod
    def _durations(cls, v: str) -> str:
        return _duration(v)

    def seconds(self, name: str) -> int:
        return parse_duration(str(getattr(self, name)))
