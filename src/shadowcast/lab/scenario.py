"""The lab demo's scenario: a backbone with one thin link, traffic that ramps over it, and
the files and settings the service runs with (pure: nothing here touches the network).

The backbone is a triangle: A-B is thin (``THIN_MBPS``), A-C and C-B are wide
(``WIDE_MBPS``), so A->B has one alternative, A-C-B, and every pair of routers has exactly
one shortest path (per-destination routes never conflict). Capacities are lab-scale Mbit/s:
the service sees the lab as it is (``plan_lab(scale=1)``).

Traffic is iperf3 in the edge hosts, three application classes told apart by port (the
exporters send no application names; operator rules name them): bulk over TCP on 5201,
voip over UDP on 5203, video over UDP on 5210-5239. Each class also carries a DSCP mark
(``-S``), which is what the Linux actuator's u32 filters match. Video ramps: one more
stream of ``video_step_mbps`` every ``stair_s`` seconds on the next port (an iperf3
server serves one client at a time), so the demand A->B grows steadily, from about 30 %
of the thin link's capacity to past it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shadowcast.act.linux import LinuxBinding, Port
from shadowcast.lab.build import LabPlan
from shadowcast.lab.noc import IPFIX_PORT, Noc
from shadowcast.records import Link, Topology

DEMO_PREFIX = "scdemo-"
THIN_MBPS = 6.0
WIDE_MBPS = 30.0
VIDEO_PORT = 5210
MAX_VIDEO_STREAMS = 30
PORTS = {
    "bulk": "5201",
    "voip": "5203",
    "video": f"{VIDEO_PORT}-{VIDEO_PORT + MAX_VIDEO_STREAMS - 1}",
}
TOS = {"bulk": 0x20, "video": 0x88, "voip": 0xB8}  # CS1, AF41, EF
ROUTING_CLASS = {"bulk": "low", "video": "medium", "voip": "high"}  # taxonomy sensitivity
PROBE_PORTS = (4789, 862)  # VXLAN and STAMP: the service's own probes


def demo_topology() -> Topology:
    links: list[Link] = []
    for a, b, mbps in (("A", "B", THIN_MBPS), ("A", "C", WIDE_MBPS), ("C", "B", WIDE_MBPS)):
        links += [Link(a, b, mbps * 1e6), Link(b, a, mbps * 1e6)]
    return Topology("lab-triangle", ("A", "B", "C"), tuple(links))


@dataclass(frozen=True, slots=True)
class Flow:
    """One iperf3 client: ``mbps`` in all over ``streams`` parallel streams."""

    start_s: float
    seconds: float
    src: str
    dst: str
    category: str
    port: int
    mbps: float
    udp: bool
    streams: int = 1
    length: int = 1200  # UDP payload bytes


def demo_schedule(
    seconds: float = 150.0, *, stair_s: float = 10.0, video_step_mbps: float = 0.4
) -> list[Flow]:
    """The traffic: bulk and voip A->B all along, a little voip C->A, and video A->B
    ramping: 0.5 Mbit/s, then one more stream of ``video_step_mbps`` every ``stair_s``
    (at most ``MAX_VIDEO_STREAMS``), a steady ramp over the thin link's capacity."""
    flows = [
        Flow(0.0, seconds, "A", "B", "bulk", 5201, 1.0, False, 4, 1400),
        Flow(0.0, seconds, "A", "B", "voip", 5203, 0.3, True, 2, 200),
        Flow(0.0, seconds, "C", "A", "voip", 5203, 0.2, True, 1, 200),
        Flow(0.0, seconds, "A", "B", "video", VIDEO_PORT, 0.5, True, 2),
    ]
    k = 1
    while k * stair_s < seconds and k < MAX_VIDEO_STREAMS:
        start = k * stair_s
        flows.append(Flow(start, seconds - start, "A", "B", "video", VIDEO_PORT + k,
                          video_step_mbps, True, 1))  # fmt: skip
        k += 1
    return flows


def edge_prefix(plan: LabPlan, router: str) -> str:
    e = plan.edges[router]
    return str(ipaddress.ip_network(f"{e.addr_host}/30", strict=False))


def sites_doc(plan: LabPlan, noc: Noc) -> dict[str, Any]:
    """The profiler's sites file: each router's exporter address -> its site, each edge
    host's prefix -> its router's site (sites are named after routers)."""
    return {
        "sites": {r: {"prefixes": [edge_prefix(plan, r)]} for r in plan.edges},
        "exporters": {noc.exporter(r): {"site": r} for r in plan.edges},
    }


