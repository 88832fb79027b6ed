"""Actuation configuration (YAML key ``act``) and the actuator registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from shadowcast.errors import ConfigError

if TYPE_CHECKING:
    from shadowcast.act.base import Actuator


class ActConfig(BaseModel):
    """Which actuator applies plans, and the guardrails around it."""

    model_config = ConfigDict(extra="forbid")

    actuator: Literal["dry-run", "webhook", "linux"] = Field(
        default="dry-run", description="dry-run | webhook | linux"
    )
    dry_run: bool = Field(default=True, description="render only; never change the network")
    max_changes: int = Field(
        default=20, ge=0, le=100_000, description="most (class, OD) changes per plan"
    )
    format: Literal["json", "yaml"] = Field(default="json", description="dry-run: json | yaml")
    out_dir: str | None = Field(default=None, description="dry-run: write plans here")
    webhook_url: str | None = None
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=300)


def _dry(cfg: ActConfig) -> Actuator:
    from shadowcast.act.dryrun import DryRunActuator

    return DryRunActuator(cfg.format, cfg.out_dir)


def _hook(cfg: ActConfig) -> Actuator:
    from shadowcast.act.webhook import WebhookActuator

    if not cfg.webhook_url:
        raise ConfigError("act.webhook_url: required when act.actuator is 'webhook'")
    return WebhookActuator(cfg.webhook_url, timeout_s=cfg.webhook_timeout_s)


# The linux actuator needs a LinuxBinding (routers, ports, prefixes): build it in code.
ACTUATORS: dict[str, Callable[[ActConfig], Actuator]] = {"dry-run": _dry, "webhook": _hook}


def make_actuator(cfg: ActConfig, **_: Any) -> Actuator:
    try:
        factory = ACTUATORS[cfg.actuator]
    except KeyError:
        raise ConfigError(
            f"act.actuator: unknown actuator {cfg.actuator!r}; choose one of {sorted(ACTUATORS)}"
            " (linux is constructed with a LinuxBinding)"
        ) from None
    return factory(cfg)
