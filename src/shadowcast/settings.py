"""One typed Settings, composed of each stage's Config, validated once at load.

Sources, later wins: defaults < YAML file < environment (``SHADOWCAST_<SECTION>__<FIELD>``,
e.g. ``SHADOWCAST_STORE__BACKEND=memory``, or a top-level field, ``SHADOWCAST_DATA_DIR``;
values are parsed as YAML scalars/lists). A variable naming an unknown field of a known
section is an error naming the variable; any other ``SHADOWCAST_*`` variable is none of
ours and is ignored. A bad value is rejected at load with the field's dotted path and the
reason, never with the whole input.

The stage Config modules import only pydantic and light helpers, so loading the settings
does not pull numpy, pandas, scipy or a store backend in.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shadowcast.act.config import ActConfig
from shadowcast.alert.config import AlertConfig
from shadowcast.api.config import ApiConfig
from shadowcast.collect.config import CollectConfig
from shadowcast.datasets.config import DatasetsConfig
from shadowcast.errors import ConfigError
from shadowcast.forecast.config import ForecastConfig
from shadowcast.plan.config import PlanConfig
from shadowcast.profile.config import ProfileConfig
from shadowcast.replay.config import ReplayConfig
from shadowcast.rollup.config import RollupConfig
from shadowcast.service.config import ServiceConfig
from shadowcast.shadow.config import ShadowConfig
from shadowcast.store.config import StoreConfig

ENV_PREFIX = "SHADOWCAST_"
MAX_FILE_BYTES = 1 << 20  # a settings file is a few KB; refuse anything past 1 MiB
_MAX_ERRORS = 5  # fields named in one error line
_MAX_SHOWN = 60  # characters of a rejected value shown back


class Settings(BaseModel):
    """Every setting: the core fields and one typed section per stage."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Path = Field(Path("var"), description="where the embedded store, reports live")
    log_level: str = Field("INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    log_format: Literal["text", "json"] = Field(
        "text", description="text: one line with key=value details; json: one object per line"
    )
    datasets: DatasetsConfig = Field(default_factory=DatasetsConfig)
    store: StoreConfig = Field(default_factory=StoreConfig)
    collect: CollectConfig = Field(default_factory=CollectConfig)
    profile: ProfileConfig = Field(default_factory=ProfileConfig)
    forecast: ForecastConfig = Field(default_factory=ForecastConfig)
    plan: PlanConfig = Field(default_factory=PlanConfig)
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)
    act: ActConfig = Field(default_factory=ActConfig)
    alert: AlertConfig = Field(default_factory=AlertConfig)
    replay: ReplayConfig = Field(default_factory=ReplayConfig)
    rollup: RollupConfig = Field(default_factory=RollupConfig)
    service: ServiceConfig = Field(default_factory=ServiceConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: ``*name`` is refused, so a few bytes cannot expand to gigabytes."""

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            mark = self.peek_event().start_mark  # type: ignore[no-untyped-call]
            raise yaml.MarkedYAMLError(
                problem="aliases (*name) are not allowed in settings", problem_mark=mark
            )
        return super().compose_node(parent, index)


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """One line: where and what, without echoing the input."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        m = exc.problem_mark
        return f"line {m.line + 1} column {m.column + 1}: {exc.problem}"
    return _brief(" ".join(str(exc).split()), 200)


def parse_yaml(text: str, where: str) -> Any:
    """``text`` parsed as YAML without aliases; ConfigError naming ``where`` otherwise."""
    try:
        return yaml.load(text, Loader=_NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML: {_yaml_problem(exc)}") from None


def _brief(text: str, limit: int = _MAX_SHOWN) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_validation_error(exc: ValidationError, source: str, section: str = "") -> str:
    """One line naming every bad field by its dotted path (under ``section``, if given)."""
    head = [section] if section else []
    parts = []
    errors = exc.errors()
    for err in errors[:_MAX_ERRORS]:
        path = ".".join([*head, *(str(p) for p in err["loc"])]) or "(root)"
        got = _brief(repr(err.get("input")))
        parts.append(f"{path}: {_brief(err['msg'], 200)} (got {got})")
    if len(errors) > _MAX_ERRORS:
        parts.append(f"and {len(errors) - _MAX_ERRORS} more")
    return f"invalid settings in {source}: " + "; ".join(parts)


def _is_model(ann: Any) -> bool:
    return isinstance(ann, type) and issubclass(ann, BaseModel)


def _check_env_path(name: str, path: list[str]) -> None:
    """Raise ConfigError if ``path`` is not a field (or a key under a mapping field)."""
    model: type[BaseModel] = Settings
    for i, part in enumerate(path):
        field = model.model_fields.get(part)
        if field is None:
            where = ".".join(path[:i]) or "the top level"
            known = ", ".join(sorted(model.model_fields))
            raise ConfigError(f"environment {name}: {where} has no field {part!r} (known: {known})")
        ann = field.annotation
        if _is_model(ann):
            model = ann  # type: ignore[assignment]
            continue
        if getattr(ann, "__origin__", None) is dict or i == len(path) - 1:
            return  # a mapping's keys are free; a leaf is checked by the model
        raise ConfigError(f"environment {name}: {'.'.join(path[: i + 1])} has no sub-fields")
    raise ConfigError(f"environment {name}: names a section, not a field")


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """The settings given by ``SHADOWCAST_*`` variables, as a nested mapping."""
    out: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = name[len(ENV_PREFIX) :].lower().split("__")
        if path[0] not in Settings.model_fields:
            continue  # SHADOWCAST_DATA, SHADOWCAST_LOGDIR, ...: not a setting
        _check_env_path(name, path)
        if len(raw) > MAX_FILE_BYTES:
            raise ConfigError(f"environment {name}: value longer than {MAX_FILE_BYTES} bytes")
        node = out
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = parse_yaml(raw, f"environment {name}")
    return out


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(base.get(k), dict):
            base[k] = _merge(base[k], v)
        else:
            base[k] = v
    return base


def read_settings_file(path: str | Path) -> dict[str, Any]:
    """The mapping in a YAML settings file; ConfigError (one line) for anything else."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read settings file {p}: {exc.strerror or exc}") from None
    if len(raw) > MAX_FILE_BYTES:
        raise ConfigError(f"{p}: larger than {MAX_FILE_BYTES} bytes: not a settings file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{p}: not a text settings file (byte {exc.start} is not UTF-8)"
        ) from None
    loaded = parse_yaml(text, str(p))
    if loaded is not None and not isinstance(loaded, dict):
        raise ConfigError(f"{p}: top level must be a mapping, got {type(loaded).__name__}")
    return loaded or {}


def load_settings(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> Settings:
    """Load and validate settings; raises ConfigError naming the file and field."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        data = read_settings_file(path)
    env = env_overrides(os.environ if environ is None else environ)
    if env:
        source += " + environment"
    data = _merge(data, env)
    if "data_dir" in data:  # the store follows data_dir unless set
        store = data.setdefault("store", {})
        if isinstance(store, dict):
            store.setdefault("data_dir", data["data_dir"])
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, source)) from None
