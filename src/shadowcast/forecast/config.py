"""Forecast stage configuration (composed into the lead's Settings under ``forecast:``)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shadowcast.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_DUR = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*$")


def parse_duration(text: str | int | float) -> int:
    """``"15m"`` -> 900, ``"1h"`` -> 3600, ``"2d"`` -> 172800; plain numbers are seconds."""
    if isinstance(text, int | float):
        if text <= 0:
            raise ConfigError(f"duration must be positive, got {text!r}")
        return int(text)
    m = _DUR.match(text)
    if m is None:
        raise ConfigError(f"bad duration {text!r}: use e.g. 15m, 1h, 2d")
    secs = int(round(float(m.group(1)) * _UNITS[m.group(2)]))
    if secs <= 0:
        raise ConfigError(f"duration must be positive, got {text!r}")
    return secs


def format_duration(seconds: int) -> str:
    """900 -> ``"15m"``, 3600 -> ``"1h"``, 86400 -> ``"1d"``."""
    for unit, size in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def horizon_steps(horizons_s: Sequence[int], step_s: int) -> list[int]:
    """Durations -> steps at the data's step (at least 1 step each)."""
    if step_s <= 0:
        raise ConfigError(f"series step must be positive, got {step_s}")
    return [max(1, math.ceil(h / step_s - 1e-9)) for h in horizons_s]


def _checked(text: str) -> int:
    """parse_duration for validators: pydantic reports a ValueError with the field path."""
    try:
        return parse_duration(text)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None


EXOG_INPUTS = (
    "abw_mbps",
    "rtt_ms",
    "owd_ms",
    "jitter_ms",
    "loss",
    "capacity_mbps",
    "headroom_mbps",
)


class ForecastConfig(BaseModel):
    """What to forecast, how far ahead, with which model and intervals."""

    model_config = ConfigDict(extra="forbid")

    model: str = "auto"
    horizons: list[str] = Field(default_factory=lambda: ["15m", "1h"])
    levels: list[float] = Field(default_factory=lambda: [80.0, 95.0])
    calibration_window: str = "1d"
    scale_rate: float = Field(0.1, gt=0.0, le=1.0)
    aci_gamma: float = Field(0.2, ge=0.0, le=1.0)
    seed: int = 0
    chunk_series: int = Field(5000, ge=1)
    dask_scheduler: str | None = None
    gbm_rounds: int = Field(100, ge=1)
    gbm_max_rows: int = Field(150_000, ge=1000)
    # Keys that come and go (forecast.keys): a series idle (no non-zero value) for
    # ``retire_after`` is not forecast any more (null: never); a new one is forecast cold
    # (persistence, pooled prior interval) and joins the fitted model ``join_after`` after
    # it appeared, at a refit (null: only when the model is refitted).
    retire_after: str | None = "7d"
    join_after: str | None = "1d"
    # Link outlook (``shadowcast forecast``): P(load > threshold x capacity) per link and
    # horizon from ``link_samples`` joint draws; runout = when the p95 daily peak crosses
    # ``runout_target`` x capacity, looked for within ``runout_horizon``.
    # Time-varying exogenous inputs read from the store when it has them (shadow-path
    # measurements; bottleneck capacity/headroom from link_series with a topology).
    exog: list[str] = Field(default_factory=lambda: ["abw_mbps", "rtt_ms", "loss"])
    threshold: float = Field(0.9, gt=0.0, le=2.0)
    link_samples: int = Field(2000, ge=100, le=100_000)
    runout_target: float = Field(0.8, gt=0.0, le=2.0)
    runout_horizon: str = "365d"

    @field_validator("horizons")
    @classmethod
    def _check_horizons(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one horizon")
        for h in v:
            _checked(h)
        return v

    @field_validator("levels")
    @classmethod
    def _check_levels(cls, v: list[float]) -> list[float]:
        for lv in v:
            if not 0.0 < lv < 100.0:
                raise ValueError(f"level {lv} must be a percent in (0, 100)")
        return sorted(v)

    @field_validator("exog")
    @classmethod
    def _check_exog(cls, v: list[str]) -> list[str]:
        bad = sorted(set(v) - set(EXOG_INPUTS))
        if bad:
            raise ValueError(f"unknown exogenous input(s) {bad}; choose from {list(EXOG_INPUTS)}")
        return v

    @field_validator("calibration_window", "runout_horizon")
    @classmethod
    def _check_window(cls, v: str) -> str:
        _checked(v)
        return v

    @field_validator("retire_after", "join_after")
    @classmethod
    def _check_optional(cls, v: str | None) -> str | None:
        if v is not None:
            _checked(v)
        return v

    @property
    def horizons_s(self) -> list[int]:
        return [parse_duration(h) for h in self.horizons]

    @property
    def runout_horizon_s(self) -> int:
        return parse_duration(self.runout_horizon)

    @property
    def calibration_s(self) -> int:
        return parse_duration(self.calibration_window)
