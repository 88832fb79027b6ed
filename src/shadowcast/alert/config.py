"""Alert stage configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

NotifierName = Literal["log", "webhook", "alertmanager"]


def _log_only() -> list[NotifierName]:
    return ["log"]


class AlertConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    utilisation_threshold: float = Field(
        0.9, gt=0, le=2, description="alert when a link is predicted at or above this share"
    )
    within_s: int = Field(
        3600, gt=0, le=31 * 86400, description="look-ahead window of the alert rule"
    )
    quantile_level: float = Field(
        0, ge=0, lt=100, description="0: alert on the mean; 80/95: on that upper bound"
    )
    clear_ratio: float = Field(
        0.95, gt=0, le=1, description="hysteresis: clear when below threshold x clear_ratio"
    )
    notifiers: list[NotifierName] = Field(default_factory=_log_only, max_length=3)
    webhook_url: HttpUrl | None = None
    alertmanager_url: HttpUrl | None = None
