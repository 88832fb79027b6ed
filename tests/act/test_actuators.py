"""Contract for every actuator, dry-run rendering, webhook against a real local server,
guardrails and the audit trail."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import yaml
from pydantic import ValidationError

from shadowcast.act.base import Actuator, AuditRecord, apply_plan, audit_table, rollback
from shadowcast.act.dryrun import DryRunActuator
from shadowcast.act.linux import LinuxActuator, LinuxBinding, Port
from shadowcast.act.webhook import WebhookActuator
from shadowcast.errors import ActuationError, PlanError
from shadowcast.plan.base import Plan
from shadowcast.plan.paths import candidate_paths
from shadowcast.plan.planner import ClassForecast, make_plan
from shadowcast.records import Forecast, Link, Topology
from shadowcast.store.schema import ACTION_SCHEMA


def _topo() -> Topology:
    links = []
    for a, b in [("A", "B"), ("A", "C"), ("C", "B")]:
        links += [Link(a, b, 10e6), Link(b, a, 10e6)]
    return Topology("t", ("A", "B", "C"), tuple(links))


@pytest.fixture
def plan() -> Plan:
    topo = _topo()
    ps = candidate_paths(topo, [("A", "B")], k=2)
    m = np.full((1, 3), 14.0)
    f = Forecast(mean=m, lower={90.0: m * 0.9}, upper={90.0: m * 1.1})
    return make_plan([ClassForecast("voip", f)], ps, topo)


class Hook(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []
    status = 200

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Hook.received.append(json.loads(body))
        self.send_response(Hook.status)
        self.end_headers()
        self.wfile.write(b'{"ok": true}')

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def server() -> Iterator[str]:
    Hook.received, Hook.status = [], 200
    srv = HTTPServer(("127.0.0.1", 0), Hook)
    th = threading.Thread(target=srv.serve_forever, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/plan"
    finally:
        srv.shutdown()
        srv.server_close()
        th.join(5)


def _binding() -> LinuxBinding:
    ports = {
        f"{a}->{b}": Port(f"ns{a}", f"{a}-{b}", f"10.0.0.{i}", 10.0)
        for i, (a, b) in enumerate(
            [("A", "B"), ("A", "C"), ("C", "B"), ("B", "A"), ("C", "A"), ("B", "C")]
        )
    }
    return LinuxBinding(ports, {"B": "10.9.9.0/24", "A": "10.8.8.0/24"}, {"voip": {"tos": "0xb8"}})


def actuators(url: str, tmp: Path) -> list[Actuator]:
    return [DryRunActuator("json", tmp), WebhookActuator(url), LinuxActuator(_binding())]


def test_contract_dry_run_changes_nothing_and_is_explained(
    plan: Plan, server: str, tmp_path: Path
) -> None:
    for act in actuators(server, tmp_path):
        res = act.apply(plan, dry_run=True)
        assert res.status == "dry-run" and res.dry_run and res.plan_id == plan.plan_id
        assert res.actions or res.rendered or res.detail
        assert act.rollback().status == "ok"


def test_dry_run_renders_json_and_yaml(plan: Plan, tmp_path: Path) -> None:
    res = DryRunActuator("json", tmp_path).apply(plan)
    assert Plan.from_dict(json.loads(res.rendered)) == plan
    assert (tmp_path / f"plan-{plan.plan_id}.txt").read_text().startswith("plan ")
    y = DryRunActuator("yaml").apply(plan).rendered
    assert yaml.safe_load(y)["plan_id"] == plan.plan_id
    with pytest.raises(ActuationError):
        DryRunActuator("xml")


def test_linux_dry_run_renders_routes_and_htb(plan: Plan) -> None:
    res = LinuxActuator(_binding()).apply(plan, dry_run=True)
    text = "\n".join(res.actions)
    assert "ip -n nsA route replace 10.9.9.0/24" in text
    assert "htb" in text and "match ip tos 0xb8 0xff" in text


def test_webhook_posts_and_rolls_back(plan: Plan, server: str) -> None:
    act = WebhookActuator(server)
    audit: list[AuditRecord] = []
    res = apply_plan(act, plan, _topo(), dry_run=False, audit=audit.append)
    assert res.status == "ok"
    assert Hook.received[-1]["action"] == "apply"
    assert Hook.received[-1]["plan"]["plan_id"] == plan.plan_id
    rollback(act, plan.plan_id, audit=audit.append)
    assert Hook.received[-1] == {"action": "rollback", "plan_id": plan.plan_id, "restore": None}
    assert [a.action for a in audit] == ["apply", "rollback"]
    Hook.status = 500
    with pytest.raises(ActuationError, match="500"):
        apply_plan(act, plan, _topo(), dry_run=False, audit=audit.append)
    assert [a.status for a in audit[-2:]] == ["failed", "rolled-back"]


def test_webhook_unreachable_is_an_actuation_error(plan: Plan) -> None:
    with pytest.raises(ActuationError, match="unreachable"):
        WebhookActuator("http://127.0.0.1:9/x", timeout_s=1).apply(plan, dry_run=False)


def test_checker_guards_every_actuator(plan: Plan, server: str, tmp_path: Path) -> None:
    bad = Plan.from_dict(
        {**plan.to_dict(), "splits": [{**s, "demand_mbps": 1e6} for s in plan.to_dict()["splits"]]}
    )
    for act in actuators(server, tmp_path):
        audit: list[AuditRecord] = []
        with pytest.raises(PlanError, match="over-subscribes"):
            apply_plan(act, bad, _topo(), dry_run=False, audit=audit.append)
        assert [a.status for a in audit] == ["rejected"]
    assert Hook.received == []  # nothing was sent
    with pytest.raises(PlanError, match="changes"):
        apply_plan(DryRunActuator(), plan, _topo(), max_changes=0)


def test_audit_table_matches_store_schema(plan: Plan) -> None:
    recs: list[AuditRecord] = []
    apply_plan(DryRunActuator(), plan, _topo(), audit=recs.append)
    t = audit_table(recs)
    assert t.schema.equals(ACTION_SCHEMA)
    row = t.to_pylist()[0]
    assert row["action"] == "dry-run" and row["status"] == "ok"
    assert isinstance(json.loads(row["detail"]), dict)
    assert isinstance(t, pa.Table)


def test_store_audit_writes_the_actions_table(plan: Plan, tmp_path: Path) -> None:
    from shadowcast.act.base import store_audit
    from shadowcast.store.duckdb import DuckDBStore

    store = DuckDBStore(tmp_path / "s.duckdb")
    try:
        audit = store_audit(store)
        apply_plan(DryRunActuator(), plan, _topo(), audit=audit)
        with pytest.raises(PlanError):
            apply_plan(DryRunActuator(), plan, _topo(), max_changes=0, audit=audit)
        rows = store.read("actions").to_pylist()
    finally:
        store.close()
    assert [(r["action"], r["status"]) for r in rows] == [("dry-run", "ok"), ("reject", "rejected")]
    assert all(r["plan_id"] == plan.plan_id for r in rows)


def test_config_registry(server: str) -> None:
    from shadowcast.act.config import ActConfig, make_actuator
    from shadowcast.errors import ConfigError

    assert make_actuator(ActConfig()).name == "dry-run"
    assert make_actuator(ActConfig(actuator="webhook", webhook_url=server)).name == "webhook"
    with pytest.raises(ConfigError, match="webhook_url"):
        make_actuator(ActConfig(actuator="webhook"))
    with pytest.raises(ConfigError, match="LinuxBinding"):
        make_actuator(ActConfig(actuator="linux"))
    with pytest.raises(ValidationError, match="actuator"):
        ActConfig(actuator="nope")  # type: ignore[arg-type]
