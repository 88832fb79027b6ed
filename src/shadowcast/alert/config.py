"""Alert stage configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from shadowcast.units import Duration, parse_duration

NotifierName = Literal["log", "webhook", "alertmanager"]
PolicyName = Literal["threshold", "probability"]


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
    policy: PolicyName = Field(
        "probability",
        description="threshold: the predicted mean (or quantile_level's bound) crosses the "
        "threshold; probability: P(link >= threshold within the window) >= p per link class",
    )
    target_precision: float = Field(
        0.85, gt=0, le=1, description="probability policy: p is the lowest reaching this"
    )
    p_default: float = Field(
        0.5, gt=0, lt=1, description="probability policy: p of a class not tuned yet"
    )
    p: dict[str, float] = Field(
        default_factory=dict, description="probability policy: starting p per link class"
    )
    p_min: float = Field(0.05, gt=0, lt=1, description="lowest p the tuner tries")
    p_max: float = Field(0.95, gt=0, lt=1, description="highest p the tuner tries")
    p_step: float = Field(0.01, ge=0.001, le=0.5, description="the tuner's grid step")
    link_classes: dict[str, str] = Field(
        default_factory=dict,
        description="link glob -> class (first match in order); other links: capacity band",
    )
    capacity_bands_gbps: list[float] = Field(
        default_factory=lambda: [1.0, 10.0, 100.0],
        max_length=16,
        description="classes of the links no glob names: <=1G, <=10G, <=100G, >100G",
    )
    expire: bool = Field(
        False, description="also resolve an alert whose window passed without the link over"
    )
    tune: bool = Field(True, description="probability policy: tune p from outcomes")
    tune_every: Duration = Field("6h", description="how often the tuner runs (service clock)")
    tune_keep: Duration = Field("7d", description="history the tuner replays")
    tune_min_alerts: int = Field(
        10, ge=1, le=100_000, description="judged alerts a p needs before it is chosen"
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

    @field_validator("p")
    @classmethod
    def _p(cls, v: dict[str, float]) -> dict[str, float]:
        if len(v) > 1000:
            raise ValueError(f"at most 1000 link classes, got {len(v)}")
        for name, p in v.items():
            if not 0 < p < 1 or not name or len(name) > 100:
                raise ValueError(f"{name[:60]!r}: {p} is not in (0, 1)")
        return v

    @field_validator("capacity_bands_gbps")
    @classmethod
    def _bands(cls, v: list[float]) -> list[float]:
        if any(not 0 < b <= 1e6 for b in v):
            raise ValueError("capacity bands are in (0, 1e6] Gbit/s")
        return v

    @field_validator("link_classes")
    @classmethod
    def _classes(cls, v: dict[str, str]) -> dict[str, str]:
        return _globs(v, "classes")

    @model_validator(mode="after")
    def _grid(self) -> AlertConfig:
        if self.p_min > self.p_max:
            raise ValueError(f"p_min {self.p_min} is above p_max {self.p_max}")
        if (self.p_max - self.p_min) / self.p_step > 1000:
            raise ValueError("the p grid (p_min..p_max by p_step) has over 1000 points")
        if not 0 < parse_duration(self.tune_every) <= 365 * 86400:
            raise ValueError(f"tune_every: {self.tune_every} is not in (0, 365d]")
        if not 0 < parse_duration(self.tune_keep) <= 365 * 86400:
            raise ValueError(f"tune_keep: {self.tune_keep} is not in (0, 365d]")
        return self

    @field_validator("teams")
    @classmethod
    def _teams(cls, v: dict[str, str]) -> dict[str, str]:
        return _globs(v, "teams")


def _globs(v: dict[str, str], what: str) -> dict[str, str]:
    if len(v) > 1000:
        raise ValueError(f"at most 1000 link globs, got {len(v)}")
    for glob, label in v.items():
        if not glob or len(glob) > 200 or not label or len(label) > 100:
            raise ValueError(f"{glob[:60]!r}: globs of 1-200 and {what} of 1-100 characters")
    return v
