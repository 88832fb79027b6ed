"""Prometheus exposition of the living service, in one registry with the collector's.

Read at scrape time from the service (under its lock: between two steps) and the
collector's latest snapshot (``collect/metrics.py``, names ``shadowcast_collect_*``).
Names follow Prometheus practice: base units (seconds, bits per second, ratios 0..1),
counters end in ``_total``; labels are per link, horizon, level, class, stage, action,
severity or tunnel (bounded by the topology and the settings), never per flow or per OD pair.

====================================================  =========================================
``shadowcast_service_up``                             1 ready, 0 starting, -1 degraded
``shadowcast_service_steps_total``                    steps the loop ran
``shadowcast_service_stage_seconds_total{stage}``     time spent per stage
``shadowcast_rollup_records_total``                   flow records rolled up (mapped too)
``shadowcast_rollup_unmapped_records_total{reason}``  records not mapped onto the topology
``shadowcast_link_capacity_bits_per_second{link}``    link capacity
``shadowcast_link_utilisation_ratio{link}``           measured, the last step
``shadowcast_link_predicted_utilisation_ratio``       ``{link,horizon}`` the mean prediction
``shadowcast_link_predicted_upper_ratio``             ``{link,horizon,level}`` its upper bound
``shadowcast_link_exceed_probability``                ``{link,horizon}`` P(>= alert threshold)
``shadowcast_link_bound_factor``                      ``{horizon,level}`` the links' calibration
``shadowcast_link_runout_days{link}``                 days to the runout target (+Inf: none)
``shadowcast_alerts_firing{severity}``                alerts firing now
``shadowcast_alerts_total`` / ``_resolved_total``     raised / resolved since the start
``shadowcast_plan_decisions_total{action}``           applied, failed (rolled back), ...
``shadowcast_shadow_tunnels_active``                  shadow tunnels up
``shadowcast_shadow_probes_total``, ``_failures``     probe results / failed probes
``shadowcast_shadow_rtt_seconds{tunnel}``             latest round trip (and loss, abw)
``shadowcast_forecast_nmae{kind,model,horizon}``      normalised mean absolute error
``shadowcast_forecast_coverage_ratio``                ``{kind,model,horizon,level}``
====================================================  =========================================
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

from fastapi import Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from shadowcast.units import format_duration

Family = CounterMetricFamily | GaugeMetricFamily


class ServiceCollector(Collector):
    """The service's metrics (see the module docstring); ``state`` is an ``ApiState``."""

    def __init__(self, state: Any) -> None:
        self.state = state

    def collect(self) -> Iterator[Family]:
        svc = self.state.service
        if svc is None:
            yield GaugeMetricFamily("shadowcast_service_up", "1 ready, 0 starting, -1 degraded", 0)
            return
        from shadowcast.api import views

        links = views.links(self.state)
        with svc.lock:
            yield from self._service(svc)
        yield from self._links(links)

    def _service(self, svc: Any) -> Iterator[Family]:
        s = svc.s
        up = {"ready": 1, "starting": 0}.get(svc.status, -1)
        yield GaugeMetricFamily("shadowcast_service_up", "1 ready, 0 starting, -1 degraded", up)
        yield CounterMetricFamily("shadowcast_service_steps", "steps the loop ran", svc.steps)
        fam = CounterMetricFamily(
            "shadowcast_service_stage_seconds", "seconds spent per stage", labels=["stage"]
        )
        for stage, sec in sorted(svc.stage_seconds.items()):
            fam.add_metric([stage], sec)
        yield fam
        st = s.rollup.stats
        yield CounterMetricFamily("shadowcast_rollup_records", "flow records rolled up", st.records)
        yield CounterMetricFamily(
            "shadowcast_rollup_mapped_records", "records mapped onto a router pair",
            st.mapped_records,
        )  # fmt: skip
        fam = CounterMetricFamily(
            "shadowcast_rollup_unmapped_records", "records not mapped, by reason", labels=["reason"]
        )
        for reason, n in sorted(st.unmapped_records.items()):
            fam.add_metric([reason], n)
        yield fam
        yield CounterMetricFamily(
            "shadowcast_rollup_late_records", "records too late", st.late_records
        )
        firing = list(s.rule.firing.values())
        gauge = GaugeMetricFamily("shadowcast_alerts_firing", "alerts firing", labels=["severity"])
        for sev in ("warning", "critical"):
            gauge.add_metric([sev], sum(a.severity == sev for a in firing))
        yield gauge
        yield CounterMetricFamily("shadowcast_alerts", "alerts raised", len(svc.alerts))
        yield CounterMetricFamily(
            "shadowcast_alerts_resolved", "alerts resolved", len(svc.resolved)
        )
        fam = CounterMetricFamily(
            "shadowcast_plan_decisions", "plan decisions by action", labels=["action"]
        )
        for action, n in sorted(s.plan.counts.items()):
            fam.add_metric([action], n)
        yield fam
        yield GaugeMetricFamily(
            "shadowcast_forecast_ready", "1 once the models are fitted", int(s.forecast.ready)
        )
        yield from _accuracy(s.ledger.summary())
        bound = GaugeMetricFamily(
            "shadowcast_link_bound_factor",
            "factor on the link upper bounds' half-widths from their calibration (1: none)",
            labels=["horizon", "level"],
        )
        for (lag, lv), f in sorted(s.linkmap.factors().items()):
            bound.add_metric([format_duration(lag * s.linkmap.step_s), f"{lv:g}"], f)
        yield bound
        yield from _shadow(svc)

    def _links(self, data: dict[str, Any]) -> Iterator[Family]:
        cap = GaugeMetricFamily(
            "shadowcast_link_capacity_bits_per_second", "link capacity", labels=["link"]
        )
        util = GaugeMetricFamily(
            "shadowcast_link_utilisation_ratio", "measured utilisation, last step", labels=["link"]
        )
        pred = GaugeMetricFamily(
            "shadowcast_link_predicted_utilisation_ratio", "predicted utilisation (mean)",
            labels=["link", "horizon"],
        )  # fmt: skip
        upper = GaugeMetricFamily(
            "shadowcast_link_predicted_upper_ratio", "upper bound of the predicted utilisation",
            labels=["link", "horizon", "level"],
        )  # fmt: skip
        pex = GaugeMetricFamily(
            "shadowcast_link_exceed_probability", "P(utilisation >= the alert threshold)",
            labels=["link", "horizon"],
        )  # fmt: skip
        run = GaugeMetricFamily(
            "shadowcast_link_runout_days", "days until the runout target (+Inf: none)",
            labels=["link"],
        )  # fmt: skip
        for lk in data["links"]:
            name = lk["name"]
            cap.add_metric([name], lk["capacity_mbps"] * 1e6)
            if lk["util_now"] is not None:
                util.add_metric([name], lk["util_now"])
            for h, p in lk["predicted"].items():
                if p["util"] is not None:
                    pred.add_metric([name, h], p["util"])
                if p["p_exceed"] is not None:
                    pex.add_metric([name, h], p["p_exceed"])
                for lv, v in p["upper"].items():
                    if v is not None:
                        upper.add_metric([name, h, lv], v)
            ro = lk.get("runout")
            if ro is not None:
                run.add_metric([name], math.inf if ro["days"] is None else ro["days"])
        yield from (cap, util, pred, upper, pex, run)


