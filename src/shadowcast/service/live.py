"""``shadowcast run --replay synthetic``: the API and dashboard over a replay on a simulated
clock, for seeing the service at work without a network.

The replay (``replay/driver.py``) builds the service and attaches it to the API as soon as
it exists; ``--speed N`` plays N simulated seconds per real second (``max``: as fast as it
goes). The models need ``--warmup`` of history before the first forecast (``ready``). When
the replay ends the API keeps serving until SIGTERM or SIGINT.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shadowcast.errors import ConfigError
from shadowcast.units import parse_duration

log = logging.getLogger(__name__)
SOURCES = ("synthetic",)


def parse_speed(text: str) -> float | None:
    """``max`` -> None (no pacing); a positive number of simulated seconds per second."""
    if text.strip().lower() == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        raise ConfigError(f"--speed: {text!r} is not a number or max") from None
    if not 0 < speed <= 1e7:
        raise ConfigError(f"--speed must be in (0, 1e7] or max, got {text}")
    return speed


def pacer(speed: float | None, stop: threading.Event) -> Callable[[int], None] | None:
    if speed is None:
        return None
    origin: list[float] = []

    def pace(t_s: int) -> None:
        if not origin:
            origin.extend((float(t_s), time.monotonic()))
        due = origin[1] + (t_s - origin[0]) / speed
        stop.wait(max(0.0, due - time.monotonic()))

    return pace


def serve_replay(
    settings: Any, source_name: str, speed: str, warmup: str, mode: str, stop: threading.Event
) -> dict[str, Any]:
    """Serve while replaying; returns the replay's summary once stopped."""
    from shadowcast.api.server import ApiServer
    from shadowcast.api.state import ApiState
    from shadowcast.replay.driver import run_replay
    from shadowcast.replay.source import load_source
    from shadowcast.store.replay_target import open_target, replay_target, reset
    from shadowcast.store.shared import SharedStore

    if source_name not in SOURCES:
        raise ConfigError(f"--replay: {source_name!r} is not one of {', '.join(SOURCES)}")
    pace_speed = parse_speed(speed)
    parse_duration(warmup)
    source = load_source(None, None, None, settings.replay.weeks, settings.replay.seed)
    replay = settings.replay.model_copy(update={"warmup": warmup})
    settings = settings.model_copy(update={"replay": replay})
    data_dir = Path(settings.data_dir)
    # DuckDB: data_dir/live-replay.duckdb; clickhouse: <database>_live_replay on its servers
    target = replay_target(settings.store, data_dir, "live-replay")
    state_dir = data_dir / "live-replay-state"
    data_dir.mkdir(parents=True, exist_ok=True)
    reset(target)
    shutil.rmtree(state_dir, ignore_errors=True)
    store = SharedStore(open_target(target))
    log.info("replay store: %s", target.label)
    note = f"replay {source_name} at speed {speed}"
    state = ApiState(settings, store, mode_note=note)
    server = ApiServer(state, settings.api)
    url = server.start()
    log.info("dashboard: open %s (the API's reference: %s/docs)", url, url)
    try:
        run = run_replay(
            settings,
            source,
            store,
            state_dir,
            mode=mode,
            stop=stop,
            pace=pacer(pace_speed, stop),
            on_service=state.attach,
        )
        state.mode_note = f"replay {source_name} finished" if not run.interrupted else note
        summary = {"url": url, "steps": run.state.next_t, "seconds": round(run.seconds, 1)}
        if not run.interrupted:
            log.info("replay finished; still serving until SIGTERM", extra=summary)
            stop.wait()
        return summary
    finally:
        server.stop()
        store.close()
