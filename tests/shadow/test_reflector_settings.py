"""The reflector honours ``shadow.stamp`` (CLI, serve process), replays from any source
tuple are refused, counters are printed on SIGTERM/SIGINT. Real UDP sockets on loopback."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest
from typer.testing import CliRunner

from shadowcast.cli import app as root_app
from shadowcast.shadow.config import StampConfig
from shadowcast.shadow.reflector import Reflector
from shadowcast.shadow.wire import SenderTest, decode_reflector, encode_sender, ntp_from_unix

KEY_HEX = "5a" * 32
KEY = bytes.fromhex(KEY_HEX)
SETTINGS = """\
shadow:
  stamp:
    key_hex: "{key}"
    allow: [127.0.0.1/32, 127.0.0.12/32]
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pkt(seq: int, ssid: int = 77, key: bytes | None = KEY, ts: float | None = None) -> bytes:
    t = time.time() if ts is None else ts
    return encode_sender(SenderTest(seq, ntp_from_unix(t), 1, ssid), key)


def _client(addr: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, 0))  # a fresh source port each time
    s.settimeout(1.0)  # a reply later than this counts as none (loaded machines)
    return s


def _answers(sock: socket.socket, port: int, datagrams: list[bytes]) -> list[bytes]:
    for d in datagrams:
        sock.sendto(d, ("127.0.0.1", port))
    got = []
    try:
        while True:
            got.append(sock.recv(4096))
    except TimeoutError:
        pass
    return got


def _env() -> dict[str, str]:
    src = str(Path(__file__).resolve().parents[2] / "src")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SHADOWCAST_")}
    env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _wait_line(stream: IO[str] | None, needle: str, timeout: float = 15.0) -> None:
    """Read ``stream`` until a line containing ``needle`` (in a thread, bounded in time)."""
    assert stream is not None
    found = threading.Event()

    def read() -> None:
        for line in stream:
            if needle in line:
                found.set()
                return

    t = threading.Thread(target=read, daemon=True)
    t.start()
    t.join(timeout)
    assert found.is_set(), f"no {needle!r} line within {timeout} s"


@pytest.fixture
def reflect_proc(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """``shadowcast -c settings.yaml shadow reflect`` as a real process."""
    cfg = tmp_path / "settings.yaml"
    cfg.write_text(SETTINGS.format(key=KEY_HEX))
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shadowcast.cli", "-c", str(cfg), "shadow", "reflect",
         "--port", str(port), "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path,
    )  # fmt: skip
    try:
        _wait_line(proc.stderr, "reflecting on")
        yield proc, port
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.communicate(timeout=10)


def _stop(proc: subprocess.Popen[str], sig: int) -> dict[str, int]:
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    obj = json.loads(out.strip().splitlines()[-1])
    assert isinstance(obj, dict)
    return obj


def test_settings_key_and_allow_list_apply_and_replays_from_any_tuple_are_refused(
    reflect_proc: tuple[subprocess.Popen[str], int],
) -> None:
    proc, port = reflect_proc
    rnd = random.Random(12)
    # the case: random 100-byte datagrams from a source outside the allow-list
    with _client("127.0.0.11") as c:
        assert _answers(c, port, [rnd.randbytes(100) for _ in range(100)]) == []
    # allowed source, random bytes of the authenticated length: HMAC fails
    with _client("127.0.0.1") as c:
        assert _answers(c, port, [rnd.randbytes(112) for _ in range(20)]) == []
    # an unauthenticated STAMP packet from an allowed source: not answered either
    with _client("127.0.0.1") as c:
        assert _answers(c, port, [_pkt(0, ssid=5, key=None) + bytes(68)]) == []
    captured = _pkt(0)
    with _client("127.0.0.1") as c:
        got = _answers(c, port, [captured])
    assert len(got) == 1 and decode_reflector(got[0], KEY).sender_seq == 0
    with _client("127.0.0.1") as c:  # the same packet from a new port
        assert _answers(c, port, [captured]) == []
    with _client("127.0.0.12") as c:  # ... and from a new, allowed, address
        assert _answers(c, port, [captured]) == []
        got = _answers(c, port, [_pkt(1)])  # a fresh packet from there is answered
    assert len(got) == 1 and decode_reflector(got[0], KEY).sender_seq == 1
    counters = _stop(proc, signal.SIGTERM)
    assert counters["port"] == port
    assert counters["dropped_acl"] == 100
    assert counters["dropped_auth"] == 21
    assert counters["dropped_replay"] == 2
    assert counters["reflected"] == 2


def test_counters_printed_on_sigint(reflect_proc: tuple[subprocess.Popen[str], int]) -> None:
    proc, port = reflect_proc
    with _client("127.0.0.1") as c:
        assert len(_answers(c, port, [_pkt(i, ssid=9) for i in range(3)])) == 3
    counters = _stop(proc, signal.SIGINT)
    assert counters["reflected"] == 3 and counters["received"] == 3


