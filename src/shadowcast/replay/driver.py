"""A replay: a traffic source and a simulated clock driving the living service.

Nothing here forecasts, alerts or plans: the service built by ``service/wiring.py`` does,
as in production. Each step of the source:

1. the **baseline** network (no action, ECMP) and the **acting** network (whatever the
   service's actuator installed) carry the same offered traffic (``network/sim.py``);
2. the acting network's routers export what it carried as flow records: IPFIX over
   loopback UDP to the service's collector (or straight into its intake with
   ``--direct``), one exporter address per router;
3. once the service has taken in the step's records, the clock moves to the step's end
   and the service ticks: it rolls the step up, forecasts, alerts, plans and acts, and
   probes its shadow tunnels (on the acting network's loads).

The replay keeps what its report needs: both networks' utilisation, the service's link
predictions, its alerts. A checkpoint (with the service's) lets a stopped replay resume.
"""

from __future__ import annotations

import logging
import pickle
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from shadowcast.act.sim import SimActuator
from shadowcast.clock import SimClock
from shadowcast.errors import ShadowcastError
from shadowcast.network.sim import SimNetwork
from shadowcast.records import F64, Alert
from shadowcast.replay.export import StepExporter, as_collected, exporter_address, sites_for
from shadowcast.replay.source import AGGREGATE, TrafficSource
from shadowcast.service.loop import Service, StepReport
from shadowcast.service.wiring import Environment, build_service
from shadowcast.shadow.cycle import SimulatedProbes
from shadowcast.shadow.tunnels import SimulatedBackend
from shadowcast.store.base import Store

log = logging.getLogger(__name__)
CHECKPOINT = "replay-checkpoint.pkl"
STEP_TIMEOUT_S = 60.0


@dataclass
class FeedStats:
    records_sent: int = 0
    packets_sent: int = 0
    bytes_sent: int = 0
    records_processed: int = 0
    waits_timed_out: int = 0
    seconds: float = 0.0


@dataclass
class ReplayState:
    """Everything a resumed replay needs besides the store and the service's models."""

    next_t: int
    acting: SimNetwork
    baseline: SimNetwork
    util_acting: F64  # [T, L]
    util_baseline: F64
    pred_util: dict[int, F64]  # steps ahead -> [T, L] predicted at t - h for t
    pred_upper: dict[int, F64]
    alerts: list[Alert] = field(default_factory=list)
    decisions: dict[str, int] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)  # decisions that did something
    feed: FeedStats = field(default_factory=FeedStats)
    service_seconds: float = 0.0


@dataclass
class ReplayRun:
    source: TrafficSource
    state: ReplayState
    service: Service
    actuator: SimActuator
    interrupted: bool
    seconds: float
    ipfix: bool
    collector: dict[str, Any] | None = None


def replay_settings(settings: Any, source: TrafficSource) -> Any:
    """The settings a replay runs the service with: the source's step, no lateness (the
    replay waits for each step's records), the replay's model, horizons and levels, and
    the coarsest profile tier."""
    r = settings.replay
    rollup = settings.rollup.model_copy(update={"step": f"{source.step_s}s", "lateness_s": 0})
    # behaviour series: the coarsest tier only (hourly by default) — a replay's flows are
    # step-long aggregates, and a week of finer per-application series would outweigh the
    # rest of the store; `shadowcast run` keeps every configured tier
    coarse = max(settings.profile.tiers.items(), key=lambda kv: kv[1].grain_s)
    tiers = dict([coarse]) if coarse[1].grain_s >= source.step_s else {}
    taxonomy = dict(settings.profile.taxonomy)
    taxonomy.setdefault(AGGREGATE, "medium")  # matrices without applications: never shaped
    profile = settings.profile.model_copy(
        update={"tiers": tiers, "taxonomy": taxonomy, "use_model": False, "peak_s": 60}
    )
    forecast = settings.forecast.model_copy(
        update={"model": r.model, "horizons": list(r.horizons), "levels": list(r.levels)}
    )
    service = settings.service.model_copy(
        update={"warmup": r.warmup, "checkpoint_every": r.checkpoint_every}
    )
    return settings.model_copy(
        update={"rollup": rollup, "profile": profile, "forecast": forecast, "service": service}
    )


