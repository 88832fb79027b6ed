"""Datasets configuration (YAML key ``datasets``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

#: Capacity given to a link whose file states none (10 Gbit/s), unless the caller says otherwise.
DEFAULT_CAPACITY_BPS = 10e9


class SyntheticConfig(BaseModel):
    """Shape of the synthetic data set (see ``shadowcast.datasets.synthetic``)."""

    model_config = ConfigDict(extra="forbid")

    weeks: float = Field(default=1.0, gt=0, le=52, description="length in weeks")
    step_s: int = Field(default=300, gt=0, le=86400, description="sampling step in seconds")
    seed: int = Field(default=0, ge=0, le=2**32 - 1)
    scale: float = Field(default=1.0, gt=0, le=1e6, description="multiplier after calibration")
    growth_per_week: float = Field(default=0.04, ge=-0.5, le=2.0, description="compound growth")
    noise: float = Field(default=0.06, ge=0, le=1, description="log-normal noise sigma")
    peak_utilisation: float = Field(
        default=0.95, gt=0, le=5, description="peak of the hot_links-th link"
    )
    hot_links: int = Field(default=3, ge=1, le=1000, description="which busiest link is calibrated")
    topology: Path | None = Field(
        default=None, description="graph to use instead of the vendored one"
    )


class DatasetsConfig(BaseModel):
    """Which topology and demand files to read; none means the synthetic data set."""

    model_config = ConfigDict(extra="forbid")

    topology: Path | None = Field(
        default=None, description="SNDlib XML, Topology Zoo GraphML or JSON"
    )
    capacities_from: Path | None = Field(
        default=None, description="take link capacities from this file"
    )
    demands: Path | None = Field(default=None, description="SNDlib folder/.tar.gz/.xml or long CSV")
    default_capacity_bps: float = Field(
        default=DEFAULT_CAPACITY_BPS,
        gt=0,
        le=1e15,
        description="for links whose file states no capacity",
    )
    fill_gaps: bool = Field(default=False, description="fill missing demand steps with zeros")
    synthetic: SyntheticConfig = Field(default_factory=SyntheticConfig)
