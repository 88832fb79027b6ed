"""Configuration of the profile stage."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shadowcast.taxonomy import CATEGORIES, LATENCY_SENSITIVITY

Sensitivity = Literal["high", "medium", "low"]


class TierConfig(BaseModel):
    """One series tier: its grain and how long it is kept."""

    model_config = ConfigDict(extra="forbid")

    grain_s: int = Field(gt=0, le=7 * 86400)
    retention_s: int = Field(gt=0, le=10 * 366 * 86400)


def _default_taxonomy() -> dict[str, Sensitivity]:
    return {c: LATENCY_SENSITIVITY[c] for c in CATEGORIES}  # type: ignore[misc]


def _default_tiers() -> dict[str, TierConfig]:
    return {
        "1m": TierConfig(grain_s=60, retention_s=7 * 86400),
        "5m": TierConfig(grain_s=300, retention_s=35 * 86400),
        "1h": TierConfig(grain_s=3600, retention_s=400 * 86400),
    }


class ProfileConfig(BaseModel):
    """Settings of the application profiler (YAML key ``profile``).

    Every path is optional: without ``rules_file`` there are no operator rules, without
    ``sites_file`` every address is site ``unknown``, without ``geoip_db`` regions come
    from the sites file only (fallback ``unknown``), and ``model_file`` defaults to the
    model shipped in the package.
    """

    model_config = ConfigDict(extra="forbid")

    # taxonomy: category -> latency sensitivity (categories outside CATEGORIES are allowed)
    taxonomy: dict[str, Sensitivity] = Field(default_factory=_default_taxonomy)
    apps_file: Path | None = None  # extra application-name -> category map (apps.yaml layout)
    rules_file: Path | None = None  # operator rules (see profile.rules)
    rules_override: bool = False  # operator rules win over exporter/nDPI names when true
    model_file: Path | None = None  # behavioural model; None = the shipped one
    use_model: bool = True
    model_min_confidence: float = Field(default=0.4, ge=0.0, le=1.0)
    sites_file: Path | None = None  # prefix -> site/region, exporter/interface -> edge
    geoip_db: Path | None = None  # MaxMind mmdb (country or city); optional
    # flows carry raw sampled counts (multiply by sampling_rate); the collector's flows are
    # already scaled, so this is off by default
    renormalise: bool = False
    peak_s: int = Field(default=10, gt=0)  # sub-bucket for peak bit rates
    max_spread_s: int = Field(
        default=86_400, gt=0, le=31 * 86400
    )  # longer flows: spread over the last part
    error_z: float = Field(default=1.96, gt=0, le=10)  # +- on bandwidth is z * std (1.96 = 95 %)
    sketch_alpha: float = Field(default=0.02, gt=0.0, lt=0.5)  # relative accuracy
    tiers: dict[str, TierConfig] = Field(
        default_factory=_default_tiers, min_length=1, max_length=16
    )
    event_idle_s: int = Field(default=3600, gt=0, le=31 * 86400)  # idle this long: "returns"
    event_rate_per_min: int = Field(default=60, gt=0, le=1_000_000)  # events/min at most

    @field_validator("taxonomy")
    @classmethod
    def _has_unknown(cls, v: dict[str, Sensitivity]) -> dict[str, Sensitivity]:
        if "unknown" not in v:
            raise ValueError("taxonomy must contain the category 'unknown'")
        return v

    @field_validator("peak_s")
    @classmethod
    def _divides_minute(cls, v: int) -> int:
        if 60 % v:
            raise ValueError("peak_s must divide 60")
        return v
