"""The living service: the life of one step, every stage in turn, on one clock.

``tick(now_s)`` closes the steps the rollup has finished and, for each, in order:

1. **measure** - the step's demand per routing class and OD pair goes to the store
   (``od_series``) with its load on every link under the routing in force
   (``link_series``); the ledger scores every forecast whose target this step was;
2. **forecast** - each class's model sees the new row and predicts the plan horizon with
   intervals; the forecasts are mapped onto links (means add, bounds combine through the
   errors' correlation) and kept in the ledger;
3. **alert** - the capacity rule raises "link >= threshold within the window" (once per
   episode) and the notifiers deliver it;
4. **plan and act** - by mode (observe / advise / auto), with the decision and its
   reason kept;

then the shadow stage opens tunnels for the paths that appeared, closes idle ones and runs
a probe round when one is due. Output is buffered and flushed in one transaction; a
checkpoint flushes and saves the models so that a restart resumes where it stopped.

Everything that knows every stage lives in ``service/``: this module runs them, and
``service/wiring.py`` builds them from the settings.
"""

from __future__ import annotations

import json
import logging
import os
import pickle
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute
import scipy.sparse as sp

from shadowcast.act.base import Actuator, Audit
from shadowcast.alert.base import Notifier
from shadowcast.alert.policy import ProbabilityRule, exceedance
from shadowcast.alert.rules import CapacityRule
from shadowcast.alert.stage import deliver, dominant_class
from shadowcast.alert.tables import alerts_table
from shadowcast.alert.tuner import PolicyTuner
from shadowcast.errors import PlanError, StoreError
from shadowcast.feedback.actions import ActionJudge
from shadowcast.feedback.champion import Referee, model_events_table
from shadowcast.feedback.drift import DriftEvent
from shadowcast.feedback.ledger import Ledger, accuracy_table
from shadowcast.feedback.stage import FeedbackStage
from shadowcast.forecast.arena import ArenaCycle
from shadowcast.forecast.cycle import CycleForecast, ForecastCycle
from shadowcast.forecast.linkmap import LinkMapper, LinkPrediction, stack, stacked_routing
from shadowcast.forecast.tables import link_forecast_rows, od_forecast_table
from shadowcast.logs import fields
from shadowcast.network.state import RoutingState, shares_of_plan
from shadowcast.plan.base import Plan
from shadowcast.plan.cycle import Decision, PlanCycle, decisions_table
from shadowcast.plan.planner import split_matrix
from shadowcast.records import F64, Alert, Forecast, Topology
from shadowcast.rollup.rollup import Rollup, RollupBucket
from shadowcast.rollup.tables import link_rows, od_rows
from shadowcast.service.config import ServiceConfig
from shadowcast.service.intake import FlowIntake
from shadowcast.service.writer import StageWriter
from shadowcast.shadow.cycle import ShadowCycle, od_measurements
from shadowcast.shadow.results import ProbeResult
from shadowcast.shadow.results import to_table as shadow_table
from shadowcast.store.base import Store

log = logging.getLogger(__name__)
pc: Any = pyarrow.compute
STATE_FILE = "service-state.json"
FEEDBACK_FILE = "feedback-state.pkl"  # the ledger's pending forecasts, drift, recalibration


@dataclass
class Stages:
    """Every stage the loop runs, built by ``service/wiring.py``."""

    topology: Topology
    classes: tuple[str, ...]
    class_of: Mapping[str, str]
    store: Store
    writer: StageWriter
    rollup: Rollup
    rollup_lock: threading.Lock
    intake: FlowIntake
    routing: RoutingState
    forecast: ForecastCycle
    linkmap: LinkMapper
    ledger: Ledger
    rule: CapacityRule
    notifiers: Sequence[Notifier]
    plan: PlanCycle
    shadow: ShadowCycle | None
    horizons: Mapping[str, int]  # label -> steps ahead
    alert_level: float = 0.0  # 0: alert on the mean; 80/95: on that upper bound
    retention: Callable[[int], dict[str, int]] | None = None  # now (s) -> rows deleted
    feedback: FeedbackStage | None = None  # drift, recalibration, retrain on drift
    referee: Referee | None = None  # champion vs challengers (ArenaCycle)
    teams: Mapping[str, str] = field(default_factory=dict)  # link glob -> team (alert label)
    actuator: Actuator | None = None  # what plans are applied through (operator rollbacks too)
    audit: Audit | None = None  # the actuator's audit trail (the store's ``actions``)
    tuner: PolicyTuner | None = None  # sets the probability rule's p from outcomes
    actions: ActionJudge | None = None  # applied actions judged by their effect