def _appmap_with_aggregate(profiler: Any) -> None:
    profiler.appmap.by_key[AGGREGATE] = AGGREGATE


def run_replay(
    settings: Any,
    source: TrafficSource,
    store: Store,
    state_dir: Path,
    *,
    ipfix: bool = True,
    mode: str = "auto",
    resume: bool = False,
    progress: Callable[[int], None] | None = None,
    stop: threading.Event | None = None,
    workers: int = 1,
    pace: Callable[[int], None] | None = None,
    on_service: Callable[[Service, Callable[[], Any] | None], None] | None = None,
) -> ReplayRun:
    """Replay ``source`` through a service built from ``settings`` (module docstring).

    ``pace(t_s)`` is called before each step is played (``shadowcast run --replay``
    sleeps there to play at a chosen speed); ``on_service(service, collector_snapshot)``
    once the service and its collector are up (the API attaches to them)."""
    t_start = time.perf_counter()
    rs = replay_settings(settings, source)
    topo, step = source.topology, source.step_s
    n_links = len(topo.links)
    kinds = source.kinds
    clock = SimClock(source.time_s(0))
    class_of = {AGGREGATE: "medium"} if AGGREGATE in kinds else None
    state = _load_checkpoint(state_dir) if resume else None
    if state is None:
        cls = {k: (class_of or {}).get(k, rs.profile.taxonomy.get(k, "low")) for k in kinds}
        acting = SimNetwork(topo, source.demands.od_pairs, kinds, step, class_of=cls)
        baseline = SimNetwork(topo, source.demands.od_pairs, kinds, step, class_of=cls)
        T = source.steps
        state = ReplayState(
            0,
            acting,
            baseline,
            np.full((T, n_links), np.nan),
            np.full((T, n_links), np.nan),
            {},
            {},
        )
    else:
        clock.set(source.time_s(max(0, state.next_t)))
    actuator = SimActuator(state.acting, clock.time)

    def on_step(rep: StepReport) -> None:
        if rep.link is None:
            return
        t = (rep.start_s - source.time_s(0)) // step
        util = rep.link.util
        top = max(rep.link.upper) if rep.link.upper else None
        for h in sorted(set(service.s.horizons.values())):
            if t + h < source.steps and h <= util.shape[1]:
                state.pred_util.setdefault(h, np.full((source.steps, n_links), np.nan))[t + h] = (
                    util[:, h - 1]
                )
                if top is not None:
                    up = rep.link.util_upper(top)
                    state.pred_upper.setdefault(h, np.full((source.steps, n_links), np.nan))[
                        t + h
                    ] = up[:, h - 1]
        state.alerts.extend(rep.alerts)
        d = rep.decision
        if d is not None and d.action != "none":
            first = d.reason.splitlines()
            state.actions.append(
                {
                    "time": str(np.datetime64(d.time_s, "s")),
                    "action": d.action,
                    "plan_id": d.plan.plan_id if d.plan else "",
                    "predicted_peak": round(d.predicted_peak, 4),
                    **d.detail(),
                    "summary": first[0] if first else "",
                    "reasons": [x.strip() for x in first[1:6]],
                }
            )

    last_loads: list[F64] = [np.zeros(n_links)]
    env = Environment(
        topology=topo,
        store=store,
        clock=clock,
        state_dir=state_dir,
        actuator=actuator,
        sites=sites_for(topo),
        kinds=kinds,
        class_of=class_of,
        tunnel_backend=SimulatedBackend(),
        vteps={n: f"192.0.2.{i % 250 + 1}" for i, n in enumerate(topo.nodes)},
        probes=lambda m: SimulatedProbes(topo, lambda: last_loads[0], m),
        mode=mode,
        on_step=on_step,
    )
    service = build_service(rs, env)
    _appmap_with_aggregate(service.s.intake.profiler)
    if resume:
        service.restore()
    exporter = StepExporter(topo, source.demands.od_pairs, step)
    intake = service.s.intake
    intake.start()
    lc = None
    interrupted = False
    try:
        if ipfix:
            from shadowcast.collect.loopback import LoopbackCollector

            lc = LoopbackCollector(
                store,
                workers=workers,
                records_per_s=2_000_000,
                low_latency=True,
                sinks=[intake.put],
            )
            lc.__enter__()
        if on_service is not None:
            on_service(service, lc.snapshot if lc is not None else None)
        feed = state.feed
        expected = 0  # records this run has handed over (the barrier; a resumed run restarts it)
        for t in range(state.next_t, source.steps):
            if stop is not None and stop.is_set():
                interrupted = True
                break
            t_s = source.time_s(t)
            if pace is not None:
                pace(t_s)
            offered = source.offered(t)
            base = state.baseline.step(t_s, offered)
            act = state.acting.step(t_s, offered)
            state.util_baseline[t] = base.utilisation
            state.util_acting[t] = act.utilisation
            last_loads[0] = act.load_mbps
            f0 = time.perf_counter()
            flows = exporter.flows(t_s, act.carried)
            feed.records_sent += flows.num_rows
            expected += flows.num_rows
            feed.bytes_sent += int(np.asarray(flows.column("bytes").to_numpy()).sum())
            if lc is not None:
                for router, packets, records in exporter.messages(flows):
                    lc.send(packets, records, source=exporter_address(router))
                    feed.packets_sent += len(packets)
            else:
                intake.put(as_collected(flows))
            if not intake.wait_processed(expected, STEP_TIMEOUT_S):
                feed.waits_timed_out += 1
                log.warning("step records did not all arrive in time", extra={"step": t})
            feed.seconds += time.perf_counter() - f0
            s0 = time.perf_counter()
            clock.set(t_s + step)
            before = service.last_checkpoint_s
            service.tick(t_s + step)
            state.service_seconds += time.perf_counter() - s0
            state.next_t = t + 1
            if service.last_checkpoint_s != before and service.last_checkpoint_s is not None:
                _save_checkpoint(state_dir, state)
            if progress is not None:
                progress(1)
        feed.records_processed = intake.stats.records
    finally:
        collector = None
        if lc is not None:
            lc.__exit__(None, None, None)
            snap = lc.snapshot()
            collector = {
                "protocol": "ipfix",
                "records_sent": state.feed.records_sent,
                "packets_sent": state.feed.packets_sent,
                "records_stored": snap.rows_stored,
                "decode_errors": sum(e.decode_errors for e in snap.exporters.values()),
                "socket_drops": sum(snap.socket_drops.values()),
                "exporters": len(snap.exporters),
                "failures": list(lc.server.failures),
            }
        intake.stop()
    if intake.stats.failures:
        n, why = intake.stats.failures, intake.stats.last_error
        raise ShadowcastError(f"the profile stage failed on {n} batch(es): {why}")
    service.checkpoint(clock.time_s())
    _save_checkpoint(state_dir, state)
    state.decisions = dict(service.s.plan.counts)
    return ReplayRun(
        source,
        state,
        service,
        actuator,
        interrupted,
        time.perf_counter() - t_start,
        ipfix,
        collector,
    )


def _save_checkpoint(folder: Path, state: ReplayState) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{CHECKPOINT}.tmp"
    tmp.write_bytes(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    tmp.replace(folder / CHECKPOINT)


def _load_checkpoint(folder: Path) -> ReplayState | None:
    path = folder / CHECKPOINT
    try:
        state = pickle.loads(path.read_bytes())
    except (OSError, pickle.UnpicklingError, EOFError):
        return None
    return state if isinstance(state, ReplayState) else None
