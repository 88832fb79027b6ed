"""The ``shadowcast`` command line (typer + rich).

Stage command groups are imported when they run, not at start-up: ``shadowcast --help``
lists them from :data:`SUBCOMMANDS` and ``shadowcast version`` loads only the settings.
A group whose optional dependency is missing stays listed and, when run, says which
extra to install. Every error ends as one line on stderr and an exit status from
:mod:`shadowcast.exitcodes` (the traceback too with ``--log-level DEBUG``).
"""

from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.core
import typer.main

from shadowcast import __version__, exitcodes
from shadowcast.cli_support import (
    emit_json,
    exit_with,
    install_hint,
    out,
    print_error,
    settings_of,
)
from shadowcast.errors import MissingExtraError
from shadowcast.logs import FORMATS, setup_logging
from shadowcast.settings import load_settings

# Stage command groups: name -> (module, attribute, help). Explicit, no import side effects;
# each is imported only when it runs (or when the CLI reference is generated).
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
    "act": ("shadowcast.act.commands", "app", "Apply a saved plan through the actuator."),
    "shadow": ("shadowcast.shadow.commands", "app", "Shadow tunnels and STAMP probes."),
    "lab": ("shadowcast.lab.commands", "app", "Network-namespace lab backbone."),
    "store": ("shadowcast.store.commands", "app", "Inspect and maintain the store."),
    "run": (
        "shadowcast.service.commands",
        "run_cmd",
        "Run the living service: collect, profile, forecast, alert, plan and act.",
    ),
    "replay": (
        "shadowcast.replay.commands",
        "replay_cmd",
        "Replay traffic through the service on a simulated network, beside doing nothing.",
    ),
    "eval": (
        "shadowcast.replay.commands",
        "eval_app",
        "Evaluate forecasters and traffic engineering on a series.",
    ),
}


def _passes(exc: BaseException) -> bool:
    """Click's own exceptions (exit, abort, usage errors) go on to click, whichever click
    typer uses (recent typers vendor it)."""
    return any(c.__name__ in ("Exit", "Abort", "ClickException") for c in type(exc).__mro__)


def _command(name: str, **attrs: Any) -> typer.core.TyperCommand:
    return typer.core.TyperCommand(name=name, **attrs)


def _load(name: str) -> Any:
    """The click command of stage group ``name`` (imports its module)."""
    module, attr, _ = SUBCOMMANDS[name]
    obj = getattr(importlib.import_module(module), attr)
    if name == "eval":
        from shadowcast.plan.commands import eval_te
        from shadowcast.replay.evals_feedback import eval_feedback

        if not any(c.name == "te" for c in obj.registered_commands):
            obj.command("te")(eval_te)
        if not any(c.name == "feedback" for c in obj.registered_commands):
            obj.command("feedback")(eval_feedback)
    if isinstance(obj, typer.Typer):
        return typer.main.get_group(obj)
    single = typer.Typer(add_completion=False)
    single.command(name)(obj)
    return typer.main.get_command(single)


def _missing(name: str, exc: ImportError) -> typer.core.TyperCommand:
    """A stand-in for a group whose import failed: it says what to install."""
    missing = exc.name or str(exc)
    message = f"shadowcast {name} needs {missing!r}: {install_hint(missing)}"

    def run() -> None:
        raise MissingExtraError(message)

    return _command(
        name,
        callback=run,
        help=f"{SUBCOMMANDS[name][2]} (unavailable: {install_hint(missing)})",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )


def flow_help(cmd: Any) -> Any:
    """``cmd`` and its subcommands with each help paragraph on one line.

    Typer's rich help keeps a docstring's hard line breaks after its first paragraph and
    wraps every line again at the terminal's width: a word or two alone on every other
    line. One line per paragraph is wrapped once, at any width. A paragraph that starts
    with click's ``\\b`` stays as written; what follows ``\\f`` is not help and is kept."""
    if cmd.help:
        head, cut, tail = inspect.cleandoc(cmd.help).partition("\f")
        paras = (p if p.startswith("\b") else " ".join(p.split()) for p in head.split("\n\n"))
        cmd.help = "\n\n".join(p for p in paras if p) + cut + tail
    for sub in (getattr(cmd, "commands", None) or {}).values():
        flow_help(sub)
    return cmd


class LazyGroup(typer.core.TyperGroup):
    """The root group: stage groups load on use; errors become one line and a status."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in SUBCOMMANDS if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        cmd = super().get_command(ctx, cmd_name)
        if cmd is None and cmd_name in SUBCOMMANDS:  # help listings and completion
            text = SUBCOMMANDS[cmd_name][2]
            return _command(cmd_name, help=text, short_help=text)
        return cmd if cmd is None else flow_help(cmd)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args and args[0] in SUBCOMMANDS and args[0] not in self.commands:
            self.add_command(load_command(args[0]), args[0])
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:  # `shadowcast ... | head`: the reader left
            sys.stderr.close()
            raise typer.Exit(exitcodes.FAILURE) from None
        except Exception as exc:
            if _passes(exc):
                raise
            exit_with(exc)


def load_command(name: str) -> Any:
    """Stage group ``name``, or its stand-in when an optional dependency is missing."""
    try:
        return _load(name)
    except ImportError as exc:
        if (exc.name or "shadowcast").split(".")[0] == "shadowcast":
            raise  # our own module: a bug, not a missing extra
        return _missing(name, exc)


app = typer.Typer(
    name="shadowcast",
    cls=LazyGroup,
    help="Predict which backbone links run out of capacity, which applications drive it, "
    "and act before they do.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
)


def _log_format(value: str | None) -> str | None:
    if value is not None and value not in FORMATS:
        raise typer.BadParameter(f"{value!r}: choose text or json")
    return value


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config", "-c", help="YAML settings (default: ./shadowcast.yaml if present)"
        ),
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="DEBUG, INFO, WARNING, ERROR (DEBUG: tracebacks too)")
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(help="text (key=value details) or json (one object per line)",
                     callback=_log_format),
    ] = None,
) -> None:  # fmt: skip
    if log_level is not None and log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise typer.BadParameter(f"{log_level!r}: choose DEBUG, INFO, WARNING or ERROR")
    setup_logging(log_level or "INFO", log_format or "text")  # until the settings are read
    if config is None and Path("shadowcast.yaml").is_file():
        config = Path("shadowcast.yaml")
    settings = load_settings(config)
    setup_logging(log_level or settings.log_level, log_format or settings.log_format)
    ctx.obj = settings


@app.command()
def version(
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Print the version."""
    if as_json:
        emit_json({"version": __version__})
    else:
        out.print(__version__, highlight=False)


config_app = typer.Typer(help="Settings: check and show.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("check")
def config_check(
    path: Path,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Validate a settings file; exits 2 naming the bad field."""
    load_settings(path)
    if as_json:
        emit_json({"path": str(path), "ok": True})
    else:
        out.print(f"[green]ok[/green] {path}")


@config_app.command("show")
def config_show(ctx: typer.Context) -> None:
    """Print the effective settings (defaults + file + environment) as JSON."""
    emit_json(settings_of(ctx).model_dump(mode="json"))


def main(args: list[str] | None = None) -> None:
    """The console script: the app, with anything that still escapes on one line."""
    try:
        app(args=args)
    except SystemExit:
        raise
    except Exception as exc:  # raised outside a command (argument parsing, completion)
        print_error(f"{type(exc).__name__}: {exc}")
        sys.exit(exitcodes.FAILURE)


if __name__ == "__main__":
    main()
