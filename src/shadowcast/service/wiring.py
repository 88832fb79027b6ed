"""The one place that builds every stage: settings in, a runnable :class:`Service` out.

Production (``shadowcast run``) and replays (``shadowcast replay``) both come through
:func:`build_service`; what differs is passed in: the clock, the actuator (Linux, webhook,
dry-run, or the simulated network's), the probe backend and tunnel backend (real STAMP over
VXLAN, or the simulated network's), and the profiler's placement (a sites file, or the
replay's generated one). No stage knows who feeds it or whom it feeds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shadowcast.act.base import Actuator, Audit, AuditRecord, apply_plan, audit_table
from shadowcast.alert.base import Notifier
from shadowcast.alert.notifiers import build_notifiers
from shadowcast.alert.tuner import build_policy
from shadowcast.clock import Clock
from shadowcast.errors import ConfigError
from shadowcast.feedback.actions import ActionJudge
from shadowcast.feedback.champion import Referee
from shadowcast.feedback.ledger import Ledger
from shadowcast.feedback.stage import FeedbackStage
from shadowcast.forecast.arena import ArenaCycle
from shadowcast.forecast.chunked import ChunkedForecaster
from shadowcast.forecast.enrich import static_inputs
from shadowcast.forecast.linkmap import LinkMapper
from shadowcast.forecast.outlook import model_options
from shadowcast.forecast.registry import make_model
from shadowcast.network.state import RoutingState
from shadowcast.plan.base import Plan
from shadowcast.plan.cycle import ApplyFn, PlanCycle
from shadowcast.plan.paths import candidate_paths
from shadowcast.profile.events import PathEvents
from shadowcast.profile.identify import Profiler
from shadowcast.profile.series import SeriesBuilder
from shadowcast.profile.where import Locator, SitesFile
from shadowcast.records import LATENCY_SENSITIVITY, Topology
from shadowcast.rollup.rollup import Rollup, od_universe
from shadowcast.service.intake import FlowIntake
from shadowcast.service.loop import Service, Stages, StepReport
from shadowcast.service.writer import StageWriter
from shadowcast.shadow.base import TunnelBackend
from shadowcast.shadow.cycle import ProbeBackend, ShadowCycle
from shadowcast.shadow.events import PathResolver
from shadowcast.shadow.tunnels import TunnelManager, link_capacities
from shadowcast.store.base import Store
from shadowcast.units import horizon_steps, parse_duration


@dataclass
class Environment:
    """What the caller supplies besides the settings (production or a replay)."""

    topology: Topology
    store: Store
    clock: Clock
    state_dir: Path
    actuator: Actuator | None = None
    notifiers: Sequence[Notifier] | None = None  # default: the alert settings'
    sites: SitesFile | None = None  # default: profile.sites_file
    kinds: Sequence[str] | None = None  # traffic kinds (categories); default: the taxonomy
    class_of: Mapping[str, str] | None = None  # default: rollup.class_of, else sensitivity
    tunnel_backend: TunnelBackend | None = None  # None: no shadow tunnels
    vteps: Mapping[str, str] | None = None  # router -> VTEP underlay address
    probes: Callable[[TunnelManager], ProbeBackend] | None = None
    mode: str | None = None  # overrides service.mode
    model: str | None = None  # overrides forecast.model
    lateness_s: int | None = None  # overrides rollup.lateness
    on_step: Callable[[StepReport], None] | None = None


def routing_classes(
    settings: Any, kinds: Sequence[str], override: Mapping[str, str] | None
) -> dict[str, str]:
    """Kind (category) -> routing class: the override, else ``rollup.class_of``, else the
    taxonomy's latency sensitivity (high / medium / low)."""
    taxonomy: Mapping[str, str] = settings.profile.taxonomy
    chosen = dict(settings.rollup.class_of)
    out = {}
    for k in kinds:
        if override is not None and k in override:
            out[k] = override[k]
        elif k in chosen:
            out[k] = chosen[k]
        else:
            out[k] = taxonomy.get(k, LATENCY_SENSITIVITY.get(k, "low"))
    return out