def rules_doc() -> dict[str, Any]:
    """Operator rules: iperf3 ports -> applications and categories; the service's own
    probes (VXLAN, STAMP) named as such."""
    rules: list[dict[str, Any]] = [
        {"name": f"iperf-{c}", "app": f"iperf-{c}", "category": c, "ports": [p]}
        for c, p in PORTS.items()
    ]
    rules.append({"name": "shadow-probes", "app": "shadowcast-probe", "category": "other",
                  "ports": list(PROBE_PORTS)})  # fmt: skip
    return {"rules": rules}


def settings_doc(
    work: Path, topology_file: Path, sites_file: Path, rules_file: Path, *, step_s: int = 5
) -> dict[str, Any]:
    """The sections the demo sets (merged over the caller's settings).

    Accelerated cycles: a ``step_s`` rollup step closed ``step_s`` late (softflowd cuts
    long flows into records of at most 2-3 s and exports them a second later), a 40 s
    warm-up, refits every 15 s, a one-minute plan horizon. The model is Theta on the means
    (see docs/lab.md for why): plans and alerts use the mean forecast, whose drift term
    extrapolates the ramp, where this short a history makes the conformal intervals far
    too wide to plan on. Plans are path splits only (``reserve``/``shape`` empty): the
    lab's links are shaped by tbf, which the Linux actuator does not replace."""
    var = work / "var"
    mean = {"high": "mean", "medium": "mean", "low": "mean"}
    return {
        "data_dir": str(var),
        "store": {"backend": "duckdb", "data_dir": str(var), "path": "shadowcast.duckdb"},
        # the dashboard on a port of its own (logged at start): never the default 8650 a
        # running `shadowcast run` may hold
        "api": {"listen": "127.0.0.1:0"},
        "collect": {
            "bind": "0.0.0.0",  # inside the NOC namespace: its management addresses only
            "listeners": [{"protocol": "ipfix", "port": IPFIX_PORT}],
            "workers": 1,
            "flush_interval_s": 0.5,
            "handoff_s": 0.2,
        },
        "profile": {
            "sites_file": str(sites_file),
            "rules_file": str(rules_file),
            "use_model": False,
            "tiers": {"1m": {"grain_s": 60, "retention_s": 86400}},
        },
        "rollup": {"step": f"{step_s}s", "lateness_s": step_s},
        "forecast": {"model": "theta", "horizons": [f"{3 * step_s}s", "1m"], "levels": [80, 95]},
        "alert": {
            "within_s": 60,
            "quantile_level": 0,
            "utilisation_threshold": 0.9,
            "policy": "threshold",
        },
        "plan": {"quantiles": mean, "reserve": [], "shape": [], "k_paths": 2},
        "act": {"actuator": "linux", "dry_run": False},
        "shadow": {"tunnels": {"probe_budget_share": 0.05, "idle_s": 60}},
        "service": {
            "topology": str(topology_file),
            "mode": "auto",
            "warmup": "40s",
            "retrain_every": "15s",
            "keep": "1h",
            "plan_horizon": "1m",
            "plan_trigger": 0.9,
            "plan_min_interval": "1m",
            "probe_interval": "10s",
            "probes_per_round": 4,
            "checkpoint_every": "30s",
            "flush_s": 2.0,
            "read_socket": True,
        },
    }


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base`` section by section (nested mappings merge)."""
    out = dict(base)
    for k, v in over.items():
        old = out.get(k)
        out[k] = merge(old, v) if isinstance(old, Mapping) and isinstance(v, Mapping) else v
    return out


def lab_binding(plan: LabPlan, *, rate_of: Mapping[str, float] | None = None) -> LinuxBinding:
    """The Linux actuator's view of the lab: each directed link's egress port (router
    namespace, device, the far end's address as next hop, shaped rate), each edge host's
    prefix, and each routing class's DSCP mark (``rate_of`` overrides a port's rate)."""
    ports: dict[str, Port] = {}
    for lk in plan.links:
        for u, v, dev, via, bps in ((lk.a, lk.b, lk.dev_a, lk.addr_b, lk.rate_ab_bps),
                                    (lk.b, lk.a, lk.dev_b, lk.addr_a, lk.rate_ba_bps)):  # fmt: skip
            name = f"{u}->{v}"
            rate = (rate_of or {}).get(name, bps / 1e6)
            ports[name] = Port(plan.routers[u], dev, via, rate)
    classes = {ROUTING_CLASS[c]: {"tos": tos} for c, tos in TOS.items()}
    return LinuxBinding(
        ports=ports,
        prefixes={r: edge_prefix(plan, r) for r in plan.edges},
        classes=classes,
    )
