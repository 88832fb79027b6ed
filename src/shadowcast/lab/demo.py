"""``shadowcast lab demo``: the living service against real routers in namespaces.

The real-network sibling of ``replay/driver.py``: nothing here forecasts, plans or acts.
The lab is the network, the wall clock is the clock, and the service built by
``service/wiring.py`` (through ``service/run.py``'s ``Runner``, as ``shadowcast run``)
does the rest. In order:

1. the backbone of ``lab/scenario.py`` in namespaces (``lab/build.py``), a management
   namespace for the collector with a veth to each router (``lab/noc.py``), a STAMP
   reflector in every edge host, softflowd on every router's edge port;
2. the service, with the Linux actuator bound to the lab, the Linux VXLAN tunnel backend
   with the edge hosts as VTEPs and real probes (``shadow/probes.py``), its collector
   listening in the management namespace;
3. iperf3 traffic on the scenario's schedule, while the kernel's counters are sampled
   every step and the service's steps are logged (``lab/record.py``);
4. once the service has applied a plan, a plan the checker refuses and a plan the actuator
   cannot apply are injected through its plan stage (``lab/faults.py``);
5. then everything stops, every process started here is ended, the lab is removed (unless
   ``keep_lab``) and the report is read from the store and the counters (``lab/report.py``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from shadowcast.act.base import Audit
from shadowcast.act.linux import LinuxActuator
from shadowcast.errors import ShadowcastError
from shadowcast.lab import build, faults, netns, noc, scenario
from shadowcast.lab.record import KernelSampler, StepLog
from shadowcast.lab.traffic import Processes, TrafficRunner, have_iperf3, reflector
from shadowcast.plan.cycle import Decision, decisions_table
from shadowcast.service.loop import StepReport
from shadowcast.service.wiring import apply_through
from shadowcast.settings import Settings
from shadowcast.shadow.linux import LinuxVxlanBackend
from shadowcast.shadow.probes import RealProbes
from shadowcast.shadow.tunnels import TunnelManager

log = logging.getLogger(__name__)
THIN = "A->B"
WATCH = ("A->B", "A->C", "C->B")


@dataclass(frozen=True, slots=True)
class DemoOptions:
    work: Path
    prefix: str = scenario.DEMO_PREFIX
    seconds: float = 150.0  # of traffic
    step_s: int = 5
    stair_s: float = 10.0
    keep_lab: bool = False  # leave the namespaces up (tests read the kernel afterwards)
    inject_faults: bool = True


def check_ready() -> None:
    """Root, iproute2, softflowd and iperf3, or one clear error (exit 2)."""
    ok, why = netns.have_root()
    if not ok:
        raise ShadowcastError(f"lab demo: {why} (network namespaces, tc, softflowd)")
    for tool, have in (("softflowd", noc.have_softflowd()), ("iperf3", have_iperf3())):
        if not have:
            raise ShadowcastError(f"lab demo: {tool} is not installed (apt-get install {tool})")


@dataclass
class DemoRun:
    """Everything the report is made of (``lab/report.py`` reads it)."""

    options: DemoOptions
    settings: Settings
    plan: build.LabPlan
    settings_file: Path
    traffic_t0: float = 0.0
    ended_at: float = 0.0
    steps: StepLog = field(default_factory=lambda: StepLog([], WATCH))
    kernel: dict[int, dict[str, float]] = field(default_factory=dict)
    applied_at: float | None = None  # wall clock when the first plan was applied
    applied: dict[str, Any] | None = None
    faults: list[faults.FaultResult] = field(default_factory=list)
    routes_after: dict[str, str] = field(default_factory=dict)
    health: dict[str, Any] = field(default_factory=dict)
    traffic_failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # the demo's own, never the service's


class LabDemo:
    """One run of the demo (see the module docstring); ``stop_event`` ends it early."""

    def __init__(self, base: Settings, options: DemoOptions) -> None:
        self.base = base
        self.opts = options
        self.stop_event = threading.Event()
        self.runner: Any = None
        self._fault_due = options.inject_faults

    def prepare(self) -> DemoRun:
        """Plan the lab and write the service's files (topology, sites, rules, settings)."""
        from shadowcast.datasets.topology import write_node_link

        o = self.opts
        topo = scenario.demo_topology()
        plan = build.plan_lab(topo, scale=1.0, prefix=o.prefix)
        self.noc = noc.plan_noc(plan)
        o.work.mkdir(parents=True, exist_ok=True)
        topo_file = write_node_link(topo, o.work / "topology.json")
        sites = o.work / "sites.yaml"
        sites.write_text(yaml.safe_dump(scenario.sites_doc(plan, self.noc)))
        rules = o.work / "rules.yaml"
        rules.write_text(yaml.safe_dump(scenario.rules_doc(), sort_keys=False))
        doc = scenario.settings_doc(o.work, topo_file, sites, rules, step_s=o.step_s)
        merged = scenario.merge(self.base.model_dump(mode="json"), doc)
        merged["store"] = doc["store"]  # a store of its own (and the defaults' retention
        # names tables that StoreConfig's validator does not know: not re-validated here)
        settings = Settings.model_validate(merged)
        settings_file = o.work / "shadowcast.yaml"
        settings_file.write_text(yaml.safe_dump(json.loads(settings.model_dump_json())))
        return DemoRun(o, settings, plan, settings_file)

    def run(self) -> DemoRun:
        check_ready()
        run = self.prepare()
        plan, o = run.plan, self.opts
        build.down(o.prefix)  # what a crashed run left
        procs = Processes()
        sampler = KernelSampler(plan, o.step_s)
        traffic = TrafficRunner(plan, scenario.demo_schedule(o.seconds, stair_s=o.stair_s),
                                scenario.TOS)  # fmt: skip
        probes: list[RealProbes] = []
        managers: list[TunnelManager] = []
        try:
            build.up(plan)
            noc.noc_up(plan, self.noc)
            stamp = run.settings.shadow.stamp
            for r in plan.edges:
                procs.procs.append(reflector(plan, r, "0.0.0.0", stamp.port, stamp=stamp))
                procs.procs.append(noc.softflowd(plan, self.noc, r, o.work / "exporters"))
            self.actuator = LinuxActuator(scenario.lab_binding(plan))
            netns_of: dict[str, str | None] = {r: e.ns for r, e in plan.edges.items()}

            def make_probes(m: TunnelManager) -> RealProbes:
                managers.append(m)
                probes.append(RealProbes(m, netns_of, plan.owner_of, stamp=stamp,
                                         abw=run.settings.shadow.abw))  # fmt: skip
                return probes[-1]

            from shadowcast.service.run import Runner

            self.runner = Runner(
                run.settings,
                duration_s=o.seconds + 3 * o.step_s + run.settings.rollup.lateness_s,
                environment={
                    "actuator": self.actuator,
                    "tunnel_backend": LinuxVxlanBackend(netns_of),
                    "vteps": {r: e.addr_host for r, e in plan.edges.items()},
                    "probes": make_probes,
                    "on_step": lambda rep: self._on_step(run, rep),
                },
                collector_netns=self.noc.ns,
            )
            self.runner.stop_event = self.stop_event
            run.steps = StepLog(self.runner.service.link_names, WATCH)
            self.runner.start()
            sampler.start()
            run.traffic_t0 = traffic.start()
            self.runner.loop()
        finally:
            run.ended_at = time.time()
            try:  # each step runs even when one before it failed
                traffic.stop()
                run.traffic_failed = list(traffic.failed)
                if self.runner is not None:
                    self.runner.shutdown()
                    run.health = self.runner.service.health()
            finally:
                try:
                    sampler.stop()
                    run.kernel = sampler.rates()
                    for p in probes:
                        p.close()
                    for m in managers:
                        m.close()
                finally:
                    procs.stop()
                    if not o.keep_lab:
                        build.down(o.prefix)
        return run

    # -- the loop thread, after every step of the service --------------------------------
    def _on_step(self, run: DemoRun, rep: StepReport) -> None:
        try:
            self._observe(run, rep)
        except ShadowcastError as exc:  # the demo's bookkeeping must not stop the service
            run.errors.append(f"step {rep.start_s}: {exc}")
            log.error("lab demo step failed", extra={"error": str(exc)})

    def _observe(self, run: DemoRun, rep: StepReport) -> None:
        run.steps.record(rep)
        d = rep.decision
        if d is not None and d.action == "applied" and run.applied is None:
            run.applied_at = time.time()
            run.applied = {"time_s": d.time_s, "plan_id": d.plan.plan_id if d.plan else "",
                           "reason": d.reason, "predicted_peak": d.predicted_peak}  # fmt: skip
            run.routes_after = faults.kernel_state(run.plan)
        elif self._fault_due and run.applied is not None and rep.start_s >= run.applied["time_s"]:
            self._fault_due = False
            self._inject(run, rep)

    def _audit(self) -> Audit:
        audit: Audit | None = self.runner.service.s.audit
        assert audit is not None  # the lab's service acts (auto mode)
        return audit

    def _inject(self, run: DemoRun, rep: StepReport) -> None:
        s = self.runner.service.s
        cycle, topo = s.plan, s.topology
        now = rep.start_s + self.runner.service.step_s
        peak = rep.decision.predicted_peak if rep.decision else 0.0
        broken = LinuxActuator(faults.broken_binding(self.actuator.binding, "B->C"))
        cases = (
            ("over-capacity", faults.over_capacity_plan(topo, s.classes, "A", "B"), None),
            ("broken-binding",
             faults.detour_plan(topo, s.classes, "A", "B", "C", min(rep.demand_mbps, 5.0)),
             broken),
        )  # fmt: skip
        for kind, bad, actuator in cases:
            before = faults.kernel_state(run.plan)
            real = cycle.apply_fn
            if actuator is not None:
                cycle.apply_fn = apply_through(actuator, topo, self._audit(),
                                               False, run.settings.act.max_changes)  # fmt: skip
            try:
                d = cycle.apply(now, bad, peak)
            finally:
                cycle.apply_fn = real
            diff = faults.differs(before, faults.kernel_state(run.plan))
            d = Decision(d.time_s, d.action, f"injected {kind}: {d.reason}", d.predicted_peak,
                         d.plan)  # fmt: skip
            s.writer.add("decisions", decisions_table([d], "injected"))
            run.faults.append(faults.FaultResult(kind, now, d.action, d.reason, not diff, diff))
            log.info("fault injected", extra={"kind": kind, "action": d.action, "differs": diff})
