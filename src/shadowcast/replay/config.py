"""Replay configuration."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shadowcast.units import Duration


class ReplayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    weeks: float = Field(1.0, gt=0, le=52, description="synthetic replay length")
    seed: int = Field(0, ge=0, le=2**32 - 1)
    routing_weight: str = Field("hops", pattern="^(hops|inv_capacity)$")
    models: list[str] = Field(
        default_factory=lambda: ["profile", "persistence"],
        min_length=1,
        max_length=16,
        description="forecasters run side by side; the first drives alerts",
    )
    horizons: list[Duration] = Field(
        default_factory=lambda: ["15m", "1h"], min_length=1, max_length=32
    )
    levels: list[float] = Field(default_factory=lambda: [80.0, 95.0], max_length=16)
    warmup: Duration = Field(
        "2d", description="history the models are fitted on before forecasting starts"
    )
    link_intervals: str = Field(
        "correlated",
        pattern="^(correlated|comonotone)$",
        description="link bounds: OD half-widths combined with their correlation, or summed",
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
