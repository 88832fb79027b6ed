"""Settings of the feedback loop (YAML key ``feedback``)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from shadowcast.units import Duration


class FeedbackConfig(BaseModel):
    """What the service does with what its ledger sees.

    Every step the one-step-ahead errors of every (class, OD) series and link are scaled by
    each series' typical error and tested for drift per group (a class at a source site, at
    a destination site; a link) with a two-sided Page-Hinkley test; a second test takes the
    OD series' errors ``drift_ahead`` steps ahead, per site group and per class across the
    backbone. A drift is kept in the store's ``drift_events`` and raises a
    ``ForecastAccuracyDegraded`` alert; a one-step drift makes the group's series adapt
    their level for ``adapt_steps`` and, when ``retrain_on_drift``, refits the models
    ``retrain_after`` later. A change of the routing in force between two steps (the IGP
    routing around a failure, a rollback) is a ``route-change`` event of every link whose
    load it moves by more than ``route_change_margin``. Interval widths are recalibrated
    every step per step ahead and per volume decile. ``challengers`` forecast in shadow,
    scored by the same ledger; one whose NMAE over ``promote_window`` beats the champion's
    by ``promote_margin`` is promoted (the champion goes to shadow); every fit, retrain,
    promotion, demotion and rollback is a row of ``model_events``.
    """

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="false: the ledger only scores, nothing adapts")
    drift_delta: float = Field(
        1.0, gt=0, le=10, description="drift test: change tolerated, in standard units"
    )
    drift_threshold: float = Field(
        12.0, gt=0, le=1000, description="drift test: evidence needed (Page-Hinkley lambda)"
    )
    drift_ahead: int = Field(
        6,
        ge=1,
        le=288,
        description="a second drift test of the OD series, on the errors of the forecasts "
        "made this many steps ahead, per site group and per class across the backbone (a "
        "model that follows its last value absorbs a shift in a step or two: the one-step "
        "test sees a spike); its drifts are recorded and alerted, nothing more; 1: off",
    )
    drift_ahead_baseline_rate: float = Field(
        0.1,
        gt=0,
        le=1,
        description="drift test on forecasts drift_ahead steps ahead: how fast a group's "
        "usual error (mean, deviation) follows its quiet steps (0.1: over about 10 steps; "
        "errors some steps ahead carry a bias that comes with the hour of day)",
    )
    drift_min_steps: int = Field(
        24, ge=2, le=100_000, description="steps learnt before the drift test is armed"
    )
    drift_cooldown_steps: int = Field(
        24, ge=0, le=100_000, description="steps a drifted group stays quiet"
    )
    route_change_margin: float = Field(
        0.2,
        gt=0,
        le=100,
        description="a routing change is an event of every link whose load it moves by more "
        "than this share",
    )
    adapt_steps: int = Field(
        72, ge=0, le=100_000, description="steps a drifted group's series adapt their level"
    )
    adapt_rate: float = Field(
        0.3, gt=0, le=1, description="how fast an adapting series' level ratio learns"
    )
    decile_gamma: float = Field(
        0.02, ge=0, le=1, description="per-decile interval recalibration rate (0: off)"
    )
    retrain_on_drift: bool = Field(True, description="refit the models after a drift")
    retrain_after: Duration = Field("1h", description="refit this long after a drift")
    retrain_min_interval: Duration = Field("6h", description="least time between drift refits")
    accuracy_halflife: Duration = Field("1d", description="half-life of the rolling accuracy")
    challengers: list[str] = Field(
        default_factory=list,
        max_length=8,
        description="model families forecasting in shadow beside the champion (forecast.model)",
    )
    shadow_previous: bool = Field(
        False, description="a champion replaced by a refit on drift stays in shadow"
    )
    promote_window: Duration = Field(
        "1d", description="a challenger is judged against the champion over this window"
    )
    promote_margin: float = Field(
        0.05, ge=0, le=0.9, description="promoted when its NMAE is this share below the champion's"
    )
    summary_every: Duration = Field(
        "1h", description="rolling accuracy per group to the store's accuracy_groups this often"
    )
