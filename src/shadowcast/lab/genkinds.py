"""The kinds of traffic the training generator makes: label, parameters, programs.

Each kind draws its parameters from a seeded generator (pure) and, given a session's
context, writes the content its server needs and returns the server and client command
lines (run in the server and client namespaces). ``KINDS`` is the explicit registry.
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Argv = list[str]
Params = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ctx:
    """What a kind needs to start one session in one slot."""

    params: Params
    seed: int
    client: str  # client address
    server: str  # server address
    assets: Path  # shared per run: keys, certificates, scenarios
    home: Path  # this session's folder

    @property
    def www(self) -> Path:
        """The session's web root (nginx serves it)."""
        return self.home / "www"


@dataclass(frozen=True, slots=True)
class Kind:
    label: str  # the behavioural category every flow of the session gets
    tools: tuple[str, ...]  # programs that must be installed
    params: Callable[[random.Random], Params]
    launch: Callable[[Ctx], tuple[list[Argv], list[Argv]]]  # (servers, clients)
    icmp: bool = False  # its ICMP flows are its traffic (else port-unreachables, dropped)


def _py(program: str, p: Params) -> Argv:
    return [sys.executable, "-m", "shadowcast.lab.genclients", program, json.dumps(p)]


def _logu(rng: random.Random, lo: float, hi: float) -> float:
    return math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _sparse(path: Path, size: int) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.truncate(max(1, size))
    return path.name


def nginx(ctx: Ctx) -> Argv:
    conf = ctx.home / "nginx.conf"
    tmp = ctx.home / "nginx-tmp"
    tmp.mkdir(exist_ok=True)
    keep = float(ctx.params.get("keepalive_s", 65))
    temps = "".join(f" {k}_temp_path {tmp}/{k};" for k in
                    ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))  # fmt: skip
    conf.write_text(
        f"user root; worker_processes 1; pid {ctx.home}/nginx.pid; error_log {ctx.home}/nginx.log;"
        f" daemon off; events {{ worker_connections 512; }}"
        f" http {{ access_log off; sendfile on; keepalive_timeout {keep:.0f};{temps}"
        f" default_type application/octet-stream; server {{ listen {ctx.server}:80;"
        f" listen {ctx.server}:443 ssl http2; ssl_certificate {ctx.assets}/cert.pem;"
        f" ssl_certificate_key {ctx.assets}/key.pem; root {ctx.www}; }} }}\n"
    )
    return ["nginx", "-c", str(conf)]


def sshd(ctx: Ctx) -> Argv:
    conf = ctx.home / "sshd_config"
    conf.write_text(
        f"ListenAddress {ctx.server}\nHostKey {ctx.assets}/host_ed25519\nPidFile none\n"
        f"PermitRootLogin prohibit-password\nAuthorizedKeysFile {ctx.assets}/id_ed25519.pub\n"
        "StrictModes no\nUsePAM no\nUseDNS no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nSubsystem sftp internal-sftp\n"
    )
    return ["/usr/sbin/sshd", "-D", "-e", "-f", str(conf)]


def ssh_opts(ctx: Ctx, alive: int = 0) -> Argv:
    return ["-i", f"{ctx.assets}/id_ed25519", "-o", "StrictHostKeyChecking=no", "-o",
            "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
            "-o", f"ServerAliveInterval={alive}"]  # fmt: skip


# ---------------------------------------------------------------- video


def _video_params(live: bool) -> Callable[[random.Random], Params]:
    def draw(rng: random.Random) -> Params:
        seg = rng.choice([2.0, 4.0, 6.0, 10.0])
        base, step = _logu(rng, 150, 900), rng.uniform(1.5, 2.3)
        return {
            "duration_s": rng.uniform(30, 120),
            "seg_s": seg,
            "kbps": [round(base * step**j) for j in range(rng.randint(3, 6))],
            "buffer_s": seg * rng.uniform(1.0, 2.5) if live else rng.uniform(12, 45),
            "reconnect": rng.random() < 0.2,
            "scheme": rng.choice(["http", "https"]),
            "vbr": rng.uniform(0.05, 0.35),
        }

    return draw


