"""CLI: ``shadowcast plan`` (the plan for "now", what-if) and ``shadowcast eval te``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.console import Console
from rich.progress import Progress as RichProgress
from rich.table import Table

from shadowcast.errors import PlanError, ShadowcastError
from shadowcast.plan.base import Plan, check_plan
from shadowcast.plan.config import PlanConfig
from shadowcast.plan.evaluate import evaluate_te, parse_horizon
from shadowcast.plan.paths import candidate_paths
from shadowcast.plan.planner import ClassForecast, make_plan, split_matrix
from shadowcast.plan.whatif import what_if
from shadowcast.records import DemandSeries, Forecast, SeriesFrame, Topology

log = logging.getLogger(__name__)
app = typer.Typer(help="Plan reservations, shaping and path splits from forecasts.")
console = Console(stderr=True)

TopoOpt = Annotated[Path, typer.Option("--topology", "-t", help="topology file")]
CapsOpt = Annotated[
    Path | None, typer.Option("--capacities-from", help="take capacities from this file")
]
DemOpt = Annotated[Path, typer.Option("--demands", "-d", help="demand series (SNDlib/CSV)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def _load(topology: Path, caps: Path | None, demands: Path) -> tuple[Topology, DemandSeries]:
    from shadowcast.datasets import load_demands, load_topology

    topo = load_topology(topology, capacities_from=caps)
    return topo, load_demands(demands, topology=topo)


def _stored(
    topology: Path, caps: Path | None, store_path: Path, horizon: str
) -> tuple[Topology, list[tuple[str, str]], int, Any, Forecast]:
    """Topology and the latest stored OD forecast, cut to ``horizon``."""
    from shadowcast.datasets import load_topology
    from shadowcast.replay.run import stored_od_forecast
    from shadowcast.store.duckdb import DuckDBStore

    if not store_path.is_file():
        raise PlanError(f"--store {store_path}: no such file")
    topo = load_topology(topology, capacities_from=caps)
    st = DuckDBStore(str(store_path))
    try:
        issued, step_s, names, fc = stored_od_forecast(st)
    finally:
        st.close()
    pairs = [tuple(n.split("->", 1)) for n in names]
    nodes = set(topo.nodes)
    for s, d in pairs:
        if s not in nodes or d not in nodes:
            raise PlanError(f"stored forecast for {s}->{d}: not in topology {topology}")
    h = max(1, min(fc.mean.shape[1], round(parse_horizon(horizon) / step_s)))
    cut = Forecast(
        mean=fc.mean[:, :h],
        lower={lv: v[:, :h] for lv, v in fc.lower.items()},
        upper={lv: v[:, :h] for lv, v in fc.upper.items()},
        model=fc.model,
    )
    return topo, [(s, d) for s, d in pairs], step_s, issued, cut


def _fail(exc: ShadowcastError) -> typer.Exit:
    console.print(f"[red]error:[/red] {exc}", soft_wrap=True)
    return typer.Exit(code=2)


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
    fail: Annotated[list[str] | None, typer.Option("--fail", help="link A-B to fail")] = None,
    fail_node: Annotated[list[str] | None, typer.Option("--fail-node")] = None,
    current: Annotated[
        Path | None, typer.Option(help="plan JSON in force (diff against it)")
    ] = None,
    save: Annotated[Path | None, typer.Option(help="write the new plan JSON here")] = None,
    fmt: Annotated[str, typer.Option("--format", help="json or yaml with --json off")] = "",
    as_json: JsonOpt = False,
) -> None:
    """Show the plan for "now" (after step ``--at``) from forecasts of the demand series;
    with ``--fail``/``--fail-node``, re-plan without those elements and report overloads."""
    if ctx.invoked_subcommand is not None:
        return
    if (demands is None) == (store is None):
        raise typer.BadParameter("give exactly one of --demands and --store")
    try:
        cfg = PlanConfig()
        if store is not None:
            topo, od_pairs, step_s, issued, fc = _stored(topology, capacities_from, store, horizon)
        else:
            assert demands is not None
            topo, dem = _load(topology, capacities_from, demands)
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
            out: dict[str, Any] = {"issued": str(issued), "horizon": horizon, **w.to_dict()}
            _print_whatif(out, as_json)
            return
        paths = candidate_paths(topo, od_pairs, cfg.k_paths)
        cur = None
        if current is not None:
            in_force = Plan.load(current)
            cur = split_matrix(in_force, paths, ["all"])
        p = make_plan(forecasts, paths, topo, cfg, current=cur, issued=issued, step_s=step_s)
        if save is not None:
            save.write_text(p.to_json())
        try:
            check_plan(p, topo, max_changes=None)
            verdict = "accepted"
        except ShadowcastError as exc:
            verdict = f"rejected: {exc}"
    except ShadowcastError as exc:
        raise _fail(exc) from exc
    if as_json:
        print(json.dumps({"checker": verdict, "plan": p.to_dict()}))
        return
    if fmt == "yaml":
        print(p.to_yaml())
    elif fmt == "json":
        print(p.to_json())
    print(p.explain())
    t = Table(title=f"busiest links ({verdict})")
    for col in ("link", "now-routing", "planned", "p(>=100 %)"):
        t.add_column(col)
    for o in p.outlook:
        t.add_row(o.link, f"{o.current:.0%}", f"{o.planned:.0%}", f"{o.p_overload:.2f}")
    Console().print(t)


def _print_whatif(out: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(out))
        return
    c = Console()
    c.print(f"failed: {', '.join(out['failed_links'] + out['failed_nodes'])}")
    c.print(
        f"max utilisation {out['mlu_before']:.0%} -> {out['mlu_after']:.0%}; "
        f"lost {out['lost_mbps']:.0f} Mbit/s ({len(out['disconnected'])} OD pairs cut)"
    )
    t = Table(title="links at or above target after re-planning")
    t.add_column("link")
    t.add_column("utilisation")
    for o in out["overloads"]:
        t.add_row(o["link"], f"{o['utilisation']:.0%}")
    c.print(t)
    for s in out["shaping"]:
        c.print(f"shape: {s}")
    for n in out["notes"]:
        c.print(f"note: {n}")


def eval_te(
    topology: TopoOpt,
    demands: DemOpt,
    test: Annotated[Path | None, typer.Option(help="replay this series after D")] = None,
    capacities_from: CapsOpt = None,
    horizons: Annotated[str, typer.Option(help="comma-separated, e.g. 15m,1h")] = "15m,1h",
    model: Annotated[str, typer.Option(help="forecaster for predictive TE")] = "persistence",
    quantile: Annotated[str, typer.Option(help="'mean' or 'pNN' planned by predictive TE")] = (
        "mean"
    ),
    capacity_scale: Annotated[
        str, typer.Option(help="multiply capacities, or 'auto' (oracle p95 MLU = 90 %)")
    ] = "1",
    as_json: JsonOpt = False,
) -> None:
    """Replay a demand series: static SP, reactive, threshold-reactive, predictive, oracle TE."""
    try:
        topo, dem = _load(topology, capacities_from, demands)
        tst = None
        if test is not None:
            from shadowcast.datasets import load_demands

            tst = load_demands(test, topology=topo)
        scale: float | str = capacity_scale if capacity_scale == "auto" else float(capacity_scale)
        with RichProgress(console=console, transient=True, disable=as_json) as bar:
            task = bar.add_task("replaying", total=None)
            rows = evaluate_te(
                topo,
                dem,
                tst,
                horizons=[h.strip() for h in horizons.split(",") if h.strip()],
                forecaster=model,
                quantile=quantile,
                capacity_scale=scale,
                progress=lambda done, total: bar.update(task, completed=done, total=total),
            )
    except (ShadowcastError, ValueError) as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(code=2) from exc
    if as_json:
        print(
            json.dumps(
                {"topology": topo.name, "demands": str(demands), "rows": rows}, default=_jsonable
            )
        )
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
        t.add_row(
            r["method"],
            r["horizon"],
            f"{r['mlu_ratio_mean']:.3f}",
            f"{r['mlu_ratio_p95']:.3f}",
            str(r["overload_steps_90"]),
            str(r["overload_steps_100"]),
            f"{r['overload_link_minutes_100']:.0f}",
            f"{r['churn']:.3f}",
            f"{r['solve_ms_median']:.1f}",
        )
    Console().print(t)


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    return str(v)
