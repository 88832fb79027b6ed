"""The command line as a Unix tool: start-up cost, exit codes, one-line errors, logs."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from shadowcast import cli, exitcodes
from shadowcast.errors import DataError, StoreError
from shadowcast.logs import JsonFormatter, KeyValueFormatter

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("scipy", "pandas", "duckdb", "lightgbm", "matplotlib", "pyarrow", "numpy", "networkx")
runner = CliRunner()


def _python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        cwd=REPO,
    )


def test_settings_import_no_heavy_module() -> None:
    proc = _python(
        "import sys, shadowcast.settings, shadowcast.cli_support\n"
        f"print([m for m in {HEAVY!r} if m in sys.modules])"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_help_lists_every_group_without_loading_them() -> None:
    proc = _python(
        "import sys\nfrom shadowcast.cli import main\ntry:\n    main(['--help'])\n"
        "except SystemExit:\n    pass\n"
        f"print('HEAVY', [m for m in {HEAVY!r} if m in sys.modules])"
    )
    assert proc.returncode == 0, proc.stderr
    for name in cli.SUBCOMMANDS:
        assert f" {name} " in proc.stdout
    assert "HEAVY []" in proc.stdout


def test_version_starts_fast() -> None:
    code = "from shadowcast.cli import main; main()"
    _python(code, "version")  # warm the file cache
    t0 = time.perf_counter()
    proc = _python(code, "version")
    elapsed = time.perf_counter() - t0
    assert proc.returncode == 0 and proc.stdout.strip() == cli.__version__
    assert elapsed < 1.5, elapsed


# --- exit codes and one-line errors ----------------------------------------------

boom_app = typer.Typer()


@boom_app.command("raise")
def _raise(kind: str) -> None:
    if kind == "runtime":
        raise RuntimeError("disk on fire")
    if kind == "store":
        raise StoreError("the store refused the write")
    raise DataError("demands.csv:3: not a number")


@pytest.fixture
def boom(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setitem(cli.SUBCOMMANDS, "boom", (__name__, "boom_app", "test only"))
    yield


@pytest.mark.parametrize(
    ("kind", "code", "line"),
    [
        ("runtime", exitcodes.FAILURE, "error: RuntimeError: disk on fire"),
        ("store", exitcodes.FAILURE, "error: the store refused the write"),
        ("data", exitcodes.USAGE, "error: demands.csv:3: not a number"),
    ],
)
def test_errors_are_one_line_with_their_exit_code(
    boom: None, kind: str, code: int, line: str
) -> None:
    res = runner.invoke(cli.app, ["boom", "raise", kind])
    assert res.exit_code == code
    assert res.output.strip() == line


def test_traceback_only_at_debug(boom: None) -> None:
    res = runner.invoke(cli.app, ["--log-level", "DEBUG", "boom", "raise", "runtime"])
    assert res.exit_code == exitcodes.FAILURE
    assert "Traceback (most recent call last)" in res.output
    assert res.output.strip().splitlines()[-1] == "error: RuntimeError: disk on fire"


def test_bad_usage_and_bad_settings_exit_2(tmp_path: Path) -> None:
    assert runner.invoke(cli.app, ["no-such-command"]).exit_code == exitcodes.USAGE
    assert runner.invoke(cli.app, ["version", "--bogus"]).exit_code == exitcodes.USAGE
    bad = tmp_path / "s.yaml"
    bad.write_bytes(b"\x00\xff\xfe binary")
    res = runner.invoke(cli.app, ["-c", str(bad), "version"])
    assert res.exit_code == exitcodes.USAGE
    assert res.output.strip().startswith("error:") and len(res.output.strip().splitlines()) == 1
    res = runner.invoke(cli.app, ["config", "check", str(bad)])
    assert res.exit_code == exitcodes.USAGE and "not a text settings file" in res.output


def test_unrelated_variable_does_not_break_commands(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHADOWCAST_LOGDIR", "/x")
    res = runner.invoke(cli.app, ["config", "show"])
    assert res.exit_code == 0 and json.loads(res.stdout)["store"]["backend"] == "duckdb"
    monkeypatch.setenv("SHADOWCAST_STORE__THREDS", "4")
    res = runner.invoke(cli.app, ["config", "show"])
    assert res.exit_code == exitcodes.USAGE and "SHADOWCAST_STORE__THREDS" in res.output


def test_group_with_missing_dependency_stays_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "needs_nfstream.py").write_text(
        "import nfstream\nimport typer\napp = typer.Typer()\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "nfstream", None)  # as if not installed
    monkeypatch.setitem(cli.SUBCOMMANDS, "capture", ("needs_nfstream", "app", "Capture."))
    listing = runner.invoke(cli.app, ["--help"])
    assert listing.exit_code == 0 and "capture" in listing.output
    res = runner.invoke(cli.app, ["capture", "anything", "--at-all"])
    assert res.exit_code == exitcodes.FAILURE
    assert res.output.strip() == (
        "error: shadowcast capture needs 'nfstream': pip install 'shadowcast-netops[pcap]'"
    )


def _leaves(cmd: object, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    subs = getattr(cmd, "commands", None)
    if subs is None:
        yield path, cmd
        return
    for name in list(subs):
        yield from _leaves(subs[name], (*path, name))


# Commands that report nothing (close) or report JSON only (config show).
NO_JSON = {("shadow", "close"), ("config", "show")}


def test_every_reporting_command_has_json() -> None:
    group = typer.main.get_command(cli.app)
    for name in cli.SUBCOMMANDS:
        group.add_command(cli.load_command(name), name)  # type: ignore[attr-defined]
    missing = [
        " ".join(path)
        for path, cmd in _leaves(group)
        if path not in NO_JSON and not any("--json" in p.opts for p in cmd.params)  # type: ignore[attr-defined]
    ]
    assert missing == []


# --- logs ------------------------------------------------------------------------


def _record() -> logging.LogRecord:
    log = logging.getLogger("shadowcast.act.linux")
    return log.makeRecord(
        log.name,
        logging.WARNING,
        __file__,
        1,
        "linux apply failed, rolled back",
        (),
        None,
        extra={"plan": "p-42", "error": "tc: RTNETLINK answers: File exists"},
    )


def test_text_logs_keep_the_extra_fields() -> None:
    line = KeyValueFormatter().format(_record())
    assert line.endswith(
        "linux apply failed, rolled back plan=p-42 error='tc: RTNETLINK answers: File exists'"
    )


def test_json_logs_are_one_object_per_line() -> None:
    doc = json.loads(JsonFormatter().format(_record()))
    assert doc["message"] == "linux apply failed, rolled back"
    assert doc["plan"] == "p-42" and doc["level"] == "WARNING"


def test_log_format_json_on_the_command_line(tmp_path: Path) -> None:
    db = tmp_path / "s.duckdb"
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    args = [sys.executable, "-m", "shadowcast.cli", "--log-format", "json", "store"]
    made = subprocess.run(
        [*args, "retain", "--path", str(db), "--json"], capture_output=True, text=True, env=env
    )
    assert made.returncode == exitcodes.USAGE and "no store at" in made.stderr
    from shadowcast.store.duckdb import DuckDBStore

    DuckDBStore(str(db)).close()
    proc = subprocess.run(
        [*args, "stats", "--path", str(db), "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    logs = [json.loads(line) for line in proc.stderr.splitlines()]
    opened = next(d for d in logs if d["message"] == "store opened")
    assert opened["backend"] == "duckdb" and opened["logger"] == "shadowcast.store.config"
    assert json.loads(proc.stdout)["backend"] == "duckdb"


def test_setup_logging_replaces_its_handler() -> None:
    from shadowcast.logs import setup_logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    buf = io.StringIO()
    try:
        setup_logging("INFO", "json", buf)
        setup_logging("INFO", "json", buf)
        logging.getLogger("shadowcast.test").info("hello", extra={"k": 1})
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert [json.loads(x)["k"] for x in buf.getvalue().splitlines()] == [1]


# --- the CLI reference ------------------------------------------------------------


def test_cli_reference_is_up_to_date() -> None:
    from shadowcast.cli_doc import render

    doc = (REPO / "docs" / "cli.md").read_text()
    assert doc == render(), "docs/cli.md is stale: python -m shadowcast.cli_doc > docs/cli.md"


def test_extras_name_the_install_line(monkeypatch: pytest.MonkeyPatch) -> None:
    from shadowcast.errors import MissingExtraError
    from shadowcast.extras import install_hint, need

    assert install_hint("matplotlib.pyplot") == "pip install 'shadowcast-netops[plot]'"
    assert install_hint("statsforecast") == "pip install 'shadowcast-netops[stats]'"
    monkeypatch.setitem(sys.modules, "nfstream", None)
    with pytest.raises(MissingExtraError, match=r"shadowcast-netops\[pcap\]") as err:
        need("nfstream", "reading pcaps")
    assert err.value.exit_code == exitcodes.FAILURE


def test_replay_plot_needs_the_plot_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without matplotlib the replay's plot is skipped (None; the command then prints a note
    with the install line and goes on)."""
    from shadowcast.replay.report import plot_busiest

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert plot_busiest(None, Path("unused.png")) is None  # type: ignore[arg-type]
