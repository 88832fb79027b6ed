"""Replay configuration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shadowcast.units import Duration


class ReplayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weeks: float = Field(1.0, gt=0, le=52, description="synthetic replay length")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    routing_weight: str = Field("hops", pattern="^(hops|inv_capacity)$")
    model: str = Field(
        "profile",
        max_length=64,
        description="the service's forecaster in replays (auto blends LightGBM too: slower)",
    )
    horizons: list[Duration] = Field(
        default_factory=lambda: ["15m", "1h"], min_length=1, max_length=32
    )
    levels: list[float] = Field(default_factory=lambda: [80.0, 95.0], max_length=16)
    warmup: Duration = Field(
        "2d", description="history the models are fitted on before forecasting starts"
    )
    checkpoint_every: Duration = Field(
        "1d", description="simulated time between checkpoints (store flush, models saved)"
    )

    @field_validator("levels")
    @classmethod
    def _check_levels(cls, v: list[float]) -> list[float]:
        for lv in v:
            if not 0.0 < lv < 100.0:
                raise ValueError(f"level {lv} must be a percent in (0, 100)")
        return v
