"""Alert stage configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator

from shadowcast.units import Duration

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
    webhook_secret_env: str = Field(
        "SHADOWCAST_WEBHOOK_SECRET",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$",
        description="environment variable holding the webhook's HMAC-SHA256 secret",
    )
    teams: dict[str, str] = Field(
        default_factory=dict,
        description="link glob -> team label (first match in order; e.g. 'ATLAM5->*': core)",
    )
    resend: Duration = Field(
        "1m", description="firing alerts are re-sent to Alertmanager this often (service clock)"
    )

    @field_validator("teams")
    @classmethod
    def _teams(cls, v: dict[str, str]) -> dict[str, str]:
        if len(v) > 1000:
            raise ValueError(f"at most 1000 link globs, got {len(v)}")
        for glob, team in v.items():
            if not glob or len(glob) > 200 or not team or len(team) > 100:
                raise ValueError(f"{glob[:60]!r}: globs of 1-200 and teams of 1-100 characters")
        return v
