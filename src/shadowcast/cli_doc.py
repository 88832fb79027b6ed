"""Write the CLI reference (docs/cli.md) from the typer app: ``python -m shadowcast.cli_doc``.

A test compares docs/cli.md with :func:`render`, so the reference follows the code.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Iterator
from typing import Any

import typer.main

from shadowcast import exitcodes

HEAD = """# Command-line reference

<!-- generated: `python -m shadowcast.cli_doc > docs/cli.md` (tests/core/test_command_line.py) -->

`shadowcast [--config FILE] [--log-level LEVEL] [--log-format text|json] COMMAND ...`

The settings come from `--config FILE` (default `./shadowcast.yaml` if present) and
`SHADOWCAST_*` environment variables (see [configuration](configuration.md)).

## Exit status

{STATUS}

Every error is one line, `error: ...`, on stderr; `--log-level DEBUG` adds the traceback.
A command group whose optional dependency is missing stays listed and, when run, names
the extra to install (`pip install 'shadowcast-netops[pcap]'`, `[stats]`, `[dask]`, `[plot]`).

## Output and logs

Every command that reports takes `--json` and then prints one JSON object on stdout
(NaN and infinities as `null`); tables, progress and notes otherwise, progress and notes
on stderr. Logs go to stderr: `--log-format text` (default) appends each record's details
as `key=value`, `--log-format json` prints one JSON object per record (`time`, `level`,
`logger`, `message` and the details). The setting `log_format` does the same.

## Shell completion

`shadowcast --install-completion` installs completion for the current shell (bash, zsh,
fish, PowerShell); `shadowcast --show-completion` prints the script to install by hand.
Commands, options and subcommands complete; stage groups load only when completed into.

## Commands
"""


STATUS = [
    (exitcodes.OK, "success"),
    (exitcodes.FAILURE, "runtime failure: the command could not finish (store, network, a bug)"),
    (
        exitcodes.USAGE,
        "bad usage or bad input: an unknown option, a bad settings file, an unreadable input "
        "file (the line names what is wrong)",
    ),
    (
        exitcodes.AT_RISK,
        "`shadowcast forecast` only: at least one link's predicted utilisation or upper bound "
        "reaches `forecast.threshold` (for cron and Nagios); the report is printed as usual",
    ),
]


def _status_table() -> str:
    rows = "\n".join(f"| {code} | {text} |" for code, text in STATUS)
    return "| status | meaning |\n|---|---|\n" + rows


def _commands() -> Any:
    from shadowcast import cli

    group = typer.main.get_command(cli.app)
    for name in cli.SUBCOMMANDS:
        group.add_command(cli.load_command(name), name)  # type: ignore[attr-defined]
    return group


def _walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, cmd
    for name in getattr(cmd, "commands", {}) or {}:
        yield from _walk(cmd.commands[name], (*path, name))


def _default(p: Any) -> str:
    d = p.default
    if d is None or d is False or callable(d) or d == [] or d == ():
        return ""
    if d is True and getattr(p, "secondary_opts", None):
        return str(p.opts[0])
    return f"`{d}`"


def _cell(text: str | None) -> str:
    return " ".join(inspect.cleandoc(text or "").split()).replace("|", "\\|")


def _section(path: tuple[str, ...], cmd: Any) -> str:
    args = [p for p in cmd.params if p.param_type_name == "argument"]
    opts = [p for p in cmd.params if p.param_type_name == "option"]
    usage = " ".join(["shadowcast", *path[1:]])
    if opts:
        usage += " [OPTIONS]"
    usage += "".join(f" {a.name.upper()}{'...' if a.nargs == -1 else ''}" for a in args)
    if getattr(cmd, "commands", None):
        usage += " COMMAND ..."
    lines = [f"### `{' '.join(['shadowcast', *path[1:]])}`", "", f"`{usage}`", ""]
    if cmd.help:
        lines += [inspect.cleandoc(cmd.help).replace("``", "`"), ""]
    rows = []
    for a in args:
        rows.append(f"| `{a.name.upper()}` | {_cell(getattr(a, 'help', ''))} | |")
    for o in opts:
        names = " / ".join(f"`{n}`" for n in [*o.opts, *o.secondary_opts])
        rows.append(f"| {names} | {_cell(o.help).replace('``', '`')} | {_default(o)} |")
    if rows:
        lines += ["| argument / option | meaning | default |", "|---|---|---|", *rows, ""]
    subs = getattr(cmd, "commands", None)
    if subs:
        lines += ["Commands: " + ", ".join(f"`{n}`" for n in subs), ""]
    return "\n".join(lines)


def render() -> str:
    """The whole reference, as docs/cli.md holds it."""
    parts = [HEAD.replace("{STATUS}", _status_table())]
    for path, cmd in _walk(_commands(), ("shadowcast",)):
        parts.append(_section(path, cmd))
    return "\n".join(parts).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
