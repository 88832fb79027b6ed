"""What the lab demo records beside the service: the kernel's own counters per step, and
what the service measured, predicted and decided each step (its ``on_step``).

The sampler reads every router's device counters (``ip -s -j link``) on the wall clock's
step boundaries, the same boundaries the service's rollup uses, so that step ``t`` of the
kernel (bytes each directed link sent, bytes each edge port received from its host) lines
up with step ``t`` of the service.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shadowcast.errors import ProbeError
from shadowcast.lab.build import LabPlan
from shadowcast.lab.capture import device_bytes
from shadowcast.service.loop import StepReport

log = logging.getLogger(__name__)


class KernelSampler:
    """Counters of every lab link's sending end and every edge port, each step."""

    def __init__(self, plan: LabPlan, step_s: int) -> None:
        self.plan = plan
        self.step_s = int(step_s)
        self.where: dict[str, tuple[str, str]] = {}  # name -> (namespace, device)
        for lk in plan.links:
            self.where[f"{lk.a}->{lk.b}"] = (plan.routers[lk.a], lk.dev_a)
            self.where[f"{lk.b}->{lk.a}"] = (plan.routers[lk.b], lk.dev_b)
        for r, e in plan.edges.items():
            self.where[f"edge:{r}"] = (plan.routers[r], e.dev_router)
        self.samples: list[tuple[int, float, dict[str, int]]] = []  # (boundary, when, bytes)
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> dict[str, int]:
        """Bytes sent by each link's end, and received by each edge port from its host."""
        per_ns = {ns: device_bytes(ns) for ns in sorted({ns for ns, _ in self.where.values()})}
        out = {}
        for name, (ns, dev) in self.where.items():
            rx, tx = per_ns[ns].get(dev, (0, 0))
            out[name] = rx if name.startswith("edge:") else tx
        return out

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="lab-counters", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while True:
            boundary = (int(time.time()) // self.step_s + 1) * self.step_s
            if self._stop.wait(max(0.0, boundary - time.time())):
                return
            try:
                self.samples.append((boundary, time.time(), self.sample()))
            except ProbeError as exc:
                self.failures += 1
                log.warning("kernel counters unreadable", extra={"error": str(exc)})

    def rates(self) -> dict[int, dict[str, float]]:
        """Mbit/s per counter for each step between two consecutive boundaries sampled."""
        out: dict[int, dict[str, float]] = {}
        for (b0, t0, c0), (b1, t1, c1) in zip(self.samples, self.samples[1:], strict=False):
            if b1 - b0 != self.step_s or t1 <= t0:
                continue
            out[b0] = {k: (c1[k] - c0[k]) * 8 / (t1 - t0) / 1e6 for k in c0 if k in c1}
        return out


@dataclass
class StepLog:
    """The service's steps as ``on_step`` reports them: demand, the predicted peak
    utilisation of the watched links (mean forecast, over the plan horizon), the decision."""

    link_names: list[str]
    watch: tuple[str, ...]
    rows: dict[int, dict[str, Any]] = field(default_factory=dict)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    def record(self, rep: StepReport) -> None:
        row: dict[str, Any] = {"demand_mbps": round(rep.demand_mbps, 3)}
        if rep.link is not None:
            util = rep.link.util
            for name in self.watch:
                e = self.link_names.index(name)
                row[f"predicted_peak:{name}"] = round(float(np.max(util[e])), 4)
        d = rep.decision
        if d is not None:
            row.update(action=d.action, reason=d.reason, predicted_peak=round(d.predicted_peak, 4))
            if d.plan is not None and d.action != "none":
                row["plan_id"] = d.plan.plan_id
        for a in rep.alerts:
            self.alerts.append({"time_s": rep.start_s, "link": a.subject, "lead_s": a.lead_s,
                                "message": a.message})  # fmt: skip
        self.rows[rep.start_s] = row
