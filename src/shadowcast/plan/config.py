"""Planner configuration (YAML key ``plan``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class PlanConfig(BaseModel):
    """How candidate paths are chosen and how the TE LP trades utilisation against churn."""

    model_config = ConfigDict(extra="forbid")

    k_paths: int = Field(default=4, ge=1, le=16, description="candidate paths per OD pair")
    disjoint: bool = Field(
        default=False, description="link-disjoint candidates instead of k shortest"
    )
    path_weight: str = Field(default="hops", description="'hops' or 'latency' for path ranking")
    # Demand quantile planned for, per latency sensitivity: 'mean' or 'pNN' (percentile).
    quantiles: dict[str, str] = Field(
        default_factory=lambda: {"high": "p95", "medium": "p80", "low": "mean"}
    )
    # A class may use a path only if its latency <= stretch × the OD's best + slack.
    latency_stretch: dict[str, float] = Field(default_factory=lambda: {"high": 1.5, "medium": 3.0})
    latency_slack_ms: float = Field(default=5.0, ge=0, le=10_000)
    churn_weight: float = Field(
        default=0.02,
        ge=0,
        le=100,
        description="cost in MLU per unit of demand-weighted sum |x - previous| of the splits: "
        "moving all traffic to other paths costs twice this (it leaves one path, joins another)",
    )
    penalty_weight: float = Field(
        default=0.1,
        ge=0,
        le=100,
        description="weight of the convex utilisation penalty (0 = pure min-MLU)",
    )
    max_changes: int = Field(
        default=20, ge=0, le=100_000, description="most split changes per cycle"
    )
    hysteresis: float = Field(
        default=0.02,
        ge=0,
        le=1,
        description="adopt a new plan only if it lowers planned MLU by this much",
    )
    act_above: float = Field(
        default=0.5, ge=0, le=2, description="keep the state in force while planned MLU is below"
    )
    target_utilisation: float = Field(default=0.9, gt=0, le=1.0, description="shape above this")
    shaping_duration_s: int = Field(default=3600, ge=60, le=7 * 86400)
    move_above: float = Field(
        default=0.8,
        ge=0,
        le=2.0,
        description="move a (class, OD) split only off a link predicted above this utilisation",
    )
    # Which classes get what, by latency sensitivity (high/medium/low) or by class name:
    reserve: list[str] = Field(
        default_factory=lambda: ["high"],
        max_length=64,
        description="classes given bandwidth reservations",
    )
    shape: list[str] = Field(
        default_factory=lambda: ["low"],
        max_length=64,
        description="classes that allow delay: may be shaped",
    )

    @field_validator("path_weight")
    @classmethod
    def _weight(cls, v: str) -> str:
        if v not in ("hops", "latency"):
            raise ValueError("path_weight must be 'hops' or 'latency'")
        return v

    @field_validator("latency_stretch")
    @classmethod
    def _stretch(cls, v: dict[str, float]) -> dict[str, float]:
        for key, x in v.items():
            if not 1.0 <= x <= 100.0:
                raise ValueError(f"latency_stretch.{key}: {x} is not in [1, 100]")
        return v

    @field_validator("quantiles")
    @classmethod
    def _quantiles(cls, v: dict[str, str]) -> dict[str, str]:
        for key, spec in v.items():
            parse_quantile(spec, where=f"quantiles.{key}")
        return v


def parse_quantile(spec: str, *, where: str = "quantile") -> float | None:
    """``'mean'`` -> None; ``'p95'`` -> 95.0. Raises ValueError otherwise."""
    s = spec.strip().lower()
    if s == "mean":
        return None
    if s.startswith("p"):
        try:
            q = float(s[1:])
        except ValueError:
            q = -1.0
        if 50.0 <= q < 100.0:
            return q
    raise ValueError(f"{where}: {spec!r} is not 'mean' or 'pNN' with 50 <= NN < 100")
