"""CLI: ``shadowcast plan`` (the plan for "now", what-if) and ``shadowcast eval te``."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import Progress as RichProgress
from rich.table import Table

from shadowcast.cli_support import console, emit_json, error_exit, out, settings_of
from shadowcast.errors import ConfigError, PlanError, ShadowcastError
from shadowcast.plan.base import Plan, check_plan
from shadowcast.plan.config import PlanConfig
from shadowcast.plan.evaluate import evaluate_te, parse_horizon
from shadowcast.plan.hedge import CANDIDATES
from shadowcast.plan.paths import candidate_paths
from shadowcast.plan.planner import ClassForecast, make_plan, split_matrix
from shadowcast.plan.whatif import what_if
from shadowcast.records import DemandSeries, Forecast, SeriesFrame, Topology

log = logging.getLogger(__name__)
app = typer.Typer(help="Plan reservations, shaping and path splits from forecasts.")

TopoOpt = Annotated[Path, typer.Option("--topology", "-t", help="topology file")]
CapsOpt = Annotated[
    Path | None, typer.Option("--capacities-from", help="take capacities from this file")
]
DemOpt = Annotated[Path, typer.Option("--demands", "-d", help="demand series (SNDlib/CSV)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def _load(
    topology: Path, caps: Path | None, demands: Path, missing: str = "zero", trim: bool = False
) -> tuple[Topology, DemandSeries]:
    """Topology and demands; ``trim``: without the empty matrices at the ends (measured
    nothing, see :func:`~shadowcast.datasets.load_demands`)."""
    from shadowcast.datasets import load_demands, load_topology

    topo = load_topology(topology, capacities_from=caps)
    return topo, load_demands(demands, topology=topo, missing=missing, trim_empty=trim)


def _settings(ctx: typer.Context) -> tuple[PlanConfig, dict[str, str], Any]:
    """The ``plan:`` settings, the profile taxonomy (category -> latency sensitivity) and
    the operator's application map file."""
    from shadowcast.profile.config import ProfileConfig

    settings = ctx.find_root().obj  # the loaded Settings (None in a bare Typer app)
    plan_cfg = getattr(settings, "plan", None)
    prof = getattr(settings, "profile", None)
    prof = prof if isinstance(prof, ProfileConfig) else ProfileConfig()
    cfg = plan_cfg if isinstance(plan_cfg, PlanConfig) else PlanConfig()
    return cfg, dict(prof.taxonomy), prof.apps_file


def _stored(
    ctx: typer.Context,
    topology: Path,
    caps: Path | None,
    store_path: Path,
    horizon: str,
    classes: str,
    profile: tuple[dict[str, str], Any],
) -> tuple[Topology, list[tuple[str, str]], int, Any, list[ClassForecast]]:
    """Topology and the latest stored OD forecast, per class, cut to ``horizon``."""
    from shadowcast.datasets import load_topology
    from shadowcast.forecast.stored import read_od_forecast
    from shadowcast.plan.classes import class_forecasts
    from shadowcast.store.remote import open_for_reading

    if not store_path.is_file():
        raise PlanError(f"--store {store_path}: no such file")
    topo = load_topology(topology, capacities_from=caps)
    st = open_for_reading(settings_of(ctx).store.at(store_path), settings_of(ctx).data_dir)
    try:
        per_app = {"auto": None, "app": True, "all": False}[classes]
        stored = read_od_forecast(st, per_app=per_app)
    finally:
        st.close()
    fc = stored.forecast
    h = max(1, min(fc.mean.shape[1], round(parse_horizon(horizon) / stored.step)))
    cut = Forecast(
        mean=fc.mean[:, :h],
        lower={lv: v[:, :h] for lv, v in fc.lower.items()},
        upper={lv: v[:, :h] for lv, v in fc.upper.items()},
        model=fc.model,
    )
    taxonomy, apps_file = profile
    od_pairs, forecasts = class_forecasts(
        stored.keys, cut, category_of=_categories(taxonomy, apps_file), taxonomy=taxonomy
    )
    nodes = set(topo.nodes)
    for s, d in od_pairs:
        if s not in nodes or d not in nodes:
            raise PlanError(f"stored forecast for {s}->{d}: not in topology {topology}")
    return topo, od_pairs, stored.step, stored.issued, forecasts


def _categories(taxonomy: dict[str, str], apps_file: Any) -> Callable[[str], str]:
    """Application label -> its category in the taxonomy (``unknown`` when none)."""
    from shadowcast.profile.appmap import AppMap

    amap: list[AppMap] = []

    def category(app: str) -> str:
        if app in taxonomy:
            return app
        if not amap:
            amap.append(AppMap.load(apps_file, set(taxonomy)))
        cat = amap[0].category_of(app)[1]
        return cat if cat in taxonomy else "unknown"

    return category


