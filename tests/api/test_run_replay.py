"""``shadowcast run --replay synthetic``: a real process serves the API over a replay on a
simulated clock, becomes ready, answers /api/v1/links, stays up after the replay ends, and
stops on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from servers import free_port, get_json, wait_for

from shadowcast.errors import ConfigError
from shadowcast.service.live import pacer, parse_speed

pytestmark = pytest.mark.integration


def test_run_replay_serves_until_sigterm(tmp_path: Path) -> None:
    port = free_port()
    cfg = tmp_path / "shadowcast.yaml"
    cfg.write_text(
        f"data_dir: {tmp_path / 'var'}\n"
        f"api: {{listen: '127.0.0.1:{port}'}}\n"
        "replay: {weeks: 0.03}\n"  # 61 steps of 5 min
    )
    argv = [sys.executable, "-m", "shadowcast.cli", "-c", str(cfg), "run", "--replay", "synthetic",
            "--speed", "max", "--warmup", "1h"]  # fmt: skip
    log = tmp_path / "run.log"
    base = f"http://127.0.0.1:{port}"
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        t0 = time.monotonic()
        wait_for(lambda: get_json(base + "/api/v1/health")["status"] == "ready", 300, "ready")
        links = get_json(base + "/api/v1/links")
        ready_s = time.monotonic() - t0
        assert links["issued"] and all(r["predicted"] for r in links["links"])
        print(f"ready and serving links after {ready_s:.1f} s")
        wait_for(lambda: "finished" in get_json(base + "/api/v1/health")["note"], 300, "the end")
        time.sleep(1)
        assert proc.poll() is None, "it stays up after the replay"
        assert get_json(base + "/api/v1/health")["steps"] >= 60
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    except BaseException:
        print(log.read_text(errors="replace")[-4000:])
        raise
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


def test_speed_and_pacing() -> None:
    assert parse_speed("max") is None and parse_speed("600") == 600.0
    for bad in ("fast", "0", "-3"):
        with pytest.raises(ConfigError, match="--speed"):
            parse_speed(bad)
    stop = threading.Event()
    pace = pacer(3000.0, stop)  # 300 simulated seconds take 0.1 s
    assert pace is not None and pacer(None, stop) is None
    t0 = time.monotonic()
    for t in (0, 300, 600):
        pace(1_700_000_000 + t)
    assert 0.18 <= time.monotonic() - t0 < 1.5