def _video(ctx: Ctx) -> tuple[list[Argv], list[Argv]]:
    p, rng = ctx.params, random.Random(ctx.seed)
    segments = int(p["duration_s"] / p["seg_s"]) + 12
    (ctx.www / "video").mkdir(parents=True, exist_ok=True)
    (ctx.www / "video" / "manifest.m3u8").write_text("#EXTM3U\n" * 40)
    for j, kbps in enumerate(p["kbps"]):
        for k in range(segments):
            size = kbps * 125 * p["seg_s"] * rng.lognormvariate(0, p["vbr"])
            _sparse(ctx.www / "video" / f"r{j}" / f"s{k}.m4s", int(size))
    cp = {**p, "host": ctx.server, "segments": segments, "seed": ctx.seed}
    cp["port"] = 443 if p["scheme"] == "https" else 80
    return [nginx(ctx)], [_py("player", cp)]


# ---------------------------------------------------------------- bulk


def _iperf_params(rng: random.Random) -> Params:
    return {
        "duration_s": rng.uniform(5, 60),
        "reverse": rng.random() < 0.5,
        "parallel": rng.choice([1, 1, 1, 2]),
        "cap_mbps": _logu(rng, 1, 50) if rng.random() < 0.3 else 0.0,
    }


def _iperf(ctx: Ctx) -> tuple[list[Argv], list[Argv]]:
    p = ctx.params
    cli = ["iperf3", "-c", ctx.server, "-t", f"{p['duration_s']:.0f}", "-P", str(p["parallel"])]
    cli += ["-R"] if p["reverse"] else []
    cli += ["-b", f"{p['cap_mbps']:.2f}M"] if p["cap_mbps"] else []
    return [["iperf3", "-s", "-1", "-B", ctx.server]], [cli]


def _http_bulk_params(rng: random.Random) -> Params:
    return {
        "duration_s": rng.uniform(10, 60),
        "files": [int(_logu(rng, 2e6, 4e8)) for _ in range(rng.randint(1, 3))],
        "limit": str(int(_logu(rng, 0.3, 20) * 1e6)) if rng.random() < 0.35 else "",  # B/s
        "scheme": rng.choice(["http", "https"]),
    }


def _http_bulk(ctx: Ctx) -> tuple[list[Argv], list[Argv]]:
    p = ctx.params
    names = [_sparse(ctx.www / "bulk" / f"f{i}.bin", n) for i, n in enumerate(p["files"])]
    get = ["curl", "-sk", "-o", "/dev/null", "--max-time", f"{p['duration_s']:.0f}"]
    get += ["--limit-rate", p["limit"]] if p["limit"] else []
    clients = [[*get, f"{p['scheme']}://{ctx.server}/bulk/{n}"] for n in names]
    script = " ; ".join(" ".join(c) for c in clients)
    return [nginx(ctx)], [["timeout", f"{p['duration_s']:.0f}", "sh", "-c", script]]


def _scp_params(rng: random.Random) -> Params:
    return {"duration_s": rng.uniform(10, 60), "size": int(_logu(rng, 2e6, 3e8)),
            "upload": rng.random() < 0.4}  # fmt: skip


def _scp(ctx: Ctx) -> tuple[list[Argv], list[Argv]]:
    p = ctx.params
    src = ctx.home / "payload.bin"
    _sparse(src, p["size"])
    remote = f"root@{ctx.server}:"
    args = [str(src), remote + "/dev/null"] if p["upload"] else [remote + str(src), "/dev/null"]
    cli = ["timeout", f"{p['duration_s']:.0f}", "scp", "-q", *ssh_opts(ctx), *args]
    return [sshd(ctx)], [cli]


# ---------------------------------------------------------------- interactive


def _typing_params(rng: random.Random) -> Params:
    return {"duration_s": rng.uniform(30, 120), "key_ms": rng.uniform(80, 320),
            "think_s": rng.uniform(0.8, 8), "alive": rng.choice([0, 0, 10, 30])}  # fmt: skip


