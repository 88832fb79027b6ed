"""Cross traffic in the lab: iperf3 in the edge namespaces, always a separate process."""

from __future__ import annotations

import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from shadowcast.errors import ProbeError
from shadowcast.lab.build import LabPlan
from shadowcast.lab.scenario import Flow
from shadowcast.records import DemandSeries
from shadowcast.shadow.config import StampConfig


def have_iperf3() -> bool:
    return shutil.which("iperf3") is not None


@dataclass
class Processes:
    """Processes started in lab namespaces; ``stop`` ends exactly these (by PID)."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def stop(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=3)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.procs.clear()

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _spawn(ns: str, args: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def iperf_server(plan: LabPlan, dst: str, port: int = 5201) -> subprocess.Popen[bytes]:
    if not have_iperf3():
        raise ProbeError("iperf3 is not installed (apt-get install iperf3)")
    e = plan.edges[dst]
    p = _spawn(e.ns, ["iperf3", "-s", "-B", e.addr_host, "-p", str(port)])
    time.sleep(0.3)
    return p


def iperf_udp(
    plan: LabPlan, src: str, dst: str, mbps: float, seconds: float, port: int = 5201
) -> subprocess.Popen[bytes]:
    """UDP cross traffic at ``mbps`` (iperf3 paces it) from ``src``'s edge host to ``dst``'s."""
    a, d = plan.edges[src], plan.edges[dst]
    return _spawn(
        a.ns,
        ["iperf3", "-c", d.addr_host, "-p", str(port), "-u", "-b", f"{mbps * 1e6:.0f}",
         "-l", "1200", "-t", str(max(1, round(seconds))), "--pacing-timer", "200"],
    )  # fmt: skip


def iperf_client(
    plan: LabPlan,
    src: str,
    dst: str,
    *,
    port: int,
    mbps: float,
    seconds: float,
    udp: bool,
    streams: int = 1,
    length: int = 1200,
    tos: int = 0,
) -> subprocess.Popen[bytes]:
    """An iperf3 client from ``src``'s edge host to ``dst``'s: ``mbps`` in all, paced, over
    ``streams`` parallel streams (each its own source port), TCP or UDP, in writes of
    ``length`` bytes, DSCP ``tos``."""
    if not have_iperf3():
        raise ProbeError("iperf3 is not installed (apt-get install iperf3)")
    a, d = plan.edges[src], plan.edges[dst]
    n = max(1, streams)
    args = ["iperf3", "-c", d.addr_host, "-p", str(port), "-P", str(n),
            "-b", f"{mbps * 1e6 / n:.0f}", "-t", str(max(1, round(seconds)))]  # fmt: skip
    args += ["-l", str(length)]  # TCP too: paced in small writes, not 128 KiB bursts
    if udp:
        args += ["-u", "--pacing-timer", "200"]
    if tos:
        args += ["-S", str(tos)]
    return _spawn(a.ns, args)


def reflector(
    plan: LabPlan, at: str, host: str, port: int = 862, stamp: StampConfig | None = None
) -> subprocess.Popen[bytes]:
    """A STAMP reflector process in ``at``'s edge namespace, bound to ``host``, with the
    ``shadow.stamp`` settings ``stamp`` (handed over on stdin, never on the command line;
    None: the process reads the settings file and environment as the CLI does)."""
    extra = ["--settings-stdin"] if stamp is not None else []
    p = subprocess.Popen(
        ["ip", "netns", "exec", plan.edges[at].ns, sys.executable, "-m",
         "shadowcast.shadow.serve", host, str(port), *extra],
        stdin=subprocess.PIPE if stamp is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    if stamp is not None:
        assert p.stdin is not None
        p.stdin.write(stamp.model_dump_json().encode())
        p.stdin.close()
    assert p.stdout is not None
    ready = p.stdout.readline().strip() == b"ready"
    p.stdout.close()  # it prints one line only
    if not ready:
        p.kill()
        p.wait()
        raise ProbeError(f"stamp reflector did not start in {plan.edges[at].ns}")
    return p


def replay_demands(
    plan: LabPlan,
    demands: DemandSeries,
    *,
    step_seconds: float = 2.0,
    max_pairs: int = 8,
    first_port: int = 5400,
    on_step: Callable[[int], None] | None = None,
) -> dict[str, float]:
    """Cross traffic that follows a demand series: each step lasts ``step_seconds`` and
    every OD pair whose ends have edge hosts sends ``demand / plan.scale`` Mbit/s of UDP
    (one iperf3 client per pair and step; the ``max_pairs`` largest pairs only)."""
    if not have_iperf3():
        raise ProbeError("iperf3 is not installed (apt-get install iperf3)")
    usable = [i for i, (s, d) in enumerate(demands.od_pairs)
              if s in plan.edges and d in plan.edges and s != d]  # fmt: skip
    if not usable:
        raise ProbeError(f"no OD pair of {demands.source or 'the demands'} has lab edge hosts")
    top = sorted(usable, key=lambda i: -float(demands.values[:, i].sum()))[:max_pairs]
    sent_mbit = 0.0
    with Processes() as servers:
        for k, i in enumerate(top):
            servers.procs.append(iperf_server(plan, demands.od_pairs[i][1], first_port + k))
        for t in range(demands.steps):
            t0 = time.time()
            with Processes() as clients:
                for k, i in enumerate(top):
                    mbps = float(demands.values[t, i]) / plan.scale
                    if mbps <= 0.001:
                        continue
                    src, dst = demands.od_pairs[i]
                    clients.procs.append(
                        iperf_udp(plan, src, dst, mbps, step_seconds, port=first_port + k)
                    )
                    sent_mbit += mbps * step_seconds
                for c in clients.procs:
                    try:
                        c.wait(timeout=step_seconds + 5)
                    except subprocess.TimeoutExpired:
                        c.terminate()
            if on_step is not None:
                on_step(t)
            time.sleep(max(0.0, step_seconds - (time.time() - t0)))
    return {"steps": float(demands.steps), "pairs": float(len(top)), "offered_mbit": sent_mbit}


class TrafficRunner:
    """Plays a schedule of iperf3 clients (:class:`Flow`) on the lab from a
    thread: a server per (destination, port) first, each client at its start time; ``stop``
    (or the end of the schedule) ends every process it started."""

    def __init__(self, plan: LabPlan, flows: Sequence[Flow], tos: Mapping[str, int]) -> None:
        self.plan = plan
        self.flows = sorted(flows, key=lambda f: f.start_s)
        self.tos = dict(tos)
        self.procs = Processes()
        self.started_at = 0.0
        self.clients = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> float:
        """Start the servers, then play the schedule; returns its time zero (Unix s)."""
        for dst, port in sorted({(f.dst, f.port) for f in self.flows}):
            self.procs.procs.append(iperf_server(self.plan, dst, port))
        self.started_at = time.time()
        self._thread = threading.Thread(target=self._play, name="lab-traffic", daemon=True)
        self._thread.start()
        return self.started_at

    def _play(self) -> None:
        end = self.started_at + max((f.start_s + f.seconds for f in self.flows), default=0.0)
        clients = []
        for f in self.flows:
            if self._stop.wait(max(0.0, self.started_at + f.start_s - time.time())):
                return
            p = iperf_client(self.plan, f.src, f.dst, port=f.port, mbps=f.mbps,
                             seconds=f.seconds, udp=f.udp, streams=f.streams,
                             length=f.length, tos=self.tos.get(f.category, 0))  # fmt: skip
            self.procs.procs.append(p)
            clients.append((f, p))
            self.clients += 1
        self._stop.wait(max(0.0, end + 5 - time.time()))
        for f, p in clients:
            if p.poll() not in (None, 0):
                self.failed.append(f"{f.category} {f.src}->{f.dst}:{f.port} exit {p.returncode}")

    def done(self) -> bool:
        return self._thread is not None and not self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        self.procs.stop()
