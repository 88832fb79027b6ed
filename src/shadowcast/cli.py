"""The ``shadowcast`` command line (typer + rich)."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from shadowcast import __version__
from shadowcast.errors import ShadowcastError
from shadowcast.output import emit_json
from shadowcast.settings import CoreSettings, load_settings

console = Console(stderr=True)
out = Console()

app = typer.Typer(
    name="shadowcast",
    help="Predict which backbone links run out of capacity, which applications drive it, "
    "and act before they do.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Stage command groups: name -> (module, attribute). Explicit, no import side effects.
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "data": (
        "shadowcast.datasets.commands",
        "app",
        "Inspect topology/demand files; write the synthetic data set.",
    ),
    "collect": ("shadowcast.collect.commands", "app", "Receive NetFlow/IPFIX/sFlow."),
    "ingest": ("shadowcast.collect.commands", "ingest_app", "Ingest pcaps through nDPI."),
    "profile": ("shadowcast.profile.commands", "app", "Application behaviour profiles."),
    "forecast": (
        "shadowcast.forecast.commands",
        "app",
        "Forecast demand and link load with intervals; runout per link.",
    ),
    "plan": ("shadowcast.plan.commands", "app", "Traffic-engineering plans and what-ifs."),
    "shadow": ("shadowcast.shadow.commands", "app", "Shadow tunnels and STAMP probes."),
    "lab": ("shadowcast.lab.commands", "app", "Network-namespace lab backbone."),
    "store": ("shadowcast.store.commands", "app", "Inspect and maintain the store."),
}


def settings_of(ctx: typer.Context) -> CoreSettings:
    obj = ctx.find_root().obj
    assert isinstance(obj, CoreSettings)
    return obj


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="YAML settings (default: ./shadowcast.yaml if present)"
        ),
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING, ERROR")] = None,
) -> None:
    if config is None and Path("shadowcast.yaml").is_file():
        config = Path("shadowcast.yaml")
    settings = load_settings(config)
    level = log_level or settings.log_level
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = settings


@app.command()
def version() -> None:
    """Print the version."""
    out.print(__version__)


config_app = typer.Typer(help="Settings: check and show.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(path: Path) -> None:
    """Validate a settings file; exits non-zero naming the bad field."""
    load_settings(path)
    out.print(f"[green]ok[/green] {path}")


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective settings (defaults + file + environment) as JSON."""
    emit_json(settings_of(ctx).model_dump(mode="json"))


def _register() -> None:
    from shadowcast.replay.commands import eval_app, replay_cmd

    app.command("replay")(replay_cmd)
    from shadowcast.service.commands import run_cmd

    app.command("run")(run_cmd)
    from shadowcast.plan.commands import eval_te

    eval_app.command("te")(eval_te)
    app.add_typer(eval_app, name="eval")
    for name, (mod, attr, help_text) in SUBCOMMANDS.items():
        try:
            sub = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError):
            continue
        app.add_typer(sub, name=name, help=help_text)


_register()


def main() -> None:
    try:
        app()
    except ShadowcastError as exc:
        console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
