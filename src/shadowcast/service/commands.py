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
    replay: Annotated[
        str | None,
        typer.Option(
            help="serve the API and dashboard over a replay instead of the network: synthetic "
            "(the seeded synthetic week, on a simulated clock; mode advise unless --mode)"
        ),
    ] = None,
    speed: Annotated[
        str, typer.Option(help="with --replay: simulated seconds per second, or max")
    ] = "max",
    warmup: Annotated[
        str, typer.Option(help="with --replay: history before the first forecast")
    ] = "1d",
) -> None:
    """Run the service: collect flows, profile, roll up, forecast, alert, plan and act,
    probe shadow tunnels, on the wall clock, until SIGTERM/SIGINT.

    Needs service.topology (and a profile sites file mapping exporters and prefixes to its
    routers). While it runs, `shadowcast forecast`, `profile top`, `store stats` and `plan`
    read the store through its socket (<data_dir>/shadowcast.sock). The REST API, /metrics
    and the dashboard are served on api.listen (OpenAPI at /docs).

    With --replay synthetic, no network is needed: the synthetic week plays on a simulated
    clock (--speed) through the same service, the dashboard shows it as it goes, and the
    API stays up after the replay ends, until SIGTERM/SIGINT.
    """
    from shadowcast.cli_support import emit_json, settings_of
    from shadowcast.service.run import Runner

    settings: Any = settings_of(ctx)
    if replay is not None:
        _serve_replay(settings, replay, speed, warmup, mode or "advise", json_out)
        return
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
        emit_json(runner.health())


def _serve_replay(
    settings: Any, source: str, speed: str, warmup: str, mode: str, json_out: bool
) -> None:
    import signal
    import threading

    from shadowcast.cli_support import emit_json
    from shadowcast.errors import ConfigError
    from shadowcast.service.live import serve_replay

    if mode not in ("observe", "advise", "auto"):
        raise ConfigError(f"--mode: {mode!r} is not observe, advise or auto")
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    summary = serve_replay(settings, source, speed, warmup, mode, stop)
    if json_out:
        emit_json(summary)