def _typing(ctx: Ctx) -> tuple[list[Argv], list[Argv]]:
    p = ctx.params
    ssh = ["ssh", "-tt", *ssh_opts(ctx, p["alive"]), f"root@{ctx.server}"]
    return [sshd(ctx)], [_py("typist", {**p, "ssh": ssh, "seed": ctx.seed})]


def _game_params(tcp: bool) -> Callable[[random.Random], Params]:
    def draw(rng: random.Random) -> Params:
        return {
            "duration_s": rng.uniform(20, 120),
            "transport": "tcp" if tcp else "udp",
            "input_hz": rng.choice([5, 10, 20] if tcp else [20, 30, 60, 64, 128]),
            "tick_hz": rng.choice([4, 10, 20] if tcp else [10, 20, 30, 60, 64]),
            "input_b": rng.uniform(30, 120),
            "snapshot_b": _logu(rng, 60, 900),
            "port": rng.randint(3000, 30000),
        }

    return draw


def _game(ctx: Ctx) -> tuple[list[Argv], list[Argv]]:
    p = {**ctx.params, "seed": ctx.seed, "host": ctx.server}
    server = {**p, "role": "server", "duration_s": p["duration_s"] + 10, "seed": ctx.seed + 1}
    return [_py("game", server)], [_py("game", {**p, "role": "client"})]


# ---------------------------------------------------------------- voip


def _sip_params(rng: random.Random) -> Params:
    return {"duration_s": rng.uniform(20, 120), "pt": rng.choice([0, 8]),
            "media_port": 2 * rng.randint(5000, 15000)}  # fmt: skip


def _sip(ctx: Ctx) -> tuple[list[Argv], list[Argv]]:
    from shadowcast.lab.sipp import scenarios

    p = ctx.params
    uac, uas = scenarios(ctx.home, ctx.assets / "audio.raw", p["pt"], p["duration_s"])
    common = ["-m", "1", "-nostdin", "-mp", str(p["media_port"])]
    server = ["sipp", "-sf", str(uas), "-i", ctx.server, "-mi", ctx.server, "-p", "5060"]
    client = ["sipp", "-sf", str(uac), "-i", ctx.client, "-mi", ctx.client,
              "-timeout", f"{p['duration_s'] + 20:.0f}s", f"{ctx.server}:5060"]  # fmt: skip
    return [server + common], [client + common]


def _conf_params(rng: random.Random) -> Params:
    return {
        "duration_s": rng.uniform(20, 120),
        "ptime_ms": rng.choice([20, 20, 20, 10, 40]),
        "audio_b": rng.uniform(50, 180),
        "fps": rng.choice([0, 15, 24, 30]),
        "video_kbps": _logu(rng, 120, 2500),
        "key_s": rng.uniform(2, 10),
        "bundle": rng.random() < 0.6,
        "port": 2 * rng.randint(8000, 30000),
    }


def _conf(ctx: Ctx) -> tuple[list[Argv], list[Argv]]:
    p = {**ctx.params, "seed": ctx.seed}
    a = {**p, "host": ctx.server, "peer": ctx.client, "peer_port": p["port"]}
    b = {**p, "host": ctx.client, "peer": ctx.server, "peer_port": p["port"], "seed": ctx.seed + 1}
    if random.Random(ctx.seed).random() < 0.5:  # the far side's camera off now and then
        a["fps"] = 0
    return [_py("conf", {**a, "duration_s": p["duration_s"] + 1})], [_py("conf", b)]


# ---------------------------------------------------------------- web


def _web_params(rng: random.Random) -> Params:
    scheme = rng.choice(["http", "https"])
    return {
        "duration_s": rng.uniform(30, 120),
        "scheme": scheme,
        "http2": scheme == "https" and rng.random() < 0.5,
        "conns": rng.randint(2, 6),
        "think_s": rng.uniform(2, 15),
        "pages": rng.randint(3, 8),
        "keepalive": rng.random() < 0.5,
        "keepalive_s": rng.uniform(10, 75),
    }