@dataclass
class StepReport:
    """What one step did (the replay's report and the service's health read these)."""

    start_s: int
    demand_mbps: float
    forecast: CycleForecast | None = None
    link: LinkPrediction | None = None
    alerts: list[Alert] = field(default_factory=list)
    decision: Decision | None = None
    drifts: list[DriftEvent] = field(default_factory=list)
    link_util: F64 | None = None  # measured utilisation of every link in this step
    resolved: list[Alert] = field(default_factory=list)
    stacked: Forecast | None = None  # the (class, OD) forecast as issued (recalibrated)


class Service:
    """Runs :class:`Stages` on a clock (see the module docstring)."""

    def __init__(
        self,
        stages: Stages,
        config: ServiceConfig,
        state_dir: Path,
        *,
        on_step: Callable[[StepReport], None] | None = None,
    ) -> None:
        self.s = stages
        self.config = config
        self.state_dir = Path(state_dir)
        self.on_step = on_step
        self.step_s = stages.rollup.step_s
        self.link_names = stages.topology.link_names()
        self.capacity = stages.topology.capacities / 1e6
        self.status = "starting"
        self.steps = 0
        self.alerts: deque[Alert] = deque(maxlen=1000)
        self.decisions: deque[Decision] = deque(maxlen=1000)
        self.last: StepReport | None = None
        self.last_checkpoint_s: int | None = None
        self.stage_seconds: dict[str, float] = {}
        self._routing_cache: tuple[int, sp.csr_matrix] | None = None
        self._routing_seen: tuple[int, sp.csr_matrix] | None = None  # at the last step's end
        self._horizon_steps = sorted(set(stages.horizons.values()))
        # held for a whole tick, an approval and a checkpoint: the API's threads read and
        # act between steps, never in the middle of one (see ``api/state.py``)
        self.lock = threading.RLock()
        self.resolved: deque[tuple[Alert, int]] = deque(maxlen=1000)  # (alert, cleared at)
        self.probes: dict[str, ProbeResult] = {}  # latest result per tunnel
        self.restored: dict[str, Any] = {}
        self.last_retention_s: int | None = None
        n_od = len(stages.rollup.od_pairs)
        self.od_index = {od: k for k, od in enumerate(stages.rollup.od_pairs)}
        self._probe_latest: dict[str, F64] = {
            k: np.full(n_od, np.nan) for k in ("abw_mbps", "rtt_ms", "loss", "jitter_ms")
        }
        self.retained: dict[str, int] = {}

    # -- the loop --------------------------------------------------------------------------

    def tick(self, now_s: int) -> int:
        """Run every step that is complete at ``now_s``; returns how many."""
        with self.lock:
            return self._tick(now_s)

    def _tick(self, now_s: int) -> int:
        with self.s.rollup_lock:
            buckets = self.s.rollup.close(now_s)
        for b in buckets:
            self._step(b)
        self._shadow(now_s)
        self._retain(now_s)
        every = self.config.seconds("checkpoint_every")
        if self.last_checkpoint_s is None:
            self.last_checkpoint_s = now_s
        elif now_s - self.last_checkpoint_s >= every:
            self.checkpoint(now_s)
        else:
            self._flush_if_due()
        if self.status == "starting" and self.s.forecast.ready:
            self.status = "ready"
        return len(buckets)

    def run_step(self, b: RollupBucket) -> StepReport:
        """One closed step handed in directly (an evaluation driving the service from a
        series instead of flows): every stage as in ``tick``; returns what it did."""
        with self.lock:
            self._step(b)
            assert self.last is not None
            return self.last

    def _step(self, b: RollupBucket) -> None:
        s = self.s
        t, end = b.start_s, b.start_s + b.step_s
        report = StepReport(t, float(b.total().sum()))
        with self._timed("measure"):
            values = b.by_class(s.class_of)
            for c in s.classes:
                values.setdefault(c, np.zeros(len(b.od_pairs)))
            stacked = np.concatenate([values[c] for c in s.classes])
            load = s.routing.loads({c: values[c] for c in s.classes})
            s.writer.add("od_series", od_rows(b))
            s.writer.add("link_series", link_rows(t, self.link_names, load, self.capacity))
            report.link_util = load / np.maximum(self.capacity, 1e-12)
            s.ledger.observe("od", t, stacked)
            s.ledger.observe("link", t, load)
            if s.actions is not None:
                s.actions.observe(t, load, s.routing.version)
            s.linkmap.observe(t, stacked, load)
        fb = s.feedback
        if fb is not None:
            with self._timed("feedback"):
                report.drifts = self._route_changes(fb, t, stacked, load)
                report.drifts += fb.observe("od", t, stacked) + fb.observe(
                    "link", t, load, tag=s.routing.version
                )
                self._on_drift(report.drifts)
        with self._timed("forecast"):
            s.forecast.observe(t, values, self._exog(load))
            if fb is not None and fb.retrain_due(end):
                if isinstance(s.forecast, ArenaCycle):
                    keep = fb.cfg.shadow_previous
                    s.forecast.refit(end, reason="drift", keep_previous=keep)
                else:
                    s.forecast.refit(end)
                log.info("forecast models refitted after a drift", extra={"at_s": end})
            fc = s.forecast.predict()
        peak = None  # the probability rule's signal issued at this step's end
        if fc is not None:
            with self._timed("links"):
                st = stack(fc.by_class, s.classes)
                if fb is not None:
                    st = fb.correct(end, st, fc.version)
                link = s.linkmap.map(end, st, self._stacked_routing(), self._bound_columns())
                if fb is not None:
                    fb.issued("od", end, st.mean)
                    fb.issued("link", end, link.mean[:, 0], tag=s.routing.version)
                report.forecast, report.link, report.stacked = fc, link, st
                s.ledger.issue("od", end, fc.model, st.mean, st.lower, st.upper, stacked)
                s.ledger.issue("link", end, fc.model, link.mean, {}, dict(link.upper), load)
                s.writer.add(
                    "forecasts",
                    link_forecast_rows(
                        end, self.step_s, self._horizon_steps, self.link_names,
                        link.mean, dict(link.upper), {}, fc.model,
                    ),
                )  # fmt: skip
            if isinstance(s.forecast, ArenaCycle) and s.forecast.shadow:
                with self._timed("challengers"):
                    for name, f in s.forecast.predict_shadow(s.forecast.horizon_steps).items():
                        s.ledger.issue("od", end, name, f.mean, f.lower, f.upper, stacked)
            with self._timed("alert"):
                util = link.util_upper(s.alert_level) if s.alert_level else link.util
                prob = None
                if isinstance(s.rule, ProbabilityRule):
                    prob = exceedance(link.mean, link.upper, link.capacity, s.rule.threshold)
                    peak = s.rule.peak(prob)
                new, cleared = deliver(
                    s.rule,
                    s.notifiers,
                    np.datetime64(end, "s"),
                    util,
                    teams=s.teams,
                    class_of_link=lambda i: dominant_class(s.routing, s.classes, fc.by_class, i),
                    probability=prob,
                    measured=report.link_util,
                )
                if new:
                    s.writer.add("alerts", alerts_table(new))
                    self.alerts.extend(new)
                self.resolved.extend((a, end) for a in cleared)
                report.alerts, report.resolved = new, cleared
            with self._timed("plan"):
                d = s.plan.decide(end, dict(fc.by_class), self.step_s)
                report.decision = d
                self._judge_action(end, d, report.stacked)
                self.decisions.append(d)
                s.writer.add("decisions", decisions_table([d], s.plan.mode))
        if s.tuner is not None and isinstance(s.rule, ProbabilityRule):
            self._tune(s.tuner, s.rule, report.link_util, peak, end)
        rows = s.ledger.take_rows()
        if rows:
            s.writer.add("accuracy", accuracy_table(rows))
        judged = s.actions.take_table() if s.actions is not None else None
        if judged is not None:
            s.writer.add("action_outcomes", judged)
        self._referee(rows, end)
        if fb is not None:
            summary = fb.summary_table(end)
            if summary is not None:
                s.writer.add("accuracy_groups", summary)
        self._routing_seen = (s.routing.version, self._stacked_routing())
        self.steps += 1
        self.last = report
        if self.on_step is not None:
            self.on_step(report)

    def _referee(self, rows: Sequence[dict[str, Any]], now_s: int) -> None:
        """Champion and challengers judged on the rows just scored; a promotion, and every
        model event, to the store."""
        fc = self.s.forecast
        if not isinstance(fc, ArenaCycle):
            return
        ref = self.s.referee
        if ref is not None and rows:
            ref.add(rows)
            verdict = ref.decide(fc.model_name)
            if verdict is not None and verdict.challenger in fc.shadow:
                fc.promote(verdict.challenger, now_s, verdict.reason, verdict.figures())
                ref.reset()
        events = fc.take_events()
        if events:
            self.s.writer.add("model_events", model_events_table(events))

    def _tune(
        self,
        tuner: PolicyTuner,
        rule: ProbabilityRule,
        measured: F64 | None,
        peak: F64 | None,
        now_s: int,
    ) -> None:
        """The alert policy's outcomes of this step; p per link class when a tuning is due
        (its curves and choices to the store's ``alert_tuning``)."""
        if measured is None:
            return
        with self._timed("alert"):
            tuner.step(measured, peak)
            chosen = tuner.maybe_tune(rule)
        if chosen is not None:
            self.s.writer.add("alert_tuning", tuner.table(now_s))
        if chosen:  # p per class, with the precision and recall the replay gave it
            at = {c: next((pt for pt in tuner.curves.get(c, ()) if pt.p == p), None)
                  for c, p in chosen.items()}  # fmt: skip
            pr = {c: None if pt is None else (pt.precision, pt.recall) for c, pt in at.items()}
            log.info("alert policy tuned", extra=fields({"p": chosen, "precision_recall": pr}))

    def _judge_action(self, now_s: int, d: Decision, st: Forecast | None) -> None:
        """An applied plan: the link loads now expected under its routing (the stacked
        forecast issued at ``now_s``), held until their targets are measured."""
        if self.s.actions is None or d.action != "applied" or st is None:
            return
        predicted = np.asarray(self._stacked_routing() @ st.mean, dtype=np.float64)
        plan_id = d.plan.plan_id if d.plan is not None else ""
        self.s.actions.applied(now_s, plan_id, predicted, self.s.routing.version)

    def _route_changes(
        self, fb: FeedbackStage, t: int, stacked: F64, load: F64
    ) -> list[DriftEvent]:
        """The routing changed since the last step ended (not by this service's own plan,
        applied within a step): the links whose load it moved, as events."""
        seen = self._routing_seen
        if seen is None or seen[0] == self.s.routing.version:
            return []
        return fb.route_change(t, np.asarray(seen[1] @ stacked, dtype=np.float64), load)

    def _on_drift(self, events: Sequence[DriftEvent]) -> None:
        """Drifts to the store and, as ``ForecastAccuracyDegraded`` alerts, the notifiers."""
        fb = self.s.feedback
        if fb is None:
            return
        table = fb.take_drift_table()
        if table is not None:
            self.s.writer.add("drift_events", table)
        if not events:
            return
        new = fb.alerts(events)
        for a in new:  # the log notifier, when configured, logs it as a warning
            log.info(a.message, extra={"alert": a.name, "subject": a.subject})
            for n in self.s.notifiers:
                n.send(a)

    def _shadow(self, now_s: int) -> None:
        sh = self.s.shadow
        events, apps = self.s.intake.take_inbox(events=sh is not None)
        if sh is None:
            return
        with self._timed("shadow"):
            if apps:
                sh.touch(apps)
            if events:
                sh.on_events(events)
            results = sh.cycle(float(now_s))
            if results:
                self.s.writer.add("shadow", shadow_table(results))
                n = len(self.od_index)
                for k, v in od_measurements(results, self.od_index, n).items():
                    seen = np.isfinite(v)
                    self._probe_latest[k][seen] = v[seen]
                live = {t.spec.name for t in sh.manager.tunnels.values()}
                self.probes = {k: v for k, v in self.probes.items() if k in live}
                self.probes.update((r.tunnel, r) for r in results)

    def _retain(self, now_s: int) -> None:
        """Retention on the service's clock (a replay's simulated time, or now)."""
        if self.s.retention is None:
            return
        if self.last_retention_s is None:
            self.last_retention_s = now_s
            return
        if now_s - self.last_retention_s < self.config.seconds("retention_every"):
            return
        self.last_retention_s = now_s
        try:
            self._flush_if_due()
            for table, n in self.s.retention(now_s).items():
                self.retained[table] = self.retained.get(table, 0) + n
        except StoreError as exc:
            log.error("retention failed", extra={"error": str(exc)})

    def _exog(self, load: F64) -> dict[str, F64]:
        """The forecasters' exogenous inputs for this step, per OD pair: the latest shadow-path
        measurements (NaN where no tunnel measured the pair) and, under the routing in force,
        the bottleneck capacity and headroom ``min_e (capacity_e [- load_e]) / R[e, k]``."""
        names = self.s.forecast.exog_names
        if not names:
            return {}
        out = {k: v.copy() for k, v in self._probe_latest.items() if k in names}
        if "capacity_mbps" in names or "headroom_mbps" in names:
            mats = [self.s.routing.matrix(c) for c in self.s.classes]
            R = (sum(mats[1:], mats[0]) / len(mats)).tocoo()
            n = len(self.od_index)
            for name, per_link in (
                ("capacity_mbps", self.capacity),
                ("headroom_mbps", np.clip(self.capacity - load, 0.0, None)),
            ):
                if name in names:
                    res = np.full(n, np.inf)
                    ok = R.data > 0
                    np.minimum.at(res, R.col[ok], per_link[R.row[ok]] / R.data[ok])
                    out[name] = np.where(np.isfinite(res), res, np.nan)
        return out

    def _bound_columns(self) -> list[int]:
        """Steps ahead whose link bounds someone reads: the ledger's horizons, and every
        step of the alert window when alerts are on an upper bound."""
        cols = set(self._horizon_steps)
        if self.s.alert_level or isinstance(self.s.rule, ProbabilityRule):
            cols.update(range(1, self.s.rule.within_steps + 1))
        return sorted(cols)

    def _stacked_routing(self) -> sp.csr_matrix:
        r = self.s.routing
        if self._routing_cache is None or self._routing_cache[0] != r.version:
            m = stacked_routing([r.matrix(c) for c in self.s.classes])
            self._routing_cache = (r.version, m)
        return self._routing_cache[1]

    def _timed(self, name: str) -> _Timer:
        return _Timer(self.stage_seconds, name)

    def _flush_if_due(self) -> None:
        try:
            self.s.writer.maybe_flush()
        except StoreError as exc:
            self.status = "degraded"
            log.error("store flush failed; output kept for the next try", extra={"error": str(exc)})
            return
        self._recovered()

    def _recovered(self) -> None:
        """Back from ``degraded`` once the stage writer has stored what it held."""
        if self.status == "degraded" and not self.s.writer.degraded:
            self.status = "ready" if self.s.forecast.ready else "starting"
            log.info("store writes caught up; service no longer degraded")

    # -- approval (advise mode) --------------------------------------------------------------

    def approve(self, plan: Plan) -> Decision:
        """Apply an operator-approved plan now (through the checker and actuator)."""
        with self.lock:
            now = self.last.start_s + self.step_s if self.last else 0
            peak = self.last.decision.predicted_peak if self.last and self.last.decision else 0.0
            d = self.s.plan.apply(now, plan, peak)
            self._judge_action(now, d, self.last.stacked if self.last else None)
            self.s.writer.add("decisions", decisions_table([d], "approved"))
            self.decisions.append(d)
            self.s.plan.counts[d.action] = self.s.plan.counts.get(d.action, 0) + 1
            return d

    # -- state -------------------------------------------------------------------------------

    def checkpoint(self, now_s: int | None = None) -> None:
        """Flush every buffered row, then save the models (the store is never behind them)."""
        with self.lock:
            self._checkpoint(now_s)

    def _checkpoint(self, now_s: int | None) -> None:
        t0 = time.perf_counter()
        try:
            self.s.writer.flush()
        except StoreError as exc:
            self.status = "degraded"
            log.error("checkpoint: store flush failed", extra={"error": str(exc)})
            return
        self._recovered()
        if self.s.forecast.ready:
            fc = self.s.forecast.predict()
            if fc is not None:  # the latest OD cycle, for `shadowcast plan --store`
                total = fc.total()
                names = [f"{a}->{b}" for a, b in fc.od_pairs]
                issued = np.datetime64(fc.issued_s, "s")
                try:
                    self.s.store.write(
                        "forecasts", od_forecast_table(issued, self.step_s, names, fc.model, total)
                    )
                except StoreError as exc:  # the store went away since the flush: next time
                    self.status = "degraded"
                    log.error("checkpoint: forecast write failed", extra={"error": str(exc)})
                    return
            if isinstance(self.s.forecast, ArenaCycle):
                self.s.forecast.apply_requested_rollback(self.state_dir / "models")
            self.s.forecast.save(self.state_dir / "models")
        self._save_feedback()
        state = {
            "saved_at": datetime.now(UTC).isoformat(),
            "now_s": now_s,
            "last_step_s": None if self.last is None else self.last.start_s,
            "steps": self.steps,
            "model_version": self.s.forecast.version,
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        (self.state_dir / STATE_FILE).write_text(json.dumps(state, indent=1))
        if now_s is not None:
            self.last_checkpoint_s = now_s
        log.info(
            "checkpoint", extra=fields({**state, "seconds": round(time.perf_counter() - t0, 3)})
        )

    def restore(self) -> dict[str, Any]:
        """Resume from the store and the saved models: the routing in force (the last applied
        plan), the next step to roll up, the history, and the models (loaded, then updated
        with the steps stored after they were saved)."""
        s = self.s
        out: dict[str, Any] = {"plan": None, "resume_at_s": None, "models_loaded": False}
        plan = self._last_applied_plan()
        if plan is not None:
            try:
                s.routing.install(shares_of_plan(plan.splits, s.routing.od_index))
                s.plan.current = split_matrix(plan, s.plan.paths, s.classes)
                out["plan"] = plan.plan_id
            except PlanError as exc:
                log.warning(
                    "the last applied plan no longer fits; IGP routing assumed",
                    extra={"error": str(exc)},
                )
        loaded = s.forecast.load(self.state_dir / "models")
        out["models_loaded"] = loaded
        out["feedback_loaded"] = self._load_feedback()
        rows = self._stored_steps(s.forecast.history.cap)
        if rows:
            s.forecast.catch_up(rows)
            last = rows[-1][0]
            with s.rollup_lock:
                s.rollup.resume_at(last + self.step_s)
            out["resume_at_s"] = last + self.step_s
            self.steps = len(rows)
        if isinstance(s.forecast, ArenaCycle) and s.forecast.ready:
            folder = self.state_dir / "models"
            if s.forecast.apply_requested_rollback(folder) is not None:
                s.forecast.save(folder)
        out["model_version"] = s.forecast.version
        self.restored = out
        log.info("service restored", extra=out)
        return out

    def _save_feedback(self) -> None:
        """The ledger and the feedback stage, pickled into the service's own state folder
        (like the models: keep it writable only by the service's user)."""
        st = {"ledger": self.s.ledger.state(), "link_bounds": self.s.linkmap.state()}
        if self.s.feedback is not None:
            st["feedback"] = self.s.feedback.state()
        if self.s.tuner is not None:
            st["alert_tuner"] = self.s.tuner.state()
        if self.s.actions is not None:
            st["actions"] = self.s.actions.state()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.state_dir / f".{FEEDBACK_FILE}.tmp"
        tmp.write_bytes(pickle.dumps(st, protocol=pickle.HIGHEST_PROTOCOL))
        os.replace(tmp, self.state_dir / FEEDBACK_FILE)

    def _load_feedback(self) -> bool:
        path = self.state_dir / FEEDBACK_FILE
        try:
            st = pickle.loads(path.read_bytes())
        except FileNotFoundError:
            return False
        except (OSError, pickle.UnpicklingError, EOFError, AttributeError, TypeError) as exc:
            log.warning("saved feedback state unreadable; afresh", extra={"error": str(exc)})
            return False
        ok = isinstance(st, dict) and self.s.ledger.load_state(st.get("ledger", {}))
        if ok and self.s.feedback is not None and "feedback" in st:
            ok = self.s.feedback.load_state(st["feedback"])
        tuner, rule = self.s.tuner, self.s.rule
        if ok and tuner is not None and "alert_tuner" in st and tuner.load_state(st["alert_tuner"]):
            if isinstance(rule, ProbabilityRule):
                rule.p.update(tuner.chosen)
        if ok and self.s.actions is not None and "actions" in st:
            self.s.actions.load_state(st["actions"])
        if ok and "link_bounds" in st:
            self.s.linkmap.load_state(st["link_bounds"])
        return bool(ok)

    def _last_applied_plan(self) -> Plan | None:
        try:
            tab = self.s.store.read("decisions", where={"action": "applied"})
        except StoreError:
            return None
        if tab.num_rows == 0:
            return None
        tab = tab.sort_by("time")
        text = str(tab.column("plan")[tab.num_rows - 1].as_py() or "")
        try:
            return Plan.from_dict(json.loads(text)) if text else None
        except (ValueError, PlanError):
            return None

    def _stored_steps(self, max_steps: int) -> list[tuple[int, dict[str, F64]]]:
        """Per-class demand of the last ``max_steps`` stored steps, oldest first."""
        s = self.s
        try:
            tab = s.store.read("od_series")
        except StoreError:
            return []
        if tab.num_rows == 0:
            return []
        tab = tab.filter(pc.not_equal(tab.column("app"), ""))
        if tab.num_rows == 0:
            return []
        t_ms = tab.column("time").cast(pa.int64()).to_numpy()
        t_s = t_ms // 1000
        steps = np.unique(t_s)[-max_steps:]
        keep = t_s >= steps[0]
        tab, t_s = tab.filter(pa.array(keep)), t_s[keep]
        od_index = {f"{a}->{b}": k for k, (a, b) in enumerate(s.rollup.od_pairs)}
        cls_index = {c: i for i, c in enumerate(s.classes)}
        keys = np.array(
            [
                od_index.get(f"{a}->{b}", -1)
                for a, b in zip(
                    tab.column("src").to_pylist(), tab.column("dst").to_pylist(), strict=True
                )
            ]
        )
        cls = np.array(
            [
                cls_index.get(s.class_of.get(str(a), str(a)), -1)
                for a in tab.column("app").to_pylist()
            ]
        )
        row = np.searchsorted(steps, t_s)
        vals = np.zeros((len(steps), len(s.classes), len(s.rollup.od_pairs)))
        ok = (keys >= 0) & (cls >= 0)
        np.add.at(vals, (row[ok], cls[ok], keys[ok]), tab.column("mbps").to_numpy()[ok])
        return [
            (int(steps[i]), {c: vals[i, j] for c, j in cls_index.items()})
            for i in range(len(steps))
        ]

    # -- health ------------------------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        s = self.s
        return {
            "status": self.status,
            "steps": self.steps,
            "last_step": None
            if self.last is None
            else datetime.fromtimestamp(self.last.start_s, UTC).isoformat(),
            "stages": {
                "intake": {"records": s.intake.stats.records, "failures": s.intake.stats.failures},
                "rollup": s.rollup.stats.as_dict(),
                "forecast": {
                    "ready": s.forecast.ready,
                    "model": s.forecast.model_name,
                    "version": s.forecast.version,
                },
                "plan": {"mode": s.plan.mode, "decisions": dict(s.plan.counts)},
                "alert": self._alert_health(),
                "feedback": None if s.feedback is None else s.feedback.counters(),
                "shadow": None if s.shadow is None else s.shadow.counters(),
                "store": {**s.writer.health(), "retained": dict(self.retained)},
            },
            "stage_seconds": {k: round(v, 3) for k, v in self.stage_seconds.items()},
            "restored": self.restored,
        }

    def _alert_health(self) -> dict[str, Any]:
        """The alert policy; the probability rule's p per class and the tuner's curves."""
        rule = self.s.rule
        if not isinstance(rule, ProbabilityRule):
            return {"policy": "threshold", "firing": len(rule.firing)}
        out: dict[str, Any] = {"policy": "probability", "firing": len(rule.firing)}
        out["p"] = {c: rule.p.get(c, rule.default_p) for c in rule.class_names}
        if self.s.tuner is not None:
            out["tuner"] = self.s.tuner.report()
        return out


class _Timer:
    def __init__(self, acc: dict[str, float], name: str) -> None:
        self.acc, self.name = acc, name

    def __enter__(self) -> None:
        self.t0 = time.perf_counter()

    def __exit__(self, *exc: object) -> None:
        self.acc[self.name] = self.acc.get(self.name, 0.0) + time.perf_counter() - self.t0
