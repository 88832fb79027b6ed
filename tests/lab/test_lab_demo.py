"""``shadowcast lab demo`` end to end: the living service against real routers in
namespaces, judged by the kernel's own counters and routes and by the service's store.

One run (about three minutes: 150 s of traffic) is shared by the tests of this module; the
lab is kept up for them to read, and removed at the end whatever happened. Root only, and
softflowd and iperf3 must be installed (``.ci/run`` installs them).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from netnames import lab_prefix
from shadowcast.lab import build, faults, netns
from shadowcast.lab.capture import device_bytes, qdisc_bytes
from shadowcast.lab.demo import DemoOptions, DemoRun, LabDemo
from shadowcast.lab.report import build_report, render
from shadowcast.lab.scenario import THIN_MBPS, edge_prefix
from shadowcast.settings import load_settings
from shadowcast.store.config import open_store

pytestmark = [pytest.mark.integration, pytest.mark.slow]
PREFIX = lab_prefix("m")


def _skip_reason() -> str | None:
    ok, why = netns.have_root()
    if not ok:
        return why
    for tool in ("softflowd", "iperf3"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (.ci/run installs it)"
    return None


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DemoRun, dict[str, Any]]]:
    why = _skip_reason()
    if why:
        pytest.skip(why)
    work = tmp_path_factory.mktemp("lab-demo")
    try:
        run = LabDemo(
            load_settings(None, environ={}), DemoOptions(work, PREFIX, keep_lab=True)
        ).run()
        store = open_store(run.settings.store)
        try:
            report = build_report(run, store)
        finally:
            store.close()
        (work / "report.json").write_text(json.dumps(report, indent=1, default=str))
        yield run, report
    finally:
        build.down(PREFIX)
        assert netns.list_netns(PREFIX) == []


def table(run: DemoRun, name: str) -> list[dict[str, Any]]:
    store = open_store(run.settings.store)
    try:
        return store.read(name).to_pylist()
    finally:
        store.close()


def test_the_service_moved_traffic_off_the_thin_link_before_it_saturated(
    demo: tuple[DemoRun, dict[str, Any]],
) -> None:
    run, rep = demo
    plan = run.plan
    assert rep["applied"] is not None, "\n".join(render(rep))
    # the kernel's routes: A reaches B's hosts through C now (alone or beside the direct link)
    lk_ac, dev_ac = plan.link_between("A", "C")
    via_c = lk_ac.addr_b if lk_ac.a == "A" else lk_ac.addr_a
    route = netns.ip(plan.routers["A"], "route", "show", edge_prefix(plan, "B"))
    assert f"via {via_c} dev {dev_ac}" in route, route
    # the kernel's counters: the A->C link carried the moved traffic (tbf and the device)
    sent = qdisc_bytes(plan.routers["A"], dev_ac)
    assert sent > 10e6
    assert device_bytes(plan.routers["A"])[dev_ac][1] >= 0.95 * sent
    moved = rep["moved"]
    assert moved["before_mbps"]["A->C"] < 0.5 and moved["after_mbps"]["A->C"] > 3.0
    assert moved["after_mbps"]["A->B"] < moved["before_mbps"]["A->B"]
    # the demand A->B went past the thin link's capacity; the thin link never ran full
    p = rep["prediction"]
    assert p["peak_demand_ab"] > 1.05 and p["peak_thin_kernel"] < 0.98
    # the forecast saw the ramp coming: over the trigger while the measurement was below it
    first = p["first_over_trigger"]
    assert first is not None and first["measured_service"] < p["trigger"] <= first["predicted"]


def test_the_decisions_table_records_the_applied_plan_with_its_reason(
    demo: tuple[DemoRun, dict[str, Any]],
) -> None:
    run, rep = demo
    applied = [r for r in table(run, "decisions") if r["action"] == "applied"]
    assert applied and applied[0]["mode"] == "auto"
    first = applied[0]
    assert first["plan_id"] == rep["applied"]["plan_id"]
    assert "A->B" in first["reason"] and "to the C path" in first["reason"]
    assert "A-B predicted" in first["reason"]
    assert first["predicted_peak"] >= run.settings.service.plan_trigger
    splits = json.loads(first["plan"])["splits"]
    assert any(s["src"] == "A" and s["dst"] == "B" and s["nodes"] == ["A", "C", "B"]
               for s in splits)  # fmt: skip
    audit = [r for r in table(run, "actions") if r["plan_id"] == first["plan_id"]]
    assert [(r["action"], r["status"]) for r in audit] == [("apply", "ok")]


def test_the_refused_and_the_failed_plan_left_the_routes_unchanged(
    demo: tuple[DemoRun, dict[str, Any]],
) -> None:
    run, rep = demo
    kinds = {f.kind: f for f in run.faults}
    assert set(kinds) == {"over-capacity", "broken-binding"}
    assert kinds["over-capacity"].action == "rejected"
    assert kinds["broken-binding"].action == "failed"
    assert all(f.routes_unchanged and not f.differs for f in run.faults)
    rows = {r["plan_id"]: r for r in table(run, "decisions") if r["mode"] == "injected"}
    reasons = sorted(r["reason"] for r in rows.values())
    assert any("checker: plan over-subscribes A->B" in r for r in reasons), reasons
    assert any("rolled back" in r and "state verified" in r for r in reasons), reasons
    audit = [(r["action"], r["status"]) for r in table(run, "actions") if r["plan_id"] in rows]
    assert ("reject", "rejected") in audit and ("rollback", "rolled-back") in audit
    # and now, at the end, every router's routes are still those the applied plan left
    later = [r for r in table(run, "decisions") if r["action"] == "applied"][1:]
    if not later:
        assert faults.kernel_state(run.plan) == run.routes_after


def test_the_shadow_table_has_probes_of_the_tunnels_the_service_opened(
    demo: tuple[DemoRun, dict[str, Any]],
) -> None:
    run, rep = demo
    rows = table(run, "shadow")
    sh = rep["shadow"]
    assert sh["tunnels_opened"] >= 1 and len(rows) >= 3
    tunnels = {r["tunnel"] for r in rows}
    assert len(tunnels) <= sh["tunnels_opened"]
    assert all(t.startswith("shv") for t in tunnels)
    assert "A>B" in {r["path"] for r in rows}
    assert any(r["rtt_ms"] == r["rtt_ms"] and r["loss"] < 1.0 for r in rows)  # measured


def test_every_flow_is_counted_once(demo: tuple[DemoRun, dict[str, Any]]) -> None:
    run, rep = demo
    fl = rep["flows"]
    unmapped = fl["unmapped_records"]
    assert unmapped["ingress_unmapped"] == 0 and unmapped["egress_unmapped"] == 0
    assert unmapped["local"] > 0  # the egress routers' copies: seen, not demand
    # the service's demand against what the kernel saw enter at the edge ports: once
    assert 0.85 < fl["service_over_kernel"] < 1.1
    assert rep["traffic_failed"] == [] and rep["errors"] == []


def test_the_report_reads_in_a_few_lines(demo: tuple[DemoRun, dict[str, Any]]) -> None:
    _run, rep = demo
    text = "\n".join(render(rep))
    assert f"thin link A->B {THIN_MBPS:g} Mbit/s" in text
    assert "applied at t=" in text and "route at A:" in text
    assert "fault over-capacity" in text and "fault broken-binding" in text
    assert text.count("routes unchanged") == 2
    assert Path(rep["lab"]["settings"]).is_file()
