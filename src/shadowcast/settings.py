"""One typed Settings, composed of each stage's Config, validated once at load.

Sources, later wins: defaults < YAML file < environment (``SHADOWCAST_<SECTION>__<FIELD>``,
e.g. ``SHADOWCAST_STORE__BACKEND=memory``; values are parsed as YAML scalars/lists).
A bad value is rejected at load with the field's dotted path and the reason.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from shadowcast.alert.config import AlertConfig
from shadowcast.errors import ConfigError
from shadowcast.replay.config import ReplayConfig

ENV_PREFIX = "SHADOWCAST_"
# SHADOWCAST_* variables that are not settings: the test data folder, and credentials that
# are read from the environment only (store.clickhouse).
NOT_SETTINGS = frozenset(
    {"SHADOWCAST_DATA", "SHADOWCAST_CLICKHOUSE_USER", "SHADOWCAST_CLICKHOUSE_PASSWORD"}
)

# Stage configs, by YAML key: (module, class). Stages whose module is missing are skipped
# so a partial install still loads; each present one is validated strictly.
STAGE_CONFIGS: dict[str, tuple[str, str]] = {
    "datasets": ("shadowcast.datasets.config", "DatasetsConfig"),
    "store": ("shadowcast.store.config", "StoreConfig"),
    "collect": ("shadowcast.collect.config", "CollectConfig"),
    "profile": ("shadowcast.profile.config", "ProfileConfig"),
    "forecast": ("shadowcast.forecast.config", "ForecastConfig"),
    "plan": ("shadowcast.plan.config", "PlanConfig"),
    "shadow": ("shadowcast.shadow.config", "ShadowConfig"),
    "act": ("shadowcast.act.config", "ActConfig"),
}


class CoreSettings(BaseModel):
    """Settings that belong to no single stage."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Field(Path("var"), description="where the embedded store, reports live")
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    alert: AlertConfig = Field(default_factory=AlertConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)


def _stage_fields() -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, (mod, cls) in STAGE_CONFIGS.items():
        try:
            model = getattr(importlib.import_module(mod), cls)
        except (ImportError, AttributeError):
            continue
        fields[key] = (model, Field(default_factory=model))
    return fields


Settings: type[CoreSettings] = create_model(  # type: ignore[call-overload]
    "Settings", __base__=CoreSettings, **_stage_fields()
)


def format_validation_error(exc: ValidationError, source: str, section: str = "") -> str:
    """One line naming every bad field by its dotted path (under ``section``, if given)."""
    head = [section] if section else []
    parts = []
    for err in exc.errors():
        path = ".".join([*head, *(str(p) for p in err["loc"])]) or "(root)"
        parts.append(f"{path}: {err['msg']} (got {err.get('input')!r})")
    return f"invalid settings in {source}: " + "; ".join(parts)


def _env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or name in NOT_SETTINGS:
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        try:
            node[path[-1]] = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ConfigError(f"environment {name}: not a valid value: {exc}") from exc
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            base[k] = _merge(base[k], v)
        else:
            base[k] = v
    return base


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> CoreSettings:
    """Load and validate settings; raises ConfigError naming the file and field."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        try:
            text = p.read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read settings file {p}: {exc.strerror}") from exc
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"{p}: top level must be a mapping, got {type(loaded).__name__}")
        data = loaded or {}
    env = _env_overrides(os.environ if environ is None else environ)
    if env:
        source += " + environment"
    data = _merge(data, env)
    if "data_dir" in data and "store" in Settings.model_fields:
        store = data.setdefault("store", {})
        if isinstance(store, dict):
            store.setdefault("data_dir", data["data_dir"])  # the store follows data_dir
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from exc