def _accuracy(summary: list[dict[str, Any]]) -> Iterator[Family]:
    nmae = GaugeMetricFamily(
        "shadowcast_forecast_nmae", "normalised mean absolute error so far",
        labels=["kind", "model", "horizon"],
    )  # fmt: skip
    cov = GaugeMetricFamily(
        "shadowcast_forecast_coverage_ratio", "share of actuals inside the interval",
        labels=["kind", "model", "horizon", "level"],
    )  # fmt: skip
    for r in summary:
        key = [r["kind"], r["model"], r["horizon"]]
        if math.isfinite(r["nmae"]):
            nmae.add_metric(key, r["nmae"])
        for k, v in r.items():
            if k.startswith("coverage_") and math.isfinite(v):
                cov.add_metric([*key, k.removeprefix("coverage_")], v)
    yield nmae
    yield cov


def _shadow(svc: Any) -> Iterator[Family]:
    sh = svc.s.shadow
    if sh is None:
        return
    c = sh.counters()
    yield GaugeMetricFamily("shadowcast_shadow_tunnels_active", "tunnels up", c["tunnels_active"])
    yield CounterMetricFamily("shadowcast_shadow_probes", "probe results", c["probed"])
    yield CounterMetricFamily(
        "shadowcast_shadow_probe_failures", "probes that failed", c["probe_failures"]
    )
    live = {t.spec.name for t in sh.manager.tunnels.values()}
    rtt = GaugeMetricFamily("shadowcast_shadow_rtt_seconds", "latest RTT", labels=["tunnel"])
    loss = GaugeMetricFamily("shadowcast_shadow_loss_ratio", "latest loss", labels=["tunnel"])
    abw = GaugeMetricFamily(
        "shadowcast_shadow_available_bits_per_second", "latest available bandwidth",
        labels=["tunnel"],
    )  # fmt: skip
    for name, r in sorted(svc.probes.items()):
        if name not in live:
            continue
        for fam, v in ((rtt, r.metrics.rtt_ms / 1e3), (loss, r.metrics.loss),
                       (abw, r.abw_mbps * 1e6)):  # fmt: skip
            if math.isfinite(v):
                fam.add_metric([name], v)
    yield from (rtt, loss, abw)


def registry(state: Any) -> CollectorRegistry:
    """One registry: the service's metrics and, when there is one, the collector's."""
    from shadowcast.collect.metrics import CollectCollector

    reg = CollectorRegistry(auto_describe=False)
    reg.register(ServiceCollector(state))

    class _Collector(Collector):
        def collect(self) -> Iterator[Family]:
            if state.collector is not None:
                yield from CollectCollector(state.collector).collect()

    reg.register(_Collector())
    return reg


def metrics_route(request: Request) -> Response:
    """GET /metrics (a token too when ``api.metrics_auth``)."""
    state = request.app.state.api
    if state.settings.api.metrics_auth:
        tokens = request.app.state.tokens
        who = tokens.from_header(request.headers.get("authorization"))
        tokens.charge(who)
    reg = getattr(request.app.state, "registry", None)
    if reg is None:
        reg = request.app.state.registry = registry(state)
    return Response(generate_latest(reg), media_type=CONTENT_TYPE_LATEST)
