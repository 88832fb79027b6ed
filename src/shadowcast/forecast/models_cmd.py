"""CLI: ``shadowcast forecast models``: the service's model versions, and rolling one back."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from shadowcast.api import client
from shadowcast.cli_support import emit_json, error_exit, out, settings_of
from shadowcast.errors import ConfigError, ForecastError, ShadowcastError
from shadowcast.forecast.arena import on_disk, read_versions, request_rollback

app = typer.Typer(
    help="The service's forecast model versions: list them, roll one back.",
    no_args_is_help=True,
)

StateDir = Annotated[
    Path | None,
    typer.Option(
        "--state-dir",
        help="the service's state folder (default: service.state_dir, else data_dir/state; "
        "a replay's is data_dir/replay-state)",
    ),
]


def _folder(ctx: typer.Context, state_dir: Path | None) -> Path:
    s = settings_of(ctx)
    base = state_dir or s.service.state_dir or Path(s.data_dir) / "state"
    folder = Path(base) / "models"
    if not folder.is_dir():
        raise ConfigError(f"--state-dir {base}: no saved models (no {folder})")
    return folder


@app.command("list")
def list_models(
    ctx: typer.Context,
    state_dir: StateDir = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Every saved version: its model family, when and why it was made, whether it is the
    champion and whether its file is still on disk (only those can be rolled back to)."""
    try:
        folder = _folder(ctx, state_dir)
    except ShadowcastError as exc:
        raise error_exit(exc) from None
    state = read_versions(folder)
    kept = {int(e["version"]) for e in on_disk(folder, state)}
    rows: list[dict[str, Any]] = [
        {
            "version": int(e["version"]),
            "model": e.get("model"),
            "created_s": e.get("created_s"),
            "reason": e.get("reason"),
            "champion": int(e["version"]) == state.get("version"),
            "on_disk": int(e["version"]) in kept,
        }
        for e in state.get("versions", [])
    ]
    doc = {"folder": str(folder), "champion": state.get("champion"),
           "version": state.get("version"), "rollback_requested": state.get("rollback_to"),
           "versions": rows}  # fmt: skip
    if as_json:
        emit_json(doc)
        return
    table = Table("version", "model", "created", "reason", "", title=str(folder))
    for r in rows:
        mark = "champion" if r["champion"] else ("" if r["on_disk"] else "gone")
        table.add_row(str(r["version"]), str(r["model"]), str(r["created_s"]), str(r["reason"]),
                      mark)  # fmt: skip
    out.print(table)
    if doc["rollback_requested"] is not None:
        out.print(f"rollback to v{doc['rollback_requested']} requested")


@app.command("rollback")
def rollback(
    ctx: typer.Context,
    version: Annotated[int, typer.Argument(help="the version to make the champion again")],
    state_dir: StateDir = None,
    api: Annotated[
        str | None,
        typer.Option(
            "--api",
            help="the running service's API (e.g. http://127.0.0.1:8650): roll back now "
            "through POST /api/v1/models/rollback instead of marking a request",
        ),
    ] = None,
    token_env: Annotated[
        str,
        typer.Option("--token-env", help="with --api: the variable holding an admin token"),
    ] = "SHADOWCAST_API_TOKEN",
    reason: Annotated[str, typer.Option("--reason", help="why (kept in the audit)")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Make a saved version the champion again. With --api the running service does it now
    (its next step forecasts with it; audited with the token's name). Without, a request is
    marked in the state folder: a running service applies it at its next checkpoint
    (service.checkpoint_every), a stopped one when it starts. Either way the version comes
    back as a new version, caught up with the steps it missed, and the change is a row of
    ``model_events``."""
    if api is not None:
        try:
            doc = client.call(api, "POST", "/api/v1/models/rollback",
                              {"version": version, "reason": reason[:500]}, token_env,
                              ForecastError)  # fmt: skip
        except ShadowcastError as exc:
            raise error_exit(exc) from None
        if as_json:
            emit_json({"applied": True, **doc})
        else:
            out.print(f"rolled back to v{version} ({doc.get('model')}) now: the champion is "
                      f"v{doc.get('version')}")  # fmt: skip
        return
    try:
        folder = _folder(ctx, state_dir)
        entry = request_rollback(folder, version)
    except ShadowcastError as exc:
        raise error_exit(exc) from None
    doc = {"requested": version, "model": entry.get("model"), "folder": str(folder)}
    if as_json:
        emit_json(doc)
    else:
        out.print(f"rollback to v{version} ({entry.get('model')}) requested: applied at the "
                  "service's next checkpoint or start")  # fmt: skip
