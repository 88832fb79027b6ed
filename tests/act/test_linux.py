"""Linux actuator in network namespaces: 4 routers, real iperf3 traffic.

r1 reaches r4's address 10.4.4.4 via r2 or via r3 (two disjoint 2-hop paths); the plan's
path switch must move the bytes, an htb reservation must hold a class's rate against a
4-stream competitor, and a failed apply must restore routes and qdiscs exactly.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest

from netnames import process_token
from shadowcast.act.base import AuditRecord, apply_plan, rollback
from shadowcast.act.linux import LinuxActuator, LinuxBinding, Port
from shadowcast.errors import ActuationError, RollbackError
from shadowcast.plan.base import PathSplit, Plan, Reservation
from shadowcast.records import Link, Topology

pytestmark = [pytest.mark.integration, pytest.mark.slow]

RATE = 50.0  # Mbit/s of every htb port


def _sh(*cmd: str, check: bool = True) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    if check and out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr}")
    return out.stdout


def _skip_reason() -> str | None:
    if os.geteuid() != 0:
        return "needs root for network namespaces"
    for tool in ("ip", "tc", "iperf3"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    probe = f"scprobe{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", probe], capture_output=True).returncode != 0:
        return "ip netns unavailable"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


LINKS = [("r1", "r2", "12"), ("r1", "r3", "13"), ("r2", "r4", "24"), ("r3", "r4", "34")]


_COUNTER = itertools.count()


class Lab:
    def __init__(self) -> None:
        self.n = next(_COUNTER)
        tag = f"{process_token()}{self.n}"
        self.ns = {r: f"a{tag}{r}" for r in ("r1", "r2", "r3", "r4")}
        self.dev: dict[tuple[str, str], str] = {}
        self.addr: dict[tuple[str, str], str] = {}

    def up(self) -> None:
        for ns in self.ns.values():
            _sh("ip", "netns", "add", ns)
            _sh("ip", "-n", ns, "link", "set", "lo", "up")
            for key in (
                "net.ipv4.ip_forward=1",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ):
                _sh("ip", "netns", "exec", ns, "sysctl", "-qw", key)
        for a, b, net in LINKS:
            da, db = f"{a}-{b}", f"{b}-{a}"
            self.dev[(a, b)], self.dev[(b, a)] = da, db
            _sh(
                "ip",
                "link",
                "add",
                f"v{process_token()}{self.n}{net}a",
                "type",
                "veth",
                "peer",
                "name",
                f"v{process_token()}{self.n}{net}b",
            )
            for end, r, dev, host in (("a", a, da, 1), ("b", b, db, 2)):
                tmp = f"v{process_token()}{self.n}{net}{end}"
                _sh("ip", "link", "set", tmp, "netns", self.ns[r])
                _sh("ip", "-n", self.ns[r], "link", "set", tmp, "name", dev)
                _sh("ip", "-n", self.ns[r], "addr", "add", f"10.{net}.0.{host}/24", "dev", dev)
                _sh("ip", "-n", self.ns[r], "link", "set", dev, "up")
                self.addr[(r, "a" if end == "a" else "b")] = ""
            self.addr[(a, b)] = f"10.{net}.0.2"  # next hop from a towards b
            self.addr[(b, a)] = f"10.{net}.0.1"
        _sh("ip", "-n", self.ns["r1"], "addr", "add", "10.1.1.1/32", "dev", "lo")
        _sh("ip", "-n", self.ns["r4"], "addr", "add", "10.4.4.4/32", "dev", "lo")
        # Initial routing: everything via r2; r3 knows both ends too.
        self.route("r1", "10.4.4.4/32", "r2")
        self.route("r2", "10.4.4.4/32", "r4")
        self.route("r3", "10.4.4.4/32", "r4")
        self.route("r4", "10.1.1.1/32", "r2")
        self.route("r2", "10.1.1.1/32", "r1")
        self.route("r3", "10.1.1.1/32", "r1")

    def route(self, r: str, prefix: str, via: str) -> None:
        _sh(
            "ip",
            "-n",
            self.ns[r],
            "route",
            "replace",
            prefix,
            "via",
            self.addr[(r, via)],
            "dev",
            self.dev[(r, via)],
        )

    def down(self) -> None:
        for ns in self.ns.values():
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)

    def binding(self, bad_gateway: bool = False) -> LinuxBinding:
        ports = {}
        for (a, b), dev in self.dev.items():
            via = self.addr[(a, b)]
            if bad_gateway and (a, b) == ("r1", "r3"):
                via = "10.77.0.1"  # not on link: `ip route` refuses it
            ports[f"{a}->{b}"] = Port(self.ns[a], dev, via, RATE)
        return LinuxBinding(
            ports=ports,
            prefixes={"r4": "10.4.4.4/32", "r1": "10.1.1.1/32"},
            classes={"voip": {"dport": 5201}, "bulk": {"dport": 5202}},
        )

    def tx_bytes(self, r: str, via: str) -> int:
        js = json.loads(
            _sh("ip", "-n", self.ns[r], "-j", "-s", "link", "show", "dev", self.dev[(r, via)])
        )
        return int(js[0]["stats64"]["tx"]["bytes"])

    def state(self) -> dict[str, object]:
        out: dict[str, object] = {}
        for r, ns in self.ns.items():
            out[f"{r} route"] = json.loads(_sh("ip", "-n", ns, "-j", "route", "show"))
            for (a, _b), dev in self.dev.items():
                if a != r:
                    continue
                qd = json.loads(_sh("tc", "-n", ns, "-j", "qdisc", "show", "dev", dev) or "[]")
                for q in qd:  # a packet counter, not configuration
                    q.get("options", {}).pop("direct_packets_stat", None)
                out[f"{r} {dev} qdisc"] = qd
                for what in ("class", "filter"):  # `tc -j` prints text for these (6.1)
                    out[f"{r} {dev} {what}"] = _sh("tc", "-n", ns, what, "show", "dev", dev)
        return out

    def iperf(
        self, port: int, seconds: float, *, bitrate: str = "0", streams: int = 1
    ) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns["r1"],
                "iperf3",
                "-c",
                "10.4.4.4",
                "-B",
                "10.1.1.1",
                "-p",
                str(port),
                "-t",
                str(seconds),
                "-b",
                bitrate,
                "-P",
                str(streams),
                "-J",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def server(self, port: int) -> subprocess.Popen[str]:
        p = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                self.ns["r4"],
                "iperf3",
                "-s",
                "-p",
                str(port),
                "-1",
                "-B",
                "10.4.4.4",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        time.sleep(0.3)
        return p


@pytest.fixture
def lab() -> Iterator[Lab]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    lab = Lab()
    try:
        lab.up()
        yield lab
    finally:
        lab.down()


def _topology() -> Topology:
    links = []
    for a, b, _ in LINKS:
        links += [Link(a, b, RATE * 1e6), Link(b, a, RATE * 1e6)]
    return Topology("lab", ("r1", "r2", "r3", "r4"), tuple(links))


def _plan(via: str, reserve: float = 0.0, pid: str = "p") -> Plan:
    topo = _topology()
    idx = {(lk.src, lk.dst): e for e, lk in enumerate(topo.links)}
    nodes = ("r1", via, "r4")
    links = (idx[("r1", via)], idx[(via, "r4")])
    res = ()
    if reserve:
        res = (Reservation("voip", "r1", "r4", nodes, links, reserve, "p95", "test"),)
    return Plan(
        plan_id=pid,
        topology="lab",
        issued="2024-01-01T00:00:00Z",
        horizon_s=900,
        method="test",
        splits=(PathSplit("voip", "r1", "r4", links, nodes, 1.0, 10.0),),
        reservations=res,
    )


def _run_client(lab: Lab, port: int, seconds: float, **kw: object) -> dict[str, object]:
    srv = lab.server(port)
    try:
        cli = lab.iperf(port, seconds, **kw)  # type: ignore[arg-type]
        out, err = cli.communicate(timeout=seconds + 20)
        assert cli.returncode == 0, err
        result: dict[str, object] = json.loads(out)
        return result
    finally:
        srv.kill()
        srv.wait()


def test_path_switch_moves_the_bytes(lab: Lab) -> None:
    act = LinuxActuator(lab.binding())
    topo = _topology()
    audit: list[object] = []
    apply_plan(act, _plan("r3"), topo, dry_run=False, audit=audit.append)
    before = (lab.tx_bytes("r1", "r2"), lab.tx_bytes("r1", "r3"))
    _run_client(lab, 5201, 1, bitrate="20M")
    mid = (lab.tx_bytes("r1", "r2"), lab.tx_bytes("r1", "r3"))
    assert mid[1] - before[1] > 1_500_000  # ~2.5 MB went via r3
    assert mid[0] - before[0] < 200_000
    apply_plan(act, _plan("r2", pid="q"), topo, dry_run=False, audit=audit.append)
    _run_client(lab, 5201, 1, bitrate="20M")
    after = (lab.tx_bytes("r1", "r2"), lab.tx_bytes("r1", "r3"))
    assert after[0] - mid[0] > 1_500_000
    assert after[1] - mid[1] < 200_000
    assert len(audit) == 2


def test_htb_reservation_holds_under_contention(lab: Lab) -> None:
    act = LinuxActuator(lab.binding())
    apply_plan(act, _plan("r2", reserve=40.0), _topology(), dry_run=False)
    srv_v, srv_b = lab.server(5201), lab.server(5202)
    try:
        bulk = lab.iperf(5202, 4, streams=4)
        time.sleep(0.5)
        voip = lab.iperf(5201, 3)
        vout, verr = voip.communicate(timeout=30)
        bout, berr = bulk.communicate(timeout=30)
    finally:
        for s in (srv_v, srv_b):
            s.kill()
            s.wait()
    assert voip.returncode == 0, verr
    v_mbit = json.loads(vout)["end"]["sum_received"]["bits_per_second"] / 1e6
    b_mbit = json.loads(bout)["end"]["sum_received"]["bits_per_second"] / 1e6
    assert v_mbit >= 0.8 * 40, (v_mbit, b_mbit)
    assert v_mbit + b_mbit * 3 / 4 <= RATE * 1.15  # the port is shaped to 50 Mbit/s
    # Without the reservation the 4-stream competitor would take most of the port.
    act.rollback()
    assert "htb" not in _sh("tc", "-n", lab.ns["r1"], "qdisc", "show", "dev", "r1-r2")


def test_failed_apply_rolls_back_exactly(lab: Lab) -> None:
    act = LinuxActuator(lab.binding())
    topo = _topology()
    apply_plan(act, _plan("r2", reserve=20.0), topo, dry_run=False)
    before = lab.state()
    act.binding = lab.binding(bad_gateway=True)
    audit: list[object] = []
    with pytest.raises(ActuationError, match="rolled back"):
        apply_plan(
            act, _plan("r3", reserve=30.0, pid="bad"), topo, dry_run=False, audit=audit.append
        )
    assert lab.state() == before
    assert [a.action for a in audit] == ["apply", "rollback"]
    # The good binding still works afterwards, and rollback() returns to `before`'s parent.
    act.binding = lab.binding()
    apply_plan(act, _plan("r3", reserve=30.0, pid="good"), topo, dry_run=False)
    assert lab.state() != before
    act.rollback()
    assert lab.state() == before


def _routes_everywhere(lab: Lab) -> dict[str, object]:
    """``ip -j -d route show table all`` and its text form (which keeps metric locks)."""
    out: dict[str, object] = {}
    for r, ns in lab.ns.items():
        out[f"{r} json"] = json.loads(
            _sh("ip", "-n", ns, "-j", "-d", "route", "show", "table", "all")
        )
        out[f"{r} text"] = _sh("ip", "-n", ns, "-d", "route", "show", "table", "all")
    return out


def _split_plan(pid: str) -> Plan:
    topo = _topology()
    idx = {(lk.src, lk.dst): e for e, lk in enumerate(topo.links)}
    splits = tuple(
        PathSplit("voip", "r1", "r4", (idx[("r1", v)], idx[(v, "r4")]), ("r1", v, "r4"), 0.5, 10.0)
        for v in ("r2", "r3")
    )
    return Plan(pid, "lab", "2024-01-01T00:00:00Z", 900, "test", splits=splits)


def _rich_routes(lab: Lab) -> None:
    """Routes to r4 that carry what a naive re-creation loses."""
    n = lab.ns
    _sh("ip", "-n", n["r1"], "route", "replace", "10.4.4.4/32", "proto", "static", "mtu", "1400",
        "initcwnd", "20", "nexthop", "via", "10.12.0.2", "dev", "r1-r2", "weight", "3",
        "nexthop", "via", "10.13.0.2", "dev", "r1-r3", "weight", "7", "onlink")  # fmt: skip
    _sh("ip", "-n", n["r1"], "route", "add", "10.4.4.4/32", "via", "10.13.0.2", "dev", "r1-r3",
        "metric", "50", "mtu", "lock", "1300")  # fmt: skip
    _sh("ip", "-n", n["r1"], "route", "add", "10.4.4.4/32", "via", "10.99.0.2", "dev", "r1-r2",
        "onlink", "table", "100", "mtu", "1200")  # fmt: skip
    _sh("ip", "-n", n["r2"], "route", "replace", "10.4.4.4/32", "via", "10.24.0.2", "dev",
        "r2-r4", "onlink", "proto", "static", "mtu", "1400", "initcwnd", "20")  # fmt: skip
    _sh("ip", "-n", n["r3"], "route", "replace", "10.4.4.4/32", "via", "10.34.0.2", "dev",
        "r3-r4", "initcwnd", "10", "quickack", "1", "realm", "7")  # fmt: skip


def test_rollback_restores_every_route_attribute(lab: Lab) -> None:
    _rich_routes(lab)
    before = _routes_everywhere(lab)
    assert "mtu lock 1300" in str(before["r1 text"]) and "weight 7" in str(before["r1 text"])
    topo = _topology()
    audit: list[AuditRecord] = []
    # a failure after r2 and r3 were changed: r1's multipath route is refused
    act = LinuxActuator(lab.binding(bad_gateway=True))
    with pytest.raises(ActuationError, match="rolled back 2 step"):
        apply_plan(act, _split_plan("bad"), topo, dry_run=False, audit=audit.append)
    assert _routes_everywhere(lab) == before
    assert [(a.action, a.status) for a in audit] == [
        ("apply", "failed"),
        ("rollback", "rolled-back"),
    ]
    # a plan that applies, then rollback(): the same state again
    act = LinuxActuator(lab.binding())
    apply_plan(act, _split_plan("good"), topo, dry_run=False)
    changed = _routes_everywhere(lab)
    assert changed != before and "mtu 1400" not in str(changed["r2 text"])
    assert "weight 50" in str(changed["r1 text"])
    res = rollback(act, "good", audit=audit.append)
    assert res.status == "ok" and _routes_everywhere(lab) == before


def test_a_restore_that_differs_is_a_failed_rollback(lab: Lab) -> None:
    # r2 reaches r4 through a nexthop object: the kernel dumps that route with gateway
    # attributes it then refuses on restore, so the rollback cannot be exact
    _sh("ip", "-n", lab.ns["r2"], "nexthop", "add", "id", "7", "via", "10.24.0.2", "dev", "r2-r4")
    _sh("ip", "-n", lab.ns["r2"], "route", "replace", "10.4.4.4/32", "nhid", "7")
    act = LinuxActuator(lab.binding())
    apply_plan(act, _split_plan("p"), _topology(), dry_run=False)
    audit: list[AuditRecord] = []
    with pytest.raises(RollbackError, match="r2 10.4.4.4/32: routes differ after restore"):
        rollback(act, "p", audit=audit.append)
    assert [(a.action, a.status) for a in audit] == [("rollback", "failed")]
    # the same through a failed apply: reported as a failed rollback, not "rolled back"
    _sh("ip", "-n", lab.ns["r2"], "route", "replace", "10.4.4.4/32", "nhid", "7")
    act = LinuxActuator(lab.binding(bad_gateway=True))
    with pytest.raises(RollbackError, match="rollback FAILED"):
        apply_plan(act, _split_plan("q"), _topology(), dry_run=False, audit=audit.append)
    assert [(a.action, a.status) for a in audit[1:]] == [
        ("apply", "failed"),
        ("rollback", "failed"),
    ]
