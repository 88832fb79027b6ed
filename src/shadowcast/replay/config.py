"""Replay configuration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ReplayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weeks: float = Field(1.0, gt=0, le=52, description="synthetic replay length")
    seed: int = 0
    routing_weight: str = Field("hops", pattern="^(hops|inv_capacity)$")
    models: list[str] = Field(
        default_factory=lambda: ["profile", "persistence"],
        description="forecasters run side by side; the first drives alerts",
    )
    horizons: list[str] = Field(default_factory=lambda: ["15m", "1h"])
    levels: list[float] = Field(default_factory=lambda: [80.0, 95.0])
    warmup: str = Field(
        "2d", description="history the models are fitted on before forecasting starts"
    )
    link_intervals: str = Field(
        "correlated",
        pattern="^(correlated|comonotone)$",
        description="link bounds: OD half-widths combined with their correlation, or summed",
    )
    chunk_steps: int = Field(288, gt=0, description="steps per store write batch")
    checkpoint_every: str = Field(
        "1d", description="simulated time between checkpoints (store flush, models saved)"
    )
