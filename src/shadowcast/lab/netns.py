"""Thin helpers over iproute2 and network namespaces (root only)."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence

from shadowcast.errors import ProbeError
from shadowcast.shadow.sockets import NETNS_DIR, socket_in_netns

log = logging.getLogger(__name__)

__all__ = ["NETNS_DIR", "socket_in_netns"]


def have_root() -> tuple[bool, str]:
    """Can this process build a lab? ``(ok, reason)``."""
    if os.geteuid() != 0:
        return False, "network-namespace lab needs root"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return False, f"{tool} (iproute2) not installed"
    return True, ""


def run(args: Sequence[str], *, check: bool = True) -> str:
    """Run one command; a failure raises ProbeError naming the command."""
    proc = subprocess.run(list(args), capture_output=True, text=True, check=False)
    if check and proc.returncode != 0:
        raise ProbeError(f"{' '.join(args)}: {proc.stderr.strip() or proc.returncode}")
    return proc.stdout


def ip(ns: str | None, *args: str, check: bool = True) -> str:
    return run(["ip", *(("-n", ns) if ns else ()), *args], check=check)


def batch(ns: str | None, lines: Sequence[str], *, tool: str = "ip") -> None:
    """Run many ``ip`` (or ``tc``) commands in one process: ``TOOL [-n NS] -batch -``."""
    if not lines:
        return
    cmd = [tool, *(("-n", ns) if ns else ()), "-batch", "-"]
    proc = subprocess.run(cmd, input="\n".join(lines) + "\n", capture_output=True, text=True,
                          check=False)  # fmt: skip
    if proc.returncode != 0:
        raise ProbeError(f"{' '.join(cmd)}: {proc.stderr.strip() or proc.returncode}")


def tc(ns: str, *args: str, check: bool = True) -> str:
    return run(["ip", "netns", "exec", ns, "tc", *args], check=check)


def sysctl(ns: str, values: dict[str, str]) -> None:
    run(["ip", "netns", "exec", ns, "sysctl", "-qw", *(f"{k}={v}" for k, v in values.items())])


def list_netns(prefix: str) -> list[str]:
    try:
        names = os.listdir(NETNS_DIR)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if n.startswith(prefix))


def kill_netns_pids(ns: str) -> int:
    """SIGTERM every process inside namespace ``ns`` (processes the lab started there)."""
    out = run(["ip", "netns", "pids", ns], check=False)
    n = 0
    for tok in out.split():
        try:
            os.kill(int(tok), signal.SIGTERM)
            n += 1
        except (ValueError, ProcessLookupError):
            continue
    return n
