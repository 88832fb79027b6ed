"""The lab's management namespace (the NOC) and the routers' flow exporters.

``<prefix>noc`` is where the service's collector listens. It has one veth to every router:
management links, not part of the topology (no routes through them, no shaping, no
forwarding between them). Router ``i``'s end is ``MGMT_NET + 4 i + 2``, the NOC's end
``+ 1``, a /30 each, so a router's flow exporter sends to its own NOC address over a
directly connected link and the collector sees each router under its own exporter
address. Nothing is sent to any address outside the namespaces the lab made;
``build.down(prefix)`` removes the NOC with the rest.

The exporters are softflowd processes, one per router with an edge host, capturing the
router's *edge* port (towards its edge host) and exporting IPFIX to the NOC. An edge port
sees both directions of every flow of its host: a flow from A's host to B's is exported by
A (ingress A, destination in B's prefix: demand A->B) and by B (ingress B, destination in
B's prefix: ``local``, counted by the rollup and never demand). Transit ports are not
exported, so every flow is counted once, at the router where it enters the backbone.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from shadowcast.errors import ProbeError
from shadowcast.lab import netns
from shadowcast.lab.build import LabPlan

MGMT_NET = ipaddress.ip_network("10.250.0.0/16")
IPFIX_PORT = 4739


@dataclass(frozen=True, slots=True)
class MgmtLink:
    router: str
    dev_noc: str
    dev_router: str
    addr_noc: str
    addr_router: str  # the router's exporter address as the collector sees it


@dataclass(frozen=True, slots=True)
class Noc:
    ns: str
    links: dict[str, MgmtLink]  # router -> its management link

    def exporter(self, router: str) -> str:
        return self.links[router].addr_router


def plan_noc(plan: LabPlan) -> Noc:
    """Names and addresses of the NOC and its management links (no side effects)."""
    links = {}
    for i, r in enumerate(plan.routers):
        net = int(MGMT_NET.network_address) + 4 * i
        links[r] = MgmtLink(
            r, f"{plan.prefix}m{i}n", f"{plan.prefix}m{i}r",
            str(ipaddress.ip_address(net + 1)), str(ipaddress.ip_address(net + 2)),
        )  # fmt: skip
    return Noc(f"{plan.prefix}noc", links)


def noc_up(plan: LabPlan, noc: Noc) -> None:
    """Create the NOC namespace and its veths (the lab itself must be up)."""
    netns.batch(None, [f"netns add {noc.ns}"])
    netns.sysctl(noc.ns, {"net.ipv6.conf.all.disable_ipv6": "1",
                          "net.ipv6.conf.default.disable_ipv6": "1"})  # fmt: skip
    root, ipn = [], ["link set lo up"]
    ipr: dict[str, list[str]] = {}
    for r, m in noc.links.items():
        ns = plan.routers[r]
        root.append(f"link add {m.dev_noc} netns {noc.ns} type veth peer name {m.dev_router} "
                    f"netns {ns}")  # fmt: skip
        ipn += [f"addr add {m.addr_noc}/30 dev {m.dev_noc}", f"link set {m.dev_noc} up"]
        ipr[ns] = [f"addr add {m.addr_router}/30 dev {m.dev_router}",
                   f"link set {m.dev_router} up"]  # fmt: skip
    netns.batch(None, root)
    netns.batch(noc.ns, ipn)
    for ns, lines in ipr.items():
        netns.batch(ns, lines)


def have_softflowd() -> bool:
    return shutil.which("softflowd") is not None


def softflowd(
    plan: LabPlan, noc: Noc, router: str, work: Path, *, port: int = IPFIX_PORT,
    maxlife_s: int = 2,
) -> subprocess.Popen[bytes]:  # fmt: skip
    """softflowd on ``router``'s edge port, exporting IPFIX to the NOC every ``maxlife_s``
    (a long flow is cut into records that short, checked every second)."""
    if not have_softflowd():
        raise ProbeError("softflowd is not installed (apt-get install softflowd)")
    e, m = plan.edges[router], noc.links[router]
    work.mkdir(parents=True, exist_ok=True)
    args = [
        "softflowd", "-i", e.dev_router, "-n", f"{m.addr_noc}:{port}", "-v", "10", "-d",
        "-p", str(work / f"softflowd-{router}.pid"), "-c", str(work / f"softflowd-{router}.ctl"),
        "-t", f"maxlife={maxlife_s}", "-t", "expint=1", "-t", "udp=10", "-t", "tcp=10",
        "-t", "tcp.fin=2", "-t", "tcp.rst=2",
    ]  # fmt: skip
    return subprocess.Popen(
        ["ip", "netns", "exec", plan.routers[router], *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
