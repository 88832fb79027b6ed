"""The lab demo's scenario, management plan, binding, injected plans and report (pure: no
namespaces, no root)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import yaml

from netnames import lab_prefix
from shadowcast.act.linux import LinuxActuator
from shadowcast.errors import PlanError
from shadowcast.lab import build, faults, noc, scenario
from shadowcast.lab.report import _prediction, render, route_entry
from shadowcast.plan.base import check_plan
from shadowcast.profile.rules import RuleSet
from shadowcast.profile.where import Locator, SitesFile
from shadowcast.settings import Settings, load_settings


def addr(a: str, n: int) -> pa.Array:
    """``n`` copies of address ``a`` as the collector writes it (binary(16), v4-mapped)."""
    return pa.array([ipaddress.IPv6Address(f"::ffff:{a}").packed] * n, pa.binary(16))


@pytest.fixture
def plan() -> build.LabPlan:
    return build.plan_lab(scenario.demo_topology(), scale=1.0, prefix=scenario.DEMO_PREFIX)


def test_topology_has_one_thin_link_and_unique_shortest_paths(plan: build.LabPlan) -> None:
    topo = scenario.demo_topology()
    caps = dict(zip(topo.link_names(), topo.capacities / 1e6, strict=True))
    assert caps["A->B"] == caps["B->A"] == scenario.THIN_MBPS
    assert caps["A->C"] == caps["C->B"] == scenario.WIDE_MBPS
    assert plan.path("A", "B") == ["A", "B"] and plan.path("C", "B") == ["C", "B"]
    lk, _dev = plan.link_between("A", "B")
    assert lk.rate_ab_bps == scenario.THIN_MBPS * 1e6  # lab scale 1: the service sees it as is


def test_schedule_ramps_over_the_thin_link_with_one_client_per_port() -> None:
    flows = scenario.demo_schedule(150.0, stair_s=10.0, video_step_mbps=0.4)
    ab = [f for f in flows if (f.src, f.dst) == ("A", "B")]
    offered = [sum(f.mbps for f in ab if f.start_s <= t < f.start_s + f.seconds)
               for t in range(0, 150, 10)]  # fmt: skip
    assert offered == sorted(offered)  # never falls while the schedule runs
    assert offered[0] < 0.4 * scenario.THIN_MBPS < scenario.THIN_MBPS < offered[-1]
    ports = [(f.dst, f.port) for f in flows]
    assert len(ports) == len(set(ports))  # an iperf3 server serves one client at a time
    assert all(f.start_s + f.seconds <= 150.0 for f in flows)


def test_rules_name_each_class_by_port_and_the_probes_apart(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(scenario.rules_doc()))
    rules = RuleSet.load(path, dict(load_settings(None, environ={}).profile.taxonomy))
    ports = [5201, 5203, 5210, 5239, 4789, 862, 5240]
    flows = pa.table(
        {
            "src_addr": addr("10.64.0.2", 7),
            "dst_addr": addr("10.64.0.6", 7),
            "src_port": pa.array([40000] * 7, pa.uint16()),
            "dst_port": pa.array(ports, pa.uint16()),
            "proto": pa.array([17] * 7, pa.uint8()),
        }
    )
    hit = rules.match(flows, np.ones(7, dtype=bool))
    apps = [rules.rules[i].app if i >= 0 else "" for i in hit.rule]
    assert apps == ["iperf-bulk", "iperf-voip", "iperf-video", "iperf-video",
                    "shadowcast-probe", "shadowcast-probe", ""]  # fmt: skip


def test_sites_map_exporters_to_routers_and_edge_prefixes(plan: build.LabPlan) -> None:
    mgmt = noc.plan_noc(plan)
    spec = SitesFile.model_validate(scenario.sites_doc(plan, mgmt))
    loc = Locator(spec)
    a, b = plan.edges["A"].addr_host, plan.edges["B"].addr_host
    # one flow A-host -> B-host as each end's exporter saw it
    flows = pa.table(
        {
            "src_addr": addr(a, 2),
            "dst_addr": addr(b, 2),
            "exporter": pa.array([mgmt.exporter("A"), mgmt.exporter("B")]),
            "in_if": pa.array([0, 0], pa.uint32()),
            "out_if": pa.array([0, 0], pa.uint32()),
        }
    )
    where = loc.locate(flows)
    # ingress at A's exporter: demand A->B; B's copy enters and leaves at B: local
    assert where.ingress.to_pylist() == ["A", "B"]
    assert where.egress.to_pylist() == ["B", "B"]


def test_management_plan_stays_apart_from_the_lab(plan: build.LabPlan) -> None:
    mgmt = noc.plan_noc(plan)
    assert mgmt.ns == f"{plan.prefix}noc"
    addrs = [a for m in mgmt.links.values() for a in (m.addr_noc, m.addr_router)]
    assert len(set(addrs)) == len(addrs)
    for a in addrs:
        ip = ipaddress.ip_address(a)
        assert ip in noc.MGMT_NET
        assert ip not in build.LINK_NET and ip not in build.EDGE_NET
    assert all(len(m.dev_noc) <= 15 and len(m.dev_router) <= 15 for m in mgmt.links.values())
    assert {m.router for m in mgmt.links.values()} == set(plan.routers)


def test_settings_merge_over_the_defaults_and_validate(tmp_path: Path) -> None:
    base = load_settings(None, environ={})
    doc = scenario.settings_doc(tmp_path, tmp_path / "t.json", tmp_path / "s.yaml",
                                tmp_path / "r.yaml", step_s=5)  # fmt: skip
    merged = scenario.merge(base.model_dump(mode="json"), doc)
    merged["store"] = doc["store"]
    s = Settings.model_validate(merged)
    assert s.service.mode == "auto" and not s.act.dry_run and s.rollup.step_s == 5
    assert s.forecast.model == "theta" and s.plan.reserve == [] and s.plan.shape == []
    assert s.store.resolved_path() == str(tmp_path / "var" / "shadowcast.duckdb")
    assert s.alert.notifiers == base.alert.notifiers  # what the demo does not set is kept


def test_binding_routes_a_detour_through_c(plan: build.LabPlan) -> None:
    binding = scenario.lab_binding(plan)
    assert set(binding.ports) == {f"{u}->{v}" for u in "ABC" for v in "ABC" if u != v}
    lk, dev = plan.link_between("A", "C")
    port = binding.port("A", "C")
    assert (port.dev, port.netns) == (dev, plan.routers["A"])
    assert port.via == (lk.addr_b if lk.a == "A" else lk.addr_a)
    assert port.rate_mbit == scenario.WIDE_MBPS
    topo = scenario.demo_topology()
    detour = faults.detour_plan(topo, ["low", "medium"], "A", "B", "C", 4.0)
    check_plan(detour, topo)
    cmds = [" ".join(c) for c in LinuxActuator(binding).route_commands(detour)]
    pb = scenario.edge_prefix(plan, "B")
    assert f"ip -n {plan.routers['A']} route replace {pb} via {port.via} dev {dev}" in cmds
    # the broken binding fails on B's route, after A's was changed: a real rollback
    broken = faults.broken_binding(binding, "B->C")
    bad = [" ".join(c) for c in LinuxActuator(broken).route_commands(detour)]
    assert faults.BAD_GATEWAY in bad[-1] and plan.routers["B"] in bad[-1]
    assert any(plan.routers["A"] in c and pb in c for c in bad[:-1])
    assert sum(b != c for b, c in zip(bad, cmds, strict=True)) == 1


def test_the_over_capacity_plan_is_refused_by_the_checker() -> None:
    topo = scenario.demo_topology()
    plan = faults.over_capacity_plan(topo, ["high", "low", "medium"], "A", "B")
    with pytest.raises(PlanError, match="over-subscribes A->B"):
        check_plan(plan, topo, allow_overload=plan.mlu_planned < plan.mlu_current)


def test_route_entry_reads_multipath_routes_of_the_main_table() -> None:
    dump = (
        "unicast 10.64.0.0/30 dev h0r table main proto kernel scope link src 10.64.0.1 \n"
        "unicast 10.64.0.4/30 table main proto boot scope global \n"
        "\tnexthop via 10.128.0.2 dev l0a weight 17 \n"
        "\tnexthop via 10.128.0.6 dev l1a weight 83 \n"
        "unicast 10.64.0.4/30 via 10.1.1.1 dev x table 100 \n"
        "local 10.64.0.1 dev h0r table local proto kernel scope host src 10.64.0.1 \n"
    )
    got = route_entry(dump, "10.64.0.4/30")
    assert got.startswith("unicast 10.64.0.4/30 table main")
    assert "weight 17" in got and "weight 83" in got and "table 100" not in got
    assert route_entry(dump, "10.9.9.0/24") == ""


def test_report_prediction_and_text() -> None:
    timeline = [
        {"t": 0, "kernel_mbps": {"A->B": 2.0}, "service_ab_mbps": 2.0,
         "predicted_peak_thin": None, "action": ""},
        {"t": 5, "kernel_mbps": {"A->B": 4.2}, "service_ab_mbps": 4.4,
         "predicted_peak_thin": 0.94, "action": "applied"},
        {"t": 10, "kernel_mbps": {"A->B": 0.6, "A->C": 6.4}, "service_ab_mbps": 7.0,
         "predicted_peak_thin": 0.15, "action": "none"},
    ]  # fmt: skip
    p = _prediction(timeline, 0.9)
    first = {"t": 5, "predicted": 0.94, "measured_service": 0.733, "measured_kernel": 0.7}
    assert p["first_over_trigger"] == first
    assert p["first_demand_over_capacity_t"] == 10 and p["peak_thin_kernel"] == 0.7
    rep = {
        "lab": {"prefix": "scdemo-", "topology": "lab-triangle", "work_dir": "/w",
                "settings": "/w/s.yaml", "seconds": 10.0, "thin_link": "A->B", "thin_mbps": 6.0},
        "prediction": p, "applied": None, "moved": {}, "faults": [], "decisions": [],
        "alerts": [], "timeline": timeline, "traffic_failed": [],
        "shadow": {"tunnels_opened": 0, "probe_rows": 0, "tunnels_probed": [], "paths": [],
                   "rtt_ms_median": None, "counters": {}},
        "flows": {"records": 0, "mapped_records": 0, "unmapped_records": {},
                  "service_over_kernel": None},
    }  # fmt: skip
    text = "\n".join(render(rep))
    assert "first over the 90% trigger at t=5s (94%), measured then 73% (service)" in text
    assert "applied: no plan was applied" in text


def test_lab_demo_needs_root_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not root: one line naming what is missing, exit 2, nothing built."""
    import os

    from typer.testing import CliRunner

    from shadowcast.cli import app

    prefix = lab_prefix("n")
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    res = CliRunner().invoke(app, ["lab", "demo", "--prefix", prefix])
    assert res.exit_code == 2
    assert "needs root" in res.output and len(res.output.strip().splitlines()) == 1
    assert build.netns.list_netns(prefix) == []
