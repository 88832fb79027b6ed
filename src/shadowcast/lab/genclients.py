"""Client programs of the training-traffic generator, one process each in a lab namespace.

The generator (:mod:`shadowcast.lab.trafficgen`) runs real servers (nginx, sshd, sipp,
dnsmasq, iperf3) and real clients (curl, scp, dig, ping, iperf3, sipp); the behaviours no
packaged client reproduces are here, written the way such clients behave:

- ``player``: an adaptive segmented-video player (fetch a segment, keep a buffer of
  ``buffer_s`` seconds, pick the rendition from the measured throughput, repeat);
- ``game``: a game client or server: small inputs up at ``input_hz``, snapshots down at
  ``tick_hz`` (UDP, or TCP with Nagle off), with sizes that vary with the action;
- ``conf``: one side of a video conference: 20 ms audio frames (with silence periods) and
  video frames at ``fps`` split into <= 1200-byte RTP-sized packets;
- ``typist``: a person typing shell commands in an ``ssh`` session (through a pty);
- ``browse``: page views: one ``curl --parallel`` per page (the page's objects over up to
  ``conns`` connections), then a think time.

Each takes one JSON object of parameters: ``python -m shadowcast.lab.genclients KIND JSON``.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import select
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

__all__ = ["main"]


def _deadline(p: dict[str, Any]) -> float:
    return time.monotonic() + float(p["duration_s"])


def _left(end: float, wait: float) -> float:
    """``wait``, cut to what is left of the session."""
    return max(0.0, min(wait, end - time.monotonic()))


def _get(conn: http.client.HTTPConnection, path: str) -> int:
    conn.request("GET", path)
    resp = conn.getresponse()
    n = 0
    while chunk := resp.read(65_536):
        n += len(chunk)
    return n


def player(p: dict[str, Any]) -> None:
    """Adaptive segmented video: renditions ``p['kbps']``, ``p['seg_s']`` s segments."""
    rng = random.Random(p["seed"])
    seg_s, kbps, target = float(p["seg_s"]), list(p["kbps"]), float(p["buffer_s"])
    end = _deadline(p)

    connect = _connector(p)
    conn = connect()
    _get(conn, "/video/manifest.m3u8")
    est_bps, buffered, k, last = 0.0, 0.0, 0, time.monotonic()
    while time.monotonic() < end and k < int(p["segments"]):
        now = time.monotonic()
        if k > 0:  # playback drains the buffer in real time once it started
            buffered = max(0.0, buffered - (now - last))
        last = now
        if buffered >= target:
            time.sleep(_left(end, min(seg_s, buffered - target + rng.uniform(0, 0.2 * seg_s))))
            continue
        fit = [j for j, r in enumerate(kbps) if r * 1000 <= 0.8 * est_bps]
        j = fit[-1] if fit else 0
        if p.get("reconnect") and k > 0:
            conn.close()
            conn = connect()
        t0 = time.monotonic()
        n = _get(conn, f"/video/r{j}/s{k}.m4s")
        rate = n * 8 / max(time.monotonic() - t0, 1e-3)
        est_bps = rate if est_bps == 0 else 0.7 * est_bps + 0.3 * rate
        buffered += seg_s
        k += 1
    conn.close()


def _sizes(rng: random.Random, mean: float, spread: float, n: int = 1) -> list[int]:
    return [max(20, min(1400, int(rng.lognormvariate(0, spread) * mean))) for _ in range(n)]


def game(p: dict[str, Any]) -> None:
    """Game traffic; ``role`` ``server`` answers the first client until it goes quiet."""
    rng = random.Random(p["seed"])
    tcp, server = p["transport"] == "tcp", p["role"] == "server"
    hz = float(p["tick_hz"] if server else p["input_hz"])
    mean = float(p["snapshot_b"] if server else p["input_b"])
    kind = socket.SOCK_STREAM if tcp else socket.SOCK_DGRAM
    sock = socket.socket(socket.AF_INET, kind)
    peer: tuple[str, int] | None = None
    if server:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((p["host"], int(p["port"])))
        if tcp:
            sock.listen(1)
            conn, peer = sock.accept()
            sock.close()
            sock = conn
    else:
        peer = (p["host"], int(p["port"]))
        if tcp:
            sock.connect(peer)
    if tcp:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    end, quiet_since = _deadline(p), time.monotonic()
    next_tx, seq, busy_until = time.monotonic(), 0, 0.0
    while time.monotonic() < end:
        timeout = max(0.0, next_tx - time.monotonic())
        ready, _, _ = select.select([sock], [], [], timeout)
        if ready:
            data, addr = (sock.recv(65_536), peer) if tcp else sock.recvfrom(65_536)
            if tcp and not data:
                break
            peer, quiet_since = peer or addr, time.monotonic()
        if server and time.monotonic() - quiet_since > 1.0:
            break  # the client left
        if time.monotonic() < next_tx or peer is None:
            continue
        if rng.random() < 0.01:  # a fight, a map change: larger updates for a while
            busy_until = time.monotonic() + rng.uniform(1.0, 5.0)
        scale = 2.5 if time.monotonic() < busy_until else 1.0
        size = _sizes(rng, mean * scale, 0.35)[0]
        payload = struct.pack(">I", seq) + os.urandom(size - 4)
        try:
            if tcp:
                sock.sendall(struct.pack(">H", size) + payload)
            else:
                sock.sendto(payload, peer)
        except OSError:
            break
        seq += 1
        next_tx += rng.gauss(1.0, 0.08) / hz
        next_tx = max(next_tx, time.monotonic() - 1.0 / hz)
    sock.close()


def conf(p: dict[str, Any]) -> None:
    """One conference participant: audio every ``ptime_ms``, video at ``fps`` (0: none)."""
    rng = random.Random(p["seed"])
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    a.bind((p["host"], int(p["port"])))
    v = a
    if not p["bundle"]:  # separate 5-tuple for video (RTP without BUNDLE)
        v = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        v.bind((p["host"], int(p["port"]) + 2))
    peer_a = (p["peer"], int(p["peer_port"]))
    peer_v = peer_a if p["bundle"] else (p["peer"], int(p["peer_port"]) + 2)
    ptime, fps = float(p["ptime_ms"]) / 1000, float(p["fps"])
    frame_b = float(p["video_kbps"]) * 125 / max(fps, 1.0)
    end = _deadline(p)
    t0 = time.monotonic()
    next_a, next_v, next_key, talking, switch = t0, t0, t0, True, t0
    seq = 0
    while time.monotonic() < end:
        now = time.monotonic()
        if now >= switch:  # talk spurts and silences (DTX: sparse comfort noise)
            talking = not talking
            switch = now + rng.expovariate(1 / (3.0 if talking else 1.5))
        if now >= next_a:
            if talking or rng.random() < ptime / 0.4:
                size = _sizes(rng, float(p["audio_b"]) if talking else 40, 0.15)[0]
                a.sendto(struct.pack(">HI", 0x8000 | 111, seq) + os.urandom(size), peer_a)
                seq += 1
            next_a += ptime
        if fps > 0 and now >= next_v:
            key = now >= next_key
            if key:
                next_key = now + float(p["key_s"])
            left = int(frame_b * (4.0 if key else 1.0) * rng.lognormvariate(0, 0.3))
            while left > 0:
                size = min(1200, max(left, 60))
                v.sendto(struct.pack(">HI", 0x8000 | 96, seq) + os.urandom(size), peer_v)
                seq += 1
                left -= size
            next_v += 1.0 / fps
        for s in {a, v}:  # drain what the other side sent
            while select.select([s], [], [], 0)[0]:
                s.recv(65_536)
        time.sleep(max(0.0, min(next_a, next_v if fps > 0 else next_a) - time.monotonic()))
    a.close()
    v.close()


COMMANDS = (
    "ls -la", "cd /etc && ls", "cat /etc/services | head -n {n}", "ps aux | head -n {n}",
    "df -h", "uptime", "echo hello world", "grep -n ssh /etc/services", "uname -a",
    "top -b -n 1 | head -n {n}", "ls -la /usr/bin | head -n {n}", "date", "whoami",
    "for i in $(seq {s}); do date; sleep 1; done", "cat /proc/cpuinfo | head -n {n}",
)  # fmt: skip


def typist(p: dict[str, Any]) -> None:
    """Type commands into ``ssh -tt`` with human key timing; read whatever comes back."""
    import pty

    rng = random.Random(p["seed"])
    main_fd, sub_fd = pty.openpty()
    proc = subprocess.Popen(p["ssh"], stdin=sub_fd, stdout=sub_fd, stderr=sub_fd, close_fds=True)
    os.close(sub_fd)
    end = _deadline(p)

    def drain(wait: float) -> None:
        stop = time.monotonic() + wait
        while (left := stop - time.monotonic()) > 0:
            if select.select([main_fd], [], [], left)[0]:
                try:
                    if not os.read(main_fd, 65_536):
                        return
                except OSError:
                    return

    drain(2.0)  # login banner and prompt
    key_s = float(p["key_ms"]) / 1000
    while time.monotonic() < end and proc.poll() is None:
        cmd = rng.choice(COMMANDS).format(n=rng.randint(5, 60), s=rng.randint(2, 8))
        for ch in cmd + "\n":
            os.write(main_fd, ch.encode())
            drain(min(2.0, rng.lognormvariate(0, 0.5) * key_s))
        drain(_left(end, min(30.0, rng.lognormvariate(0, 0.8) * float(p["think_s"]))))
    if proc.poll() is None:
        os.write(main_fd, b"exit\n")
        drain(1.0)
    proc.terminate()
    proc.wait(timeout=5)
    os.close(main_fd)


def _connector(p: dict[str, Any]) -> Callable[[], http.client.HTTPConnection]:
    def connect() -> http.client.HTTPConnection:
        if p.get("scheme") == "https":
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE  # lab certificate
            return http.client.HTTPSConnection(p["host"], 443, timeout=15, context=ctx)
        return http.client.HTTPConnection(p["host"], 80, timeout=15)

    return connect


def _pool_get(pool: list[http.client.HTTPConnection | None], paths: list[str],
              connect: Callable[[], http.client.HTTPConnection]) -> None:  # fmt: skip
    """Fetch ``paths`` over the persistent connections of ``pool`` (one thread each)."""
    todo = list(reversed(paths))
    lock = threading.Lock()

    def work(i: int) -> None:
        while True:
            with lock:
                if not todo:
                    return
                path = todo.pop()
            for _ in range(2):  # the server may have closed an idle connection
                conn = pool[i] or connect()
                pool[i] = conn
                try:
                    _get(conn, path)
                    break
                except (OSError, http.client.HTTPException):
                    conn.close()
                    pool[i] = None

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(pool))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def browse(p: dict[str, Any]) -> None:
    """Page views over ``p['pages']`` (each a list of object paths, the html first): with
    ``keepalive`` a browser-like pool of ``conns`` persistent connections kept between
    pages, else one ``curl --parallel`` per page; then a think time."""
    rng = random.Random(p["seed"])
    base = f"{p['scheme']}://{p['host']}"
    end = _deadline(p)
    flags = ["--http2"] if p.get("http2") else ["--http1.1"]
    pool: list[http.client.HTTPConnection | None] = [None] * int(p["conns"])
    while time.monotonic() < end:
        page = rng.choice(p["pages"])
        if p.get("keepalive"):
            _pool_get(pool[:1], page[:1], _connector(p))
            _pool_get(pool, page[1:], _connector(p))
        else:
            get = ["curl", "-sk", "--max-time", "20", *flags, "-o", "/dev/null"]
            subprocess.run([*get, base + page[0]], check=False)  # the html, then its objects
            objs = [a for o in page[1:] for a in ("-o", "/dev/null", base + o)]
            subprocess.run([*get[:-2], "--parallel", "--parallel-max", str(p["conns"]), *objs],
                           check=False)  # fmt: skip
        time.sleep(_left(end, min(60.0, rng.lognormvariate(0, 0.7) * float(p["think_s"]))))
    for conn in pool:
        if conn is not None:
            conn.close()


def dns(p: dict[str, Any]) -> None:
    """Bursts of lookups (``dig``, one process per burst) with think times between."""
    rng = random.Random(p["seed"])
    end = _deadline(p)
    names = list(p["names"])
    while time.monotonic() < end:
        burst = [rng.choice(names) for _ in range(rng.randint(1, int(p["burst"])))]
        rrs = [rng.choice(["A", "A", "AAAA", "MX", "TXT"]) for _ in burst]
        args = [a for n, t in zip(burst, rrs, strict=True) for a in (n, t)]
        tcp = ["+tcp"] if rng.random() < float(p["tcp_share"]) else []
        subprocess.run(["dig", f"@{p['host']}", "+tries=1", "+time=2", *tcp, *args],
                       stdout=subprocess.DEVNULL, check=False)  # fmt: skip
        time.sleep(_left(end, min(30.0, rng.expovariate(1.0 / float(p["think_s"])))))


PROGRAMS = {
    "player": player,
    "game": game,
    "conf": conf,
    "typist": typist,
    "browse": browse,
    "dns": dns,
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2 or args[0] not in PROGRAMS:
        sys.stderr.write(f"usage: genclients {{{','.join(PROGRAMS)}}} JSON\n")
        return 2
    PROGRAMS[args[0]](json.loads(args[1]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
