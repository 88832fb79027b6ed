"""``shadowcast eval feedback``: the feedback loop against the same models frozen.

A scenario (:mod:`shadowcast.feedback.scenarios`) is injected into the synthetic backbone
and its series drives the living service built by ``service/wiring.py`` step by step
(``Service.run_step``: measure, feedback, forecast, links, alert, plan in observe mode;
no flows are generated, each step's per-kind demand is handed over as a rollup bucket).
It runs twice on the same series and the same models:

* **adaptive**: the service's feedback as configured (drift tests, level adaptation and
  per-decile interval recalibration, retraining on drift) with challengers in shadow
  (``feedback.challengers``, default ``seasonal_naive``) and the previous champion kept in
  shadow after a retrain; the referee may promote;
* **frozen**: ``feedback.enabled: false``, no challengers, no scheduled or drift retrain:
  the models fitted at the end of the warm-up, updated online by their own ``update``.

Both are scored on the affected series (``Scenario.affected``) with the one-step-ahead
(5 min) forecast as issued (links: at the ledger's shortest horizon, where their bounds
are computed): per step, the share of affected series inside their 80 % interval (for
links, under the 80 % upper bound: nominally 90 %).
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from shadowcast.cli_support import emit_json, error_exit, out, settings_of
from shadowcast.errors import ConfigError, ShadowcastError
from shadowcast.feedback.drift import DriftEvent
from shadowcast.feedback.routes import ROUTE_CHANGE
from shadowcast.feedback.scenarios import SCENARIOS, Scenario, build_scenario
from shadowcast.records import F64
from shadowcast.units import parse_duration

LEVEL = 80.0
TOLERANCE = 0.03  # coverage back within 3 points
SMOOTH = 3  # steps of coverage averaged when judging recovery
HOUR = 12  # steps of an hour at 5 min (the worst hour after the change)


@dataclass
class Trace:
    """One run over a scenario: per step (index of the target step) what was scored."""

    steps: int
    coverage: F64 = field(default_factory=lambda: np.zeros(0))  # NaN: nothing issued
    abs_err: F64 = field(default_factory=lambda: np.zeros(0))
    abs_actual: F64 = field(default_factory=lambda: np.zeros(0))
    drift_steps: list[int] = field(default_factory=list)  # steps with a drift of the kind
    promotions: int = 0
    retrains: int = 0

    def __post_init__(self) -> None:
        self.coverage = np.full(self.steps, np.nan)
        self.abs_err = np.zeros(self.steps)
        self.abs_actual = np.zeros(self.steps)


def run_settings(settings: Any, scn: Scenario, adaptive: bool) -> Any:
    """The settings the service runs a scenario with (module docstring)."""
    from shadowcast.replay.source import AGGREGATE

    r = settings.replay
    rollup = settings.rollup.model_copy(
        update={"step": f"{scn.step_s}s", "lateness_s": 0, "class_of": dict(scn.class_of)}
    )
    forecast = settings.forecast.model_copy(
        update={"model": r.model, "horizons": list(r.horizons), "levels": list(r.levels)}
    )
    fb = settings.feedback
    # the warm-up (at least a day: a daily profile) ends half a day before the change
    before_s = int(scn.times_s[scn.onset] - scn.times_s[0])
    warmup = f"{min(parse_duration(str(r.warmup)), max(86400, before_s - 43200))}s"
    svc = settings.service.model_copy(update={"warmup": warmup})
    if adaptive:
        fb = fb.model_copy(
            update={"challengers": list(fb.challengers) or ["seasonal_naive"],
                    "shadow_previous": True}
        )  # fmt: skip
    else:
        fb = fb.model_copy(
            update={"enabled": False, "retrain_on_drift": False, "challengers": [],
                    "shadow_previous": False}
        )  # fmt: skip
        svc = svc.model_copy(update={"retrain_every": "3650d"})
    svc = svc.model_copy(update={"mode": "observe", "checkpoint_every": "3650d"})
    taxonomy = dict(settings.profile.taxonomy)
    taxonomy.setdefault(AGGREGATE, "medium")
    profile = settings.profile.model_copy(update={"tiers": {}, "taxonomy": taxonomy})
    return settings.model_copy(
        update={"rollup": rollup, "forecast": forecast, "feedback": fb, "service": svc,
                "profile": profile}
    )  # fmt: skip


def drive(settings: Any, scn: Scenario, adaptive: bool, workdir: Path) -> Trace:
    """Run the service over ``scn`` (adaptive or frozen) and keep what the score needs."""
    from shadowcast.clock import SimClock
    from shadowcast.replay.export import sites_for
    from shadowcast.rollup.rollup import RollupBucket
    from shadowcast.service.wiring import Environment, build_service
    from shadowcast.store.config import open_store

    rs = run_settings(settings, scn, adaptive)
    kinds = tuple(sorted(scn.by_kind))
    store = open_store(rs.store.at(workdir / "eval.duckdb"))
    trace = Trace(scn.steps)
    try:
        env = Environment(
            topology=scn.topology, store=store, clock=SimClock(int(scn.times_s[0])),
            state_dir=workdir / "state", sites=sites_for(scn.topology), kinds=kinds,
            class_of=dict(scn.class_of), mode="observe", notifiers=[],
        )  # fmt: skip
        service = build_service(rs, env)
        routing = service.s.routing
        mask = scn.affected
        # links have bounds only at the ledger's horizons: the shortest one for them
        ahead = 1 if scn.kind == "od" else min(service.s.horizons.values())
        pending: dict[int, tuple[F64, F64, F64 | None]] = {}  # step -> mean, upper, lower
        mbps = np.stack([scn.by_kind[k] for k in kinds], axis=1).astype(np.float64)
        for t in range(scn.steps):
            if t == scn.onset and scn.routing_after is not None:
                routing.base = scn.routing_after.tocsr()  # the IGP routes around the failure
                routing.reset()
            b = RollupBucket(int(scn.times_s[t]), scn.step_s, kinds, scn.od_pairs, mbps[t])
            rep = service.run_step(b)
            if scn.kind == "od":
                actual = scn.stacked(t)[mask]
            else:
                actual = routing.loads(b.by_class(scn.class_of))[mask]
            due = pending.pop(t, None)
            if due is not None:
                mean, upper, lower = due
                inside = actual <= upper + 1e-9
                if lower is not None:
                    inside &= actual >= lower - 1e-9
                trace.coverage[t] = float(inside.mean()) if inside.size else np.nan
                trace.abs_err[t] = float(np.abs(mean - actual).sum())
                trace.abs_actual[t] = float(np.abs(actual).sum())
            j = ahead - 1  # the column of the step ``t + ahead``
            if scn.kind == "od" and rep.stacked is not None and LEVEL in rep.stacked.upper:
                st = rep.stacked
                pending[t + ahead] = (st.mean[mask, j], st.upper[LEVEL][mask, j],
                                      st.lower[LEVEL][mask, j])  # fmt: skip
            elif scn.kind == "link" and rep.link is not None and LEVEL in rep.link.upper:
                lk = rep.link
                pending[t + ahead] = (lk.mean[mask, j], lk.upper[LEVEL][mask, j], None)
            if any(_kind(e) == scn.kind and mask[e.members].any() for e in rep.drifts):
                trace.drift_steps.append(t)
        service.s.writer.flush()
        names = service.s.store.read("model_events").column("event").to_pylist()
        trace.promotions = sum(1 for e in names if e == "promote")
        trace.retrains = sum(1 for e in names if e == "retrain")
    finally:
        store.close()
    return trace


def _kind(e: DriftEvent) -> str:
    """The kind of series an event is about: a routing change moves links."""
    return "link" if e.kind == ROUTE_CHANGE else e.kind


def _recover(cov: F64, onset: int, target: float) -> int | None:
    """Steps from the onset until the coverage (the mean of ``SMOOTH`` steps from there) is
    back within ``TOLERANCE`` of ``target``; None if it never is."""
    for s in range(onset, cov.size - SMOOTH + 1):
        window = cov[s : s + SMOOTH]
        if np.isfinite(window).all() and abs(float(window.mean()) - target) <= TOLERANCE:
            return s - onset
    return None


def _worst_hour(cov: F64) -> float | None:
    n = cov.size // HOUR * HOUR
    hours = cov[:n].reshape(-1, HOUR)
    hours = hours[np.isfinite(hours).all(axis=1)]
    return round(float(hours.mean(axis=1).min()), 4) if hours.size else None


def score(scn: Scenario, adaptive: Trace, frozen: Trace, day_steps: int) -> dict[str, Any]:
    """The figures of one scenario (see ``eval_feedback``'s help)."""
    o = scn.onset
    target = LEVEL / 100.0 if scn.kind == "od" else 0.5 + LEVEL / 200.0
    before = adaptive.coverage[max(0, o - day_steps) : o]
    after = adaptive.coverage[o : o + day_steps]
    detect = next((t - o for t in adaptive.drift_steps if t >= o), None)

    def nmae(tr: Trace) -> float:
        a = float(tr.abs_actual[o:].sum())
        return round(float(tr.abs_err[o:].sum()) / a, 4) if a else float("nan")

    def mean(x: F64) -> float | None:
        x = x[np.isfinite(x)]
        return round(float(x.mean()), 4) if x.size else None

    return {
        "scenario": scn.name,
        "description": scn.description,
        "kind": scn.kind,
        "series": int(scn.affected.sum()),
        "onset_step": o,
        "steps_to_detect": detect,
        "coverage_80_before": mean(before),
        "coverage_80_after": mean(after),
        "coverage_target": target,
        "steps_to_recover": _recover(adaptive.coverage, o, target),
        "nmae_adaptive": nmae(adaptive),
        "nmae_frozen": nmae(frozen),
        "promotions": adaptive.promotions,
        "retrains": adaptive.retrains,
        "coverage_80_after_frozen": mean(frozen.coverage[o : o + day_steps]),
        "coverage_80_worst_hour": _worst_hour(after),
    }


def run_scenario(settings: Any, name: str, days: float, seed: int) -> dict[str, Any]:
    """One scenario, adaptive against frozen, scored."""
    taxonomy = dict(settings.profile.taxonomy)
    onset_day = max(days - 1.0, 0.5)
    scn = build_scenario(name, days=days, onset_day=onset_day, seed=seed, taxonomy=taxonomy)
    with tempfile.TemporaryDirectory(prefix="shadowcast-feedback-") as tmp:
        adaptive = drive(settings, scn, True, Path(tmp) / "adaptive")
        frozen = drive(settings, scn, False, Path(tmp) / "frozen")
    return score(scn, adaptive, frozen, max(1, 86400 // scn.step_s))


def eval_feedback(
    ctx: typer.Context,
    scenario: Annotated[str, typer.Option(help=f"one of {', '.join(SCENARIOS)}, or all")] = "all",
    days: Annotated[
        float, typer.Option(help="series length; the change comes a day before its end")
    ] = 4.0,
    seed: Annotated[int, typer.Option(help="synthetic backbone seed")] = 0,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Inject a change into the synthetic backbone and run the service's feedback loop
    against the same models frozen (no recalibration, no retraining, no challengers).

    Scenarios: level-shift (video at one site +60 %), new-application (a kind that carried
    nothing appears at 15 % of every pair and grows to 60 % in a day), pattern-change (a
    weekday on the weekend profile), link-failure (the busiest link's two directions fail;
    the IGP routes around them), sampling-change (one site's exporter samples half as often,
    unnoticed). The change starts a day before the end of the series (10:00; the holiday at
    midnight). Scored on the series it touches, one step ahead (links: at the shortest
    ledger horizon): steps_to_detect (steps from the change to the first drift of a group
    holding them, or for links the first route-change event the service records when its
    routing in force changes), coverage_80_before / _after (share
    inside the 80 % interval over the day before / after; for links: under the 80 % upper
    bound, nominally 90 %), steps_to_recover (steps until that coverage, averaged over 3
    steps, is back within 3 points of nominal; coverage_80_worst_hour shows a later dip),
    nmae_adaptive / nmae_frozen (from the change on), promotions (challengers promoted in
    the adaptive run)."""
    try:
        settings = settings_of(ctx)
        names = list(SCENARIOS) if scenario.strip().lower() == "all" else [scenario.strip()]
        for n in names:
            if n not in SCENARIOS:
                raise ConfigError(f"--scenario: {n!r} is not one of {', '.join(SCENARIOS)}, all")
        if not 2.5 <= days <= 28:
            raise ConfigError(f"--days: {days} is not in [2.5, 28]")
        docs = [run_scenario(settings, n, days, seed) for n in names]
    except ShadowcastError as exc:
        raise error_exit(exc) from None
    if json_out:
        emit_json(docs[0] if len(docs) == 1 else {"scenarios": docs})
        return
    for d in docs:
        out.print(
            f"{d['scenario']}: drift after {d['steps_to_detect']} steps; coverage "
            f"{d['coverage_80_before']} -> {d['coverage_80_after']}, back after "
            f"{d['steps_to_recover']} steps; NMAE {d['nmae_adaptive']} adaptive vs "
            f"{d['nmae_frozen']} frozen; {d['promotions']} promotions"
        )
