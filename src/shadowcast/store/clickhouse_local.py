"""Throwaway local ClickHouse servers (tests, benchmarks, demos).

:func:`local_servers` starts ``count`` clickhouse-server processes on 127.0.0.1, each with
its config, data and logs under a folder, optionally joined as the shards of one cluster
(``remote_servers``), and stops them by PID when the block ends (and, should the starting
process be killed first, the kernel stops them: ``PR_SET_PDEATHSIG``). Debian's 18.16 starts in
under a second. Nothing listens beyond loopback.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

from shadowcast.errors import StoreError

HOST = "127.0.0.1"


def server_command() -> list[str] | None:
    """How to run a ClickHouse server here (None when none is installed)."""
    exe = shutil.which("clickhouse-server")
    if exe:
        return [exe]
    exe = shutil.which("clickhouse")
    return [exe, "server"] if exe else None


@dataclass(frozen=True, slots=True)
class LocalServer:
    """One running server."""

    port: int
    folder: Path
    process: subprocess.Popen[bytes]

    @property
    def address(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def pid(self) -> int:
        return int(self.process.pid)


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind((HOST, 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


def _users_xml(users: Mapping[str, str]) -> str:
    def user(name: str, password: str) -> str:
        return (
            f"<{name}><password>{escape(password)}</password><networks><ip>127.0.0.1</ip>"
            f"<ip>::1</ip></networks><profile>default</profile><quota>default</quota></{name}>"
        )

    body = "".join(user(n, p) for n, p in {"default": "", **users}.items())
    return (
        '<?xml version="1.0"?><yandex><profiles><default><max_memory_usage>4000000000'
        "</max_memory_usage></default></profiles><users>"
        f"{body}</users><quotas><default></default></quotas></yandex>\n"
    )


def _config_xml(folder: Path, port: int, cluster: str | None, ports: list[int]) -> str:
    remote = ""
    if cluster:
        shards = "".join(
            f"<shard><replica><host>{HOST}</host><port>{p}</port></replica></shard>" for p in ports
        )
        remote = f"<remote_servers><{cluster}>{shards}</{cluster}></remote_servers>"
    return f"""<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{folder}/server.log</log>
    <errorlog>{folder}/error.log</errorlog><size>10M</size><count>1</count></logger>
  <tcp_port>{port}</tcp_port>
  <listen_host>{HOST}</listen_host>
  <path>{folder}/data/</path>
  <tmp_path>{folder}/tmp/</tmp_path>
  <user_files_path>{folder}/user_files/</user_files_path>
  <format_schema_path>{folder}/format_schemas/</format_schema_path>
  <users_config>{folder}/users.xml</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <uncompressed_cache_size>268435456</uncompressed_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  {remote}
</yandex>
"""


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the process that started it exits, so a
    killed test run or benchmark leaves no server behind (Linux; elsewhere a no-op)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _ready(port: int) -> bool:
    """Whether the server accepts connections (it listens once its tables are loaded)."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def start(
    folder: Path,
    port: int,
    *,
    cluster: str | None = None,
    cluster_ports: list[int] | None = None,
    users: Mapping[str, str] | None = None,
    timeout_s: float = 30.0,
) -> LocalServer:
    """Start one server with its files under ``folder``; waits until it answers."""
    cmd = server_command()
    if cmd is None:
        raise StoreError("clickhouse-server is not installed (apt-get install clickhouse-server)")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "users.xml").write_text(_users_xml(users or {}))
    cfg = folder / "config.xml"
    cfg.write_text(_config_xml(folder, port, cluster, cluster_ports or [port]))
    with open(folder / "stdout.log", "wb") as out:
        proc = subprocess.Popen(
            [*cmd, f"--config-file={cfg}"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            cwd=folder,
        )
    server = LocalServer(port, folder, proc)
    deadline = time.monotonic() + timeout_s
    while not _ready(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(server)
            log_tail = ""
            for name in ("error.log", "stdout.log"):
                p = folder / name
                if p.is_file():
                    log_tail += p.read_text(errors="replace")[-600:]
            raise StoreError(f"clickhouse-server on port {port} did not start: {log_tail.strip()}")
        time.sleep(0.05)
    return server


def stop(server: LocalServer, timeout_s: float = 20.0) -> None:
    """SIGTERM to the server's PID, SIGKILL if it has not exited in ``timeout_s``."""
    proc = server.process
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout_s)


@contextmanager
def local_servers(
    folder: Path,
    count: int = 1,
    *,
    cluster: str | None = None,
    users: Mapping[str, str] | None = None,
) -> Iterator[list[LocalServer]]:
    """``count`` servers under ``folder``/chN (the shards of ``cluster`` when given)."""
    ports = free_ports(count)
    with ExitStack() as stack:
        servers = []
        for i, port in enumerate(ports):
            s = start(folder / f"ch{i}", port, cluster=cluster, cluster_ports=ports, users=users)
            stack.callback(stop, s)
            servers.append(s)
        yield servers