def _web(ctx: Ctx) -> tuple[list[Argv], list[Argv]]:
    p, rng = ctx.params, random.Random(ctx.seed)
    pages = []
    for i in range(p["pages"]):
        html = _sparse(ctx.www / f"p{i}" / "index.html", int(_logu(rng, 5e3, 2e5)))
        objs = [f"/p{i}/{html}"]
        for j in range(rng.randint(3, 60)):
            size = int(min(3e6, 8e3 * rng.lognormvariate(0, 1.4)))
            objs.append(f"/p{i}/" + _sparse(ctx.www / f"p{i}" / f"o{j}.bin", size))
        pages.append(objs)
    cp = {**p, "host": ctx.server, "pages": pages, "seed": ctx.seed}
    return [nginx(ctx)], [_py("browse", cp)]


# ---------------------------------------------------------------- other


def _dns_params(rng: random.Random) -> Params:
    return {
        "duration_s": rng.uniform(15, 60),
        "burst": rng.randint(1, 6),
        "think_s": rng.uniform(0.5, 8),
        "tcp_share": rng.choice([0.0, 0.0, 0.05, 0.2]),
    }


def _dns(ctx: Ctx) -> tuple[list[Argv], list[Argv]]:
    rng = random.Random(ctx.seed)
    hosts = ctx.home / "hosts"
    known = [f"www{i}.site{rng.randint(0, 99)}.lab" for i in range(150)]
    hosts.write_text("".join(f"10.{rng.randint(0, 255)}.{i % 250}.7 {n}\n"
                             for i, n in enumerate(known)))  # fmt: skip
    names = known + [f"nx{i}.lab" for i in range(40)]
    server = ["dnsmasq", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
              f"--addn-hosts={hosts}", f"--listen-address={ctx.server}", "--bind-interfaces",
              "--local=/lab/", f"--pid-file={ctx.home}/dnsmasq.pid", "--user=root"]  # fmt: skip
    cp = {**ctx.params, "host": ctx.server, "names": names, "seed": ctx.seed}
    return [server], [_py("dns", cp)]


def _ping_params(rng: random.Random) -> Params:
    return {"duration_s": rng.uniform(10, 60), "interval": _logu(rng, 0.2, 2.0),
            "size": rng.choice([56, 56, 64, 120, 1000])}  # fmt: skip


def _ping(ctx: Ctx) -> tuple[list[Argv], list[Argv]]:
    p = ctx.params
    n = max(2, int(p["duration_s"] / p["interval"]))
    cli = ["ping", "-q", "-c", str(n), "-i", f"{p['interval']:.2f}", "-s", str(p["size"]),
           "-W", "1", ctx.server]  # fmt: skip
    return [], [cli]


KINDS: dict[str, Kind] = {
    "video-vod": Kind("video", ("nginx",), _video_params(False), _video),
    "video-live": Kind("video", ("nginx",), _video_params(True), _video),
    "bulk-iperf3": Kind("bulk", ("iperf3",), _iperf_params, _iperf),
    "bulk-http": Kind("bulk", ("nginx", "curl", "timeout"), _http_bulk_params, _http_bulk),
    "bulk-scp": Kind("bulk", ("/usr/sbin/sshd", "scp", "timeout"), _scp_params, _scp),
    "ssh-typing": Kind("interactive", ("/usr/sbin/sshd", "ssh"), _typing_params, _typing),
    "game-udp": Kind("interactive", (), _game_params(False), _game),
    "game-tcp": Kind("interactive", (), _game_params(True), _game),
    "sip-call": Kind("voip", ("sipp",), _sip_params, _sip),
    "rtp-conference": Kind("voip", (), _conf_params, _conf),
    "web-browse": Kind("web", ("nginx", "curl"), _web_params, _web),
    "dns-lookups": Kind("other", ("dnsmasq", "dig"), _dns_params, _dns),
    "ping": Kind("other", ("ping",), _ping_params, _ping, icmp=True),
}


def missing_tools(kind: str) -> list[str]:
    """Programs ``kind`` needs that are not installed."""
    from shutil import which

    def present(t: str) -> bool:
        return os.path.exists(t) if "/" in t else which(t) is not None

    return [t for t in KINDS[kind].tools if not present(t)]
