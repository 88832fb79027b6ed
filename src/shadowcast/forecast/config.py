"""Forecast stage configuration (composed into the lead's Settings under ``forecast:``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

# The one duration grammar lives in shadowcast.units; these names stay importable from here.
from shadowcast.units import Duration, format_duration, parse_duration
from shadowcast.units import ceil_steps as horizon_steps

__all__ = ["EXOG_INPUTS", "ForecastConfig", "format_duration", "horizon_steps", "parse_duration"]

EXOG_INPUTS = (
    "abw_mbps",
    "rtt_ms",
    "owd_ms",
    "jitter_ms",
    "loss",
    "capacity_mbps",
    "headroom_mbps",
)


AUTO_MEMBERS = ("persistence", "profile", "gbm", "theta", "neural")


class ForecastConfig(BaseModel):
    """What to forecast, how far ahead, with which model and intervals."""

    model_config = ConfigDict(extra="forbid")

    model: str = "auto"
    horizons: list[Duration] = Field(default_factory=lambda: ["15m", "1h"], max_length=32)
    levels: list[float] = Field(default_factory=lambda: [80.0, 95.0], max_length=16)
    calibration_window: Duration = "1d"
    scale_rate: float = Field(0.1, gt=0.0, le=1.0)
    aci_gamma: float = Field(0.8, ge=0.0, le=1.0)
    # Link upper bounds: their half-widths are scaled by a factor that online quantile
    # tracking moves toward the nominal share of links above the bound, per horizon and
    # level, at this rate (0: the bounds as the OD intervals and their correlation give them).
    link_calibration_rate: float = Field(0.1, ge=0.0, le=1.0)
    seed: int = Field(0, ge=0, le=2**32 - 1)
    chunk_series: int = Field(5000, ge=1, le=1_000_000)
    dask_scheduler: str | None = None
    gbm_rounds: int = Field(100, ge=1, le=10_000)
    gbm_max_rows: int = Field(150_000, ge=1000, le=100_000_000)
    # The GBM refits on what it keeps this often while updating online (null: only at the
    # service's scheduled refits, `service.retrain_every`).
    gbm_refit_every: Duration | None = "3h"
    # Boosters per fit, each on its own sample of rows, averaged (bagging: less variance
    # from the sample where the history is short).
    gbm_bags: int = Field(4, ge=1, le=16)
    # The members `auto` blends (weights per horizon from its backtest); `neural` needs the
    # neural extra (torch) and is left out without it.
    auto_members: list[str] = Field(
        default_factory=lambda: ["persistence", "profile", "gbm", "theta", "neural"],
        max_length=8,
    )
    neural_epochs: int = Field(30, ge=1, le=1000)
    neural_max_samples: int = Field(200_000, ge=1000, le=100_000_000)
    neural_refit_every: Duration | None = "3h"  # like gbm_refit_every
    # `auto`'s backtest window in this many parts; the members are refitted on the history
    # before each part, so members that gain from more history are weighed fairly.
    auto_cal_folds: int = Field(3, ge=1, le=8)
    # Keys that come and go (forecast.keys): a series idle (no non-zero value) for
    # ``retire_after`` is not forecast any more (null: never); a new one is forecast cold
    # (persistence, pooled prior interval) and joins the fitted model ``join_after`` after
    # it appeared, at a refit (null: only when the model is refitted).
    retire_after: Duration | None = "7d"
    join_after: Duration | None = "1d"
    # Link outlook (``shadowcast forecast``): P(load > threshold x capacity) per link and
    # horizon from ``link_samples`` joint draws; runout = when the p95 daily peak crosses
    # ``runout_target`` x capacity, looked for within ``runout_horizon``.
    # Time-varying exogenous inputs, each read wherever it exists: shadow-path measurements
    # from the store; bottleneck capacity/headroom of the series' path from link_series
    # (with a topology), from the demands routed over the topology (demand files), or from
    # the service's link loads. An input nothing measured is left out.
    exog: list[str] = Field(default_factory=lambda: list(EXOG_INPUTS), max_length=16)
    threshold: float = Field(0.9, gt=0.0, le=2.0)
    link_samples: int = Field(2000, ge=100, le=100_000)
    runout_target: float = Field(0.8, gt=0.0, le=2.0)
    runout_horizon: Duration = "365d"

    @field_validator("horizons")
    @classmethod
    def _check_horizons(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one horizon")
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

    @field_validator("auto_members")
    @classmethod
    def _check_members(cls, v: list[str]) -> list[str]:
        bad = sorted(set(v) - set(AUTO_MEMBERS))
        if bad:
            raise ValueError(f"unknown member(s) {bad}; choose from {list(AUTO_MEMBERS)}")
        if not v:
            raise ValueError("at least one member")
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
