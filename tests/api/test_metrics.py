"""/metrics: one registry, Prometheus names, bounded labels."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from shadowcast.api.app import build_app
from shadowcast.api.state import ApiState


def test_metrics_names_units_and_labels(state: ApiState) -> None:
    text = TestClient(build_app(state, web=False)).get("/metrics").text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    names = (
        "shadowcast_link_predicted_utilisation_ratio",
        "shadowcast_link_exceed_probability",
        "shadowcast_link_runout_days",
        "shadowcast_alerts_firing",
        "shadowcast_shadow_tunnels_active",
        "shadowcast_forecast_nmae",
        "shadowcast_rollup_unmapped_records",
        "shadowcast_service_stage_seconds",
        "shadowcast_plan_decisions",
        "shadowcast_shadow_rtt_seconds",
        "shadowcast_link_bound_factor",
    )
    for name in names:
        assert name in fams, name
    assert fams["shadowcast_service_stage_seconds"].type == "counter"
    stages = {s.labels["stage"] for s in fams["shadowcast_service_stage_seconds"].samples}
    assert {"measure", "forecast", "alert", "plan"} <= stages
    svc = state.service
    assert svc is not None
    n_links, n_h = len(svc.link_names), len(svc.s.horizons)
    assert len(fams["shadowcast_link_predicted_utilisation_ratio"].samples) == n_links * n_h
    factors = {(s.labels["horizon"], s.labels["level"]): s.value
               for s in fams["shadowcast_link_bound_factor"].samples}  # fmt: skip
    assert set(factors) == {(h, lv) for h in svc.s.horizons for lv in ("80", "95")}, factors
    assert all(0.125 <= v <= 8.0 for v in factors.values()) and any(
        v != 1 for v in factors.values()
    )
    allowed = {"link", "horizon", "level", "stage", "reason", "action", "severity", "tunnel",
               "kind", "model", "exporter", "port", "worker"}  # fmt: skip
    for f in fams.values():
        for s in f.samples:
            assert set(s.labels) <= allowed, (f.name, s.labels)


def test_the_grafana_dashboard_uses_metrics_that_exist(state: ApiState) -> None:
    import json
    import re
    from pathlib import Path

    text = TestClient(build_app(state, web=False)).get("/metrics").text
    samples = {s.name for f in text_string_to_metric_families(text) for s in f.samples}
    board = json.loads(
        (Path(__file__).resolve().parents[2] / "docs" / "grafana-shadowcast.json").read_text()
    )
    used = {
        name
        for p in board["panels"]
        for t in p["targets"]
        for name in re.findall(r"shadowcast_[a-z_]+", t["expr"])
    }
    assert len(used) >= 12
    assert used - samples <= {
        "shadowcast_collect_records_total"
    }  # no collector in a replay fixture