def test_command_line_flags_override_settings(tmp_path: Path) -> None:
    cfg = tmp_path / "s.yaml"
    cfg.write_text("shadow:\n  stamp:\n    key_hex: 'zz'\n")
    res = CliRunner().invoke(root_app, ["-c", str(cfg), "shadow", "reflect", "--seconds", "0.1"])
    assert res.exit_code == 2 and "shadow.stamp.key_hex" in res.output + str(res.exception)
    outside = SETTINGS.format(key=KEY_HEX).replace("127.0.0.1/32, 127.0.0.12/32", "10.0.0.0/8")
    cfg.write_text(outside)
    res = CliRunner().invoke(
        root_app, ["-c", str(cfg), "shadow", "reflect", "--allow", "bad", "--seconds", "0.1"]
    )
    assert res.exit_code == 2
    assert "'bad' is not an IP network" in res.output + str(res.exception)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "shadowcast.cli", "-c", str(cfg), "shadow", "reflect",
         "--port", str(port), "--allow", "127.0.0.0/8", "--burst", "2", "--rate-pps", "0.01",
         "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=tmp_path,
    )  # fmt: skip
    try:
        _wait_line(proc.stderr, "reflecting on")
        with _client("127.0.0.1") as c:  # allowed by the flag; the key still from settings
            got = _answers(c, port, [_pkt(i, ssid=3) for i in range(4)])
        assert [decode_reflector(g, KEY).sender_seq for g in got] == [0, 1]  # burst 2, no refill
        counters = _stop(proc, signal.SIGTERM)
    finally:
        if proc.returncode is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert counters["dropped_rate"] == 2 and counters.get("dropped_acl", 0) == 0


def test_from_config_applies_every_stamp_setting() -> None:
    now = [1_800_000_000.0]
    cfg = StampConfig(key_hex=KEY_HEX, allow=["127.0.0.0/8"], rate_pps=1.0, burst=2.0,
                      max_size=200, replay_window=8, max_age_s=5.0)  # fmt: skip
    r = Reflector.from_config(cfg, clock=lambda: now[0])
    peer = ("127.0.0.1", 4000)
    assert r.handle(_pkt(0, ts=now[0]), ("10.0.0.1", 1), now[0]) is None  # allow
    assert r.handle(_pkt(0, ts=now[0], key=b"other"), peer, now[0]) is None  # the key
    assert r.handle(_pkt(1, ts=now[0]) + bytes(100), peer, now[0]) is None  # max_size
    assert r.handle(_pkt(2, ts=now[0] - 6), peer, now[0]) is None  # max_age_s
    assert r.counters["dropped_rate"] == 0
    assert r.handle(_pkt(3, ts=now[0]), peer, now[0]) is None  # burst of 2 spent
    assert r.counters["dropped_rate"] == 1
    now[0] += 1.0  # rate_pps: one token back
    assert r.handle(_pkt(20, ts=now[0]), peer, now[0]) is not None
    now[0] += 1.0
    assert r.handle(_pkt(3, ts=now[0] - 1.5), peer, now[0]) is None  # outside window of 8
    assert {k: r.counters[f"dropped_{k}"] for k in ("acl", "auth", "oversized", "stale")} == {
        "acl": 1, "auth": 1, "oversized": 1, "stale": 1,
    }  # fmt: skip
    assert r.counters["dropped_replay"] == 1


def test_serve_process_takes_settings_on_stdin() -> None:
    port = _free_port()
    stamp = StampConfig(key_hex=KEY_HEX, allow=["127.0.0.1/32"])
    proc = subprocess.Popen(
        [sys.executable, "-m", "shadowcast.shadow.serve", "127.0.0.1", str(port),
         "--settings-stdin"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=_env(),
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        proc.stdin.write(stamp.model_dump_json())
        proc.stdin.close()
        assert proc.stdout.readline().strip() == "ready"
        with _client("127.0.0.11") as c:
            assert _answers(c, port, [_pkt(0)]) == []  # not on the allow-list
        with _client("127.0.0.1") as c:
            assert _answers(c, port, [_pkt(0, key=None)]) == []  # unauthenticated
            assert len(_answers(c, port, [_pkt(0)])) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        proc.stdout.close()
        proc.stderr.close()
    counters = json.loads(err.strip().splitlines()[-1])
    assert counters["dropped_acl"] == 1 and counters["reflected"] == 1
    assert counters["dropped_truncated"] == 1  # 44 octets: shorter than authenticated


def test_serve_process_rejects_bad_settings_on_one_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "shadowcast.shadow.serve", "127.0.0.1", "0", "--settings-stdin"],
        input='{"allow": ["not-a-net"]}', capture_output=True, text=True, env=_env(),
        timeout=30, check=False,
    )  # fmt: skip
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "shadow.stamp.allow" in lines[0] and "not-a-net" in lines[0]
