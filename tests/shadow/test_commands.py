"""``shadowcast shadow probe|reflect`` on loopback."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from typer.testing import CliRunner

from shadowcast.shadow.commands import app, hostport


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_hostport() -> None:
    assert hostport("127.0.0.1") == ("127.0.0.1", 862)
    assert hostport("127.0.0.1:9000") == ("127.0.0.1", 9000)
    assert hostport("[::1]:9001") == ("::1", 9001)


def test_probe_json_against_a_reflector_process() -> None:
    port = _free_port()
    key = "ab" * 16
    refl = subprocess.Popen(
        [sys.executable, "-m", "shadowcast.shadow.serve", "127.0.0.1", str(port), key],
        stdout=subprocess.PIPE,
    )
    try:
        assert refl.stdout is not None and refl.stdout.readline().strip() == b"ready"
        res = CliRunner().invoke(
            app, ["probe", f"127.0.0.1:{port}", "--count", "10", "--interval", "0.01",
                  "--key-hex", key, "--json"],
        )  # fmt: skip
        assert res.exit_code == 0, res.output
        obj = json.loads(res.stdout)
        assert obj["received"] == 10 and obj["loss"] == 0.0 and obj["rtt_ms"] > 0
        # a wrong key is never answered
        res = CliRunner().invoke(
            app, ["probe", f"127.0.0.1:{port}", "--count", "3", "--key-hex", "cd" * 16, "--json"]
        )
        assert json.loads(res.stdout)["received"] == 0
    finally:
        refl.terminate()
        refl.wait(timeout=5)
        if refl.stdout is not None:
            refl.stdout.close()


def test_reflect_runs_for_a_bounded_time() -> None:
    port = _free_port()
    res = CliRunner().invoke(app, ["reflect", "--port", str(port), "--seconds", "0.2", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["port"] == port
