"""``shadowcast run``: every stage as one living service (see ``service/run.py``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer


def run_cmd(
    ctx: typer.Context,
    duration: Annotated[
        float | None, typer.Option(help="stop after this many seconds (tests, trials)")
    ] = None,
    mode: Annotated[
        str | None, typer.Option(help="override service.mode: observe | advise | auto")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="print the final health and counters as JSON on exit")
    ] = False,
) -> None:
    """Run the service: collect flows, profile, roll up, forecast, alert, plan and act,
    probe shadow tunnels, on the wall clock, until SIGTERM/SIGINT.

    Needs service.topology (and a profile sites file mapping exporters and prefixes to its
    routers). While it runs, `shadowcast forecast`, `profile top`, `store stats` and `plan`
    read the store through its socket (<data_dir>/shadowcast.sock).
    """
    from shadowcast.cli_support import emit_json, settings_of
    from shadowcast.service.run import Runner

    settings: Any = settings_of(ctx)
    if mode is not None:
        settings = settings.model_copy(
            update={"service": settings.service.model_copy(update={"mode": mode})}
        )
    runner = Runner(settings, duration_s=duration)
    runner.install_signal_handlers()
    try:
        runner.start()
        runner.loop()
    finally:
        runner.shutdown()
    if json_out:
        emit_json(runner.service.health())