@app.callback(invoke_without_command=True)
def plan(
    ctx: typer.Context,
    topology: TopoOpt,
    demands: Annotated[
        Path | None,
        typer.Option("--demands", "-d", help="demand series to forecast from (or --store)"),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(help="plan from the latest OD forecasts stored here (a replay's DuckDB file)"),
    ] = None,
    capacities_from: CapsOpt = None,
    model: Annotated[str, typer.Option(help="forecast model (forecast registry name)")] = (
        "persistence"
    ),
    at: Annotated[int, typer.Option(help="plan after this step index (-1 = last)")] = -1,
    horizon: Annotated[str, typer.Option(help="planning horizon, e.g. 1h")] = "1h",
    classes: Annotated[
        str,
        typer.Option(
            help="with --store: plan per application class ('app'), all traffic ('all'), or "
            "per class when the latest stored forecast has applications ('auto')"
        ),
    ] = "auto",
    missing: Annotated[
        str, typer.Option(help="with --demands: a pair without a row at a step is zero|nan")
    ] = "zero",
    fail: Annotated[list[str] | None, typer.Option("--fail", help="link A-B to fail")] = None,
    fail_node: Annotated[list[str] | None, typer.Option("--fail-node")] = None,
    current: Annotated[
        Path | None, typer.Option(help="plan JSON in force (diff against it)")
    ] = None,
    save: Annotated[Path | None, typer.Option(help="write the new plan JSON here")] = None,
    fmt: Annotated[str, typer.Option("--format", help="json or yaml with --json off")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Show the plan for "now" (after step ``--at``) from forecasts of the demand series,
    or from the latest stored forecasts (per application class when they are); with
    ``--fail``/``--fail-node``, re-plan without those elements and report overloads.
    Uses the ``plan:`` settings and the profile taxonomy's latency classes."""
    if ctx.invoked_subcommand is not None:
        return
    if (demands is None) == (store is None):
        raise typer.BadParameter("give exactly one of --demands and --store")
    if classes not in ("auto", "app", "all"):
        raise typer.BadParameter(f"--classes {classes!r}: choose auto, app or all")
    try:
        cfg, taxonomy, apps_file = _settings(ctx)
        if store is not None:
            topo, od_pairs, step_s, issued, forecasts = _stored(
                ctx, topology, capacities_from, store, horizon, classes, (taxonomy, apps_file)
            )
        else:
            assert demands is not None
            topo, dem = _load(topology, capacities_from, demands, missing)
            od_pairs, step_s = list(dem.od_pairs), dem.step
            end = dem.steps if at < 0 else at + 1
            if not 2 <= end <= dem.steps:
                raise typer.BadParameter(f"--at {at}: series has {dem.steps} steps")
            h = max(1, round(parse_horizon(horizon) / dem.step))
            from shadowcast.forecast.registry import make_model

            fm = make_model(model, horizons=[parse_horizon(horizon)])
            fm.fit(SeriesFrame.from_demands(dem.slice(0, end)))
            fc = fm.predict(h, (80.0, 95.0))
            issued = dem.times[end - 1]
            forecasts = [ClassForecast("all", fc)]
        from shadowcast.plan.classes import summarise

        summary = [c.to_dict() for c in summarise(forecasts, cfg)]
        if fail or fail_node:
            w = what_if(
                topo,
                forecasts,
                od_pairs,
                fail_links=fail or [],
                fail_nodes=fail_node or [],
                config=cfg,
                step_s=step_s,
            )
            doc: dict[str, Any] = {"issued": str(issued), "horizon": horizon, **w.to_dict()}
            _print_whatif(doc, as_json)
            return
        paths = candidate_paths(
            topo, od_pairs, cfg.k_paths, disjoint=cfg.disjoint, weight=cfg.path_weight
        )
        names = [f.cls for f in forecasts]
        cur = None
        if current is not None:
            in_force = Plan.load(current)
            cur = split_matrix(in_force, paths, names)
        p = make_plan(forecasts, paths, topo, cfg, current=cur, issued=issued, step_s=step_s)
        if save is not None:
            save.write_text(p.to_json())
        try:
            check_plan(p, topo, max_changes=None)
            verdict = "accepted"
        except ShadowcastError as exc:
            verdict = f"rejected: {exc}"
    except ShadowcastError as exc:
        raise error_exit(exc) from None
    if as_json:
        emit_json({"checker": verdict, "classes": summary, "plan": p.to_dict()})
        return
    if fmt == "yaml":
        print(p.to_yaml())
    elif fmt == "json":
        print(p.to_json())
    c = Table(title="classes planned")
    for col in ("class", "sensitivity", "quantile", "reserve", "shape", "OD pairs", "Mbit/s"):
        c.add_column(col)
    for r in summary:
        yes = {True: "yes", False: ""}
        c.add_row(
            r["class"],
            r["sensitivity"],
            r["quantile"],
            yes[r["reserve"]],
            yes[r["shape"]],
            str(r["od_pairs"]),
            f"{r['planned_mbps']:.0f}",
        )
    out.print(c)
    print(p.explain())
    t = Table(title=f"busiest links ({verdict})")
    for col in ("link", "now-routing", "planned", "p(>=100 %)"):
        t.add_column(col)
    for o in p.outlook:
        t.add_row(o.link, f"{o.current:.0%}", f"{o.planned:.0%}", f"{o.p_overload:.2f}")
    out.print(t)


def _print_whatif(doc: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit_json(doc)
        return
    c = out
    c.print(f"failed: {', '.join(doc['failed_links'] + doc['failed_nodes'])}")
    c.print(
        f"max utilisation {doc['mlu_before']:.0%} -> {doc['mlu_after']:.0%}; "
        f"lost {doc['lost_mbps']:.0f} Mbit/s ({len(doc['disconnected'])} OD pairs cut)"
    )
    t = Table(title="links at or above target after re-planning")
    t.add_column("link")
    t.add_column("utilisation")
    for o in doc["overloads"]:
        t.add_row(o["link"], f"{o['utilisation']:.0%}")
    c.print(t)
    for s in doc["shaping"]:
        c.print(f"shape: {s}")
    for n in doc["notes"]:
        c.print(f"note: {n}")


def eval_te(
    ctx: typer.Context,
    topology: TopoOpt,
    demands: DemOpt,
    test: Annotated[Path | None, typer.Option(help="replay this series after D")] = None,
    capacities_from: CapsOpt = None,
    horizons: Annotated[str, typer.Option(help="comma-separated, e.g. 15m,1h")] = "15m,1h",
    model: Annotated[
        str,
        typer.Option(
            help="forecasters for predictive TE, comma-separated: one row each ('best': the "
            "one a backtest on the training part picks)"
        ),
    ] = "persistence,best",
    quantile: Annotated[str, typer.Option(help="'mean' or 'pNN' planned by predictive TE")] = (
        "mean"
    ),
    hedge: Annotated[
        str,
        typer.Option(
            help="predictive hedge: auto (picked on the training part), mean, saa:K (the "
            "forecast and its last K errors as scenarios) or saa:K:CHURN_WEIGHT"
        ),
    ] = "auto",
    candidates: Annotated[
        str, typer.Option(help="forecasters the backtest for 'best' tries, comma-separated")
    ] = ",".join(CANDIDATES),
    capacity_scale: Annotated[
        str, typer.Option(help="multiply capacities, or 'auto' (oracle p95 MLU = 90 %)")
    ] = "1",
    missing: Annotated[
        str, typer.Option(help="a pair without a row at a step is zero|nan (unknown)")
    ] = "zero",
    as_json: JsonOpt = False,
) -> None:
    """Replay a demand series: static SP, reactive, threshold-reactive, predictive, oracle TE."""
    try:
        from shadowcast.replay.source import parse_capacity_scale

        factor = parse_capacity_scale(capacity_scale)
        scale: float | str = "auto" if factor is None else factor
        topo, dem = _load(topology, capacities_from, demands, missing, trim=True)
        tst = None
        if test is not None:
            from shadowcast.datasets import load_demands

            tst = load_demands(test, topology=topo, missing=missing, trim_empty=True)
        with RichProgress(console=console, transient=True, disable=as_json) as bar:
            task = bar.add_task("replaying", total=None)
            rows = evaluate_te(
                topo,
                dem,
                tst,
                horizons=[h.strip() for h in horizons.split(",") if h.strip()],
                forecasters=[m.strip() for m in model.split(",") if m.strip()],
                quantile=quantile,
                hedge=hedge,
                candidates=[c.strip() for c in candidates.split(",") if c.strip()],
                capacity_scale=scale,
                config=settings_of(ctx).plan,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except ValueError as exc:
        raise error_exit(ConfigError(str(exc))) from None
    except ShadowcastError as exc:
        raise error_exit(exc) from None
    if as_json:
        emit_json({"topology": topo.name, "demands": str(demands), "rows": rows})
        return
    t = Table(title=f"TE replay on {topo.name}: MLU / oracle MLU")
    for col in (
        "method",
        "horizon",
        "mean",
        "p95",
        "steps>=90%",
        "steps>=100%",
        "link-min>=100%",
        "churn",
        "solve ms",
    ):
        t.add_column(col)
    for r in rows:
        label = r["method"]
        if "forecaster" in r:
            label += f" ({r['forecaster']}, {r['hedge']})"
        t.add_row(
            label,
            r["horizon"],
            f"{r['mlu_ratio_mean']:.3f}",
            f"{r['mlu_ratio_p95']:.3f}",
            str(r["overload_steps_90"]),
            str(r["overload_steps_100"]),
            f"{r['overload_link_minutes_100']:.0f}",
            f"{r['churn']:.3f}",
            f"{r['solve_ms_median']:.1f}",
        )
    out.print(t)
