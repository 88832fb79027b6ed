"""Configuration of the profile stage."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shadowcast.records import CATEGORIES, LATENCY_SENSITIVITY

Sensitivity = Literal["high", "medium", "low"]


class TierConfig(BaseModel):
    """One series tier: its grain and how long it is kept."""

    model_config = ConfigDict(extra="forbid")

    grain_s: int = Field(gt=0)
    retention_s: int = Field(gt=0)


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
    renormalise: bool = True  # multiply bytes/packets by sampling_rate in series
    peak_s: int = Field(default=10, gt=0)  # sub-bucket for peak bit rates
    max_spread_s: int = Field(default=86_400, gt=0)  # longer flows: spread over the last part
    error_z: float = Field(default=1.96, gt=0)  # +- on bandwidth is z * std (1.96 = 95 %)
    sketch_alpha: float = Field(default=0.02, gt=0.0, lt=0.5)  # relative accuracy
    tiers: dict[str, TierConfig] = Field(default_factory=_default_tiers)
    data_dir: Path = Path("data/profile")
    event_idle_s: int = Field(default=3600, gt=0)  # a path idle this long "returns"
    event_rate_per_min: int = Field(default=60, gt=0)  # events emitted per minute at most

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


def load_config(path: Path | None) -> ProfileConfig:
    """``ProfileConfig`` from a YAML file (the whole settings file with a ``profile`` key,
    or just the profile section); defaults when ``path`` is None."""
    from pydantic import ValidationError

    from shadowcast.errors import ConfigError
    from shadowcast.parsing import load_yaml, read_input

    if path is None:
        return ProfileConfig()
    doc = load_yaml(read_input(path, ConfigError, "settings"), path, ConfigError) or {}
    if isinstance(doc, dict) and "profile" in doc:
        doc = doc["profile"] or {}
    try:
        return ProfileConfig.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"{path}: profile.{loc}: {err['msg']}") from exc
