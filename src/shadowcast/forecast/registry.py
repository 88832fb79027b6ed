"""The explicit model registry: name -> factory taking keyword options."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shadowcast.errors import ConfigError
from shadowcast.extras import need
from shadowcast.forecast.baselines import Persistence, SeasonalNaive, SeasonalNaiveWeekly
from shadowcast.forecast.core import BaseForecaster
from shadowcast.forecast.ensemble import Ensemble
from shadowcast.forecast.gbm import GlobalGBM
from shadowcast.forecast.profile import ProfileEW
from shadowcast.forecast.stats import Theta


def neural(*args: Any, **options: Any) -> BaseForecaster:
    """The neural model (:mod:`shadowcast.forecast.neural`), imported on first use: it needs
    torch, the optional ``neural`` extra (MissingExtraError naming it otherwise)."""
    need("torch", "the neural forecast model")
    from shadowcast.forecast.neural import NeuralForecaster

    return NeuralForecaster(*args, **options)


neural.name = "neural"  # type: ignore[attr-defined]  # what Ensemble members are keyed by

MODELS: dict[str, Callable[..., BaseForecaster]] = {
    "persistence": Persistence,
    "seasonal_naive": SeasonalNaive,
    "seasonal_naive_weekly": SeasonalNaiveWeekly,
    "profile": ProfileEW,
    "theta": Theta,
    "gbm": GlobalGBM,
    "neural": neural,
    "auto": Ensemble,
}


def make_model(name: str, **options: Any) -> BaseForecaster:
    """Instantiate a registered model; unknown names raise ConfigError listing the choices."""
    try:
        factory = MODELS[name]
    except KeyError:
        raise ConfigError(
            f"forecast.model: unknown model {name!r}; choose one of {sorted(MODELS)}"
        ) from None
    return factory(**options)
