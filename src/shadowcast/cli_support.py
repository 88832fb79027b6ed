"""What every command reaches through one door: settings, the two consoles, JSON output,
the one-line error printer, the exit codes and the optional-dependency check.

Command modules import from here, never from :mod:`shadowcast.cli` (which imports them).
"""

from __future__ import annotations

import logging
import traceback
from typing import NoReturn

import typer
from rich.markup import escape

from shadowcast import exitcodes
from shadowcast.errors import ShadowcastError
from shadowcast.extras import DISTRIBUTION, EXTRAS, install_hint, need
from shadowcast.output import console, emit_json, emit_record, out
from shadowcast.settings import Settings, load_settings

__all__ = [
    "DISTRIBUTION",
    "EXTRAS",
    "console",
    "emit_json",
    "emit_record",
    "error_exit",
    "error_line",
    "exit_with",
    "exitcodes",
    "install_hint",
    "need",
    "out",
    "print_error",
    "settings_of",
]


def settings_of(ctx: typer.Context) -> Settings:
    """The settings loaded by the root command (defaults + environment when a sub-app
    runs on its own, as in tests)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        root.obj = load_settings()
    return root.obj


def error_line(exc: BaseException) -> str:
    """The one line printed for ``exc``: its message, or its type for a bare exception."""
    text = " ".join(str(exc).split())
    if isinstance(exc, ShadowcastError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def print_error(message: str) -> None:
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True, highlight=False)


def exit_with(exc: BaseException) -> NoReturn:
    """Print ``exc`` on one line (its traceback too at DEBUG) and exit with its code:
    a ShadowcastError's ``exit_code`` (2 for bad input), 1 for anything else."""
    if logging.getLogger().isEnabledFor(logging.DEBUG):
        console.print(
            "".join(traceback.format_exception(exc)).rstrip(), soft_wrap=True, markup=False
        )
    print_error(error_line(exc))
    code = exc.exit_code if isinstance(exc, ShadowcastError) else exitcodes.FAILURE
    raise typer.Exit(code)


def error_exit(exc: ShadowcastError) -> typer.Exit:
    """Print ``exc`` on one line; the Exit to raise (``raise error_exit(exc) from None``)."""
    print_error(error_line(exc))
    return typer.Exit(exc.exit_code)