def limit_blas_threads() -> None:
    """One BLAS thread: the service's numpy work is many small matrices from several threads
    beside the collector's processes, where multi-threaded BLAS spins (measured under load:
    an SVD of 288 x 2106 took 9.9 s with 2 threads, 0.57 s with one)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


def apply_through(
    actuator: Actuator, topo: Topology, audit: Audit, dry_run: bool, max_changes: int
) -> ApplyFn:
    """The plan stage's apply step: checked, applied through ``actuator`` (rolled back on
    failure) and audited; True when the plan changed the network."""

    def apply(p: Plan, allow_overload: bool) -> bool:
        res = apply_plan(
            actuator, p, topo, dry_run=dry_run, max_changes=max_changes, audit=audit,
            allow_overload=allow_overload,
        )  # fmt: skip
        return not res.dry_run

    return apply


def build_service(settings: Any, env: Environment) -> Service:
    """Every stage, wired (see the module docstring)."""
    limit_blas_threads()
    cfg = settings.service
    topo = env.topology
    step = settings.rollup.step_s
    kinds = tuple(env.kinds) if env.kinds is not None else tuple(settings.profile.taxonomy)
    class_of = routing_classes(settings, kinds, env.class_of)
    classes = tuple(sorted(set(class_of.values())))
    od_pairs = od_universe(topo)
    store = env.store
    writer = StageWriter(
        store,
        flush_s=cfg.flush_s,
        buffer_bytes=cfg.store_buffer_bytes,
        spill_dir=cfg.spill_dir or env.state_dir / "spool",
        spill_max_bytes=cfg.spill_max_bytes,
        retry_max_s=cfg.seconds("retry_max"),
    )

    # measure: flows -> profile -> rollup
    rollup = Rollup(
        topo,
        kinds,
        step,
        lateness_s=settings.rollup.lateness_s if env.lateness_s is None else env.lateness_s,
        edge_to_node=settings.rollup.edge_to_node,
        max_open=settings.rollup.max_open_buckets,
    )
    pcfg = settings.profile
    locator = (
        Locator(env.sites, pcfg.geoip_db)
        if env.sites is not None
        else Locator.from_files(pcfg.sites_file, pcfg.geoip_db)
    )
    profiler = Profiler(pcfg, locator=locator)
    builder = SeriesBuilder(
        pcfg.peak_s, pcfg.renormalise, pcfg.error_z, pcfg.sketch_alpha, pcfg.max_spread_s
    )
    rollup_lock = threading.Lock()
    intake = FlowIntake(
        profiler,
        builder,
        [t.grain_s for t in pcfg.tiers.values()],
        rollup,
        rollup_lock,
        writer,
        PathEvents(pcfg.event_idle_s, pcfg.event_rate_per_min),
    )

    # forecast
    fcfg = settings.forecast
    model_name = env.model or fcfg.model
    horizons = {h: horizon_steps(h, step) for h in fcfg.horizons}
    within = max(1, settings.alert.within_s // step)
    plan_h = max(1, parse_duration(cfg.plan_horizon) // step)
    h_max = max([*horizons.values(), within, plan_h])
    opts = model_options(fcfg, step)
    fbcfg = settings.feedback
    for name in fbcfg.challengers:  # unknown names fail here, naming the setting
        try:
            make_model(name, **opts)
        except ConfigError as exc:
            msg = str(exc).replace("forecast.model: ", "")
            raise ConfigError(f"feedback.challengers: {msg}") from None

    # Many series, or a Dask scheduler: one model per chunk of series, fitted on the
    # scheduler's workers when there is one (forecast/chunked.py); else one model.
    n_series = len(classes) * len(od_pairs)
    chunked = fcfg.dask_scheduler is not None or n_series > fcfg.chunk_series

    def factory(name: str) -> Callable[[], Any]:
        if chunked:
            return lambda: ChunkedForecaster(
                name, opts, chunk_series=fcfg.chunk_series, scheduler=fcfg.dask_scheduler
            )
        return lambda: make_model(name, **opts)

    keys = tuple(f"{a}->{b}" for a, b in od_pairs)
    regions = {name: site.region for name, site in locator.spec.sites.items()}
    forecast = ArenaCycle(
        factory(model_name),
        model_name,
        classes,
        od_pairs,
        step,
        horizon_steps=h_max,
        levels=fcfg.levels,
        warmup_s=cfg.seconds("warmup"),
        retrain_every_s=cfg.seconds("retrain_every"),
        keep_s=cfg.seconds("keep"),
        meta=static_inputs(keys, topology=topo, regions=regions),
        exog=list(fcfg.exog),
        challengers={n: factory(n) for n in fbcfg.challengers},
    )
    referee = (
        Referee(max(1, parse_duration(str(fbcfg.promote_window)) // step), fbcfg.promote_margin)
        if fbcfg.challengers or fbcfg.shadow_previous
        else None
    )
    day = max(2, 86400 // step)
    linkmap = LinkMapper(
        topo.capacities / 1e6,
        classes,
        list(horizons.values()),
        step,
        window_steps=day,
        calibrate_rate=fcfg.link_calibration_rate,
    )
    feedback = FeedbackStage(
        settings.feedback, classes, od_pairs, topo.link_names(), h_max, fcfg.levels, step
    )
    ledger = Ledger(horizons, step, accuracy=feedback.accuracy)

    # alert
    acfg = settings.alert
    rule, tuner = build_policy(acfg, topo.link_names(), topo.capacities / 1e6, within, step)
    notifiers = list(env.notifiers) if env.notifiers is not None else build_notifiers(acfg)

    # plan and act
    routing = RoutingState(topo, od_pairs, settings.replay.routing_weight)
    pl = settings.plan
    paths = candidate_paths(topo, od_pairs, pl.k_paths, disjoint=pl.disjoint, weight=pl.path_weight)
    mode = env.mode or cfg.mode
    actuator = env.actuator
    if mode in ("auto", "advise") and actuator is None:  # advise: what approvals apply through
        from shadowcast.act.config import make_actuator

        actuator = make_actuator(settings.act)
    if mode == "auto" and settings.act.dry_run and env.actuator is None:
        raise ConfigError(
            "service.mode: auto with act.dry_run: true would change nothing; set "
            "act.dry_run: false to let the service act, or use mode advise"
        )

    def audit(rec: AuditRecord) -> None:
        writer.add("actions", audit_table([rec]))

    dry_run = False if env.actuator is not None else settings.act.dry_run

    plan = PlanCycle(
        topo,
        paths,
        classes,
        pl,
        routing,
        mode=mode,
        trigger=cfg.plan_trigger,
        min_interval_s=cfg.seconds("plan_min_interval"),
        apply=None
        if actuator is None
        else apply_through(actuator, topo, audit, dry_run, settings.act.max_changes),
    )

    # shadow
    shadow = None
    if env.tunnel_backend is not None and env.vteps:
        manager = TunnelManager(
            env.tunnel_backend,
            env.vteps,
            link_capacities(topo),
            settings.shadow.tunnels,
            clock=env.clock.time,
        )
        resolver = PathResolver(
            topo, pl.path_weight, dict(pcfg.taxonomy), settings.rollup.edge_to_node
        )
        shadow = ShadowCycle(
            resolver,
            manager,
            env.probes(manager) if env.probes is not None else None,
            interval_s=float(cfg.seconds("probe_interval")),
            per_round=cfg.probes_per_round,
        )

    def retention(now_s: int) -> dict[str, int]:
        from datetime import UTC, datetime

        from shadowcast.profile.storage import SeriesStore
        from shadowcast.store.config import apply_retention

        now = datetime.fromtimestamp(now_s, tz=UTC)
        tables = {k: v for k, v in settings.store.retention_days.items() if k != "behaviour"}
        deleted = apply_retention(
            store, settings.store.model_copy(update={"retention_days": tables}), now
        )
        tiers = SeriesStore(store, pcfg.tiers, builder).retain(now)
        deleted["behaviour"] = sum(tiers.values())
        return deleted

    stages = Stages(
        topology=topo,
        classes=classes,
        class_of=class_of,
        store=store,
        writer=writer,
        rollup=rollup,
        rollup_lock=rollup_lock,
        intake=intake,
        routing=routing,
        forecast=forecast,
        linkmap=linkmap,
        ledger=ledger,
        rule=rule,
        tuner=tuner,
        notifiers=notifiers,
        plan=plan,
        shadow=shadow,
        horizons=horizons,
        alert_level=acfg.quantile_level,
        retention=retention,
        feedback=feedback,
        referee=referee,
        teams=dict(acfg.teams),
        actuator=actuator,
        audit=audit,
        actions=ActionJudge(topo.link_names(), topo.capacities / 1e6, horizons, step),
    )
    return Service(stages, cfg, env.state_dir, on_step=env.on_step)
