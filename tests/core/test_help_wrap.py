"""``--help`` of every command whose docstring has more than one paragraph wraps once, at
the terminal's width: no word or two left alone on a line inside a paragraph (rich kept
the docstring's hard line breaks and wrapped each line again)."""

from __future__ import annotations

import inspect

import pytest
from typer.testing import CliRunner

from shadowcast.cli import app
from shadowcast.cli_doc import _commands, _walk

WIDTH = 80


def _multi_paragraph() -> list[tuple[str, ...]]:
    out = []
    for path, cmd in _walk(_commands(), ("shadowcast",)):
        paras = inspect.cleandoc(cmd.help or "").partition("\f")[0].split("\n\n")
        if len(paras) > 1 and any("\n" in p for p in paras[1:]):
            out.append(path[1:])
    return out


MULTI = _multi_paragraph()


def test_the_known_long_helps_are_checked() -> None:
    assert {("eval", "feedback"), ("eval", "alerts"), ("run",), ("replay",)} <= set(MULTI)


@pytest.mark.parametrize("path", MULTI, ids=" ".join)
def test_help_paragraphs_are_filled(path: tuple[str, ...]) -> None:
    res = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(WIDTH)})
    assert res.exit_code == 0, res.output
    lines = res.output.splitlines()
    start = next(i for i, ln in enumerate(lines) if "Usage:" in ln) + 1
    end = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("╭"))
    text = [ln.strip() for ln in lines[start:end]]
    short = [
        a for a, b in zip(text, text[1:], strict=False)
        if a and b and len(a) < WIDTH * 0.6  # a line inside a paragraph, not its last
    ]  # fmt: skip
    assert short == [], f"{' '.join(path)} --help:\n" + "\n".join(lines[start:end])


def test_flow_help_keeps_verbatim_blocks_and_what_follows_form_feed() -> None:
    import click

    from shadowcast.cli import flow_help

    cmd = click.Command(
        "x",
        help="One\n    line.\n\n    Two\n    lines.\n\n    \b\n    a\n    b\n    \f\n    x\n    y",
    )
    flow_help(click.Group("g", commands=[cmd]))
    assert cmd.help == "One line.\n\nTwo lines.\n\n\b\na\nb\n\f\nx\ny"
