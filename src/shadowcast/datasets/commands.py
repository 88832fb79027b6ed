"""``shadowcast data``: inspect topology/demand files, write the synthetic data set."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer

from shadowcast.cli_support import console, emit_record, settings_of
from shadowcast.datasets.csvdemand import write_csv
from shadowcast.datasets.demands import load_demands, totals
from shadowcast.datasets.topology import load_topology, write_node_link
from shadowcast.records import DemandSeries, Topology

app = typer.Typer(help="Inspect and generate datasets.", no_args_is_help=True)
T = TypeVar("T")


def _busy(what: str, fn: Callable[[], T]) -> T:
    with console.status(what):
        return fn()


def topology_summary(topo: Topology) -> dict[str, Any]:
    caps = topo.capacities
    return {
        "name": topo.name,
        "nodes": len(topo.nodes),
        "links": len(topo.links),
        "with_coords": len(topo.coords),
        "capacity_min_bps": float(caps.min()) if caps.size else 0.0,
        "capacity_max_bps": float(caps.max()) if caps.size else 0.0,
        "capacity_total_bps": float(caps.sum()),
    }


def demand_summary(dem: DemandSeries) -> dict[str, Any]:
    tot = totals(dem)
    return {
        "steps": dem.steps,
        "od_pairs": len(dem.od_pairs),
        "step_s": dem.step,
        "start": str(dem.times[0]) if dem.steps else None,
        "end": str(dem.times[-1]) if dem.steps else None,
        "total_mbit": float(tot.sum()),  # sum over steps and pairs of Mbit/s values
        "peak_step_total_mbps": float(tot.max()) if dem.steps else 0.0,
        "zero_fraction": float(np.mean(dem.values == 0)) if dem.values.size else 0.0,
    }


@app.command("info")
def info(
    ctx: typer.Context,
    topology: Annotated[
        Path | None, typer.Option(help="topology file (default datasets.topology)")
    ] = None,
    demands: Annotated[
        Path | None, typer.Option(help="demand folder / archive / CSV (default datasets.demands)")
    ] = None,
    capacities: Annotated[
        Path | None,
        typer.Option(help="take capacities from this (default datasets.capacities_from)"),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Load a topology and/or a demand series and summarise them (checks them on the way).

    Links without a capacity get ``datasets.default_capacity_bps``; ``datasets.fill_gaps``
    fills missing demand steps with zeros."""
    cfg = settings_of(ctx).datasets
    topology = topology or cfg.topology
    demands = demands or cfg.demands
    capacities = capacities or cfg.capacities_from
    if topology is None and demands is None:
        raise typer.BadParameter("give --topology and/or --demands (or datasets.* settings)")
    out: dict[str, Any] = {}
    topo = None
    if topology is not None:
        topo = load_topology(
            topology, capacities_from=capacities, default_capacity_bps=cfg.default_capacity_bps
        )
        out.update({f"topology_{k}": v for k, v in topology_summary(topo).items()})
    if demands is not None:
        t0 = time.perf_counter()
        dem = _busy(
            f"loading {demands.name}",
            lambda: load_demands(demands, topology=topo, fill_gaps=cfg.fill_gaps),
        )
        out.update(demand_summary(dem))
        out["load_seconds"] = round(time.perf_counter() - t0, 3)
    emit_record(out, as_json, "dataset")


@app.command("synth")
def synth(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="demand CSV to write (time,src,dst,value)")],
    topology_out: Annotated[Path | None, typer.Option(help="also write node-link JSON")] = None,
    weeks: Annotated[
        float | None, typer.Option(help="length in weeks (default datasets.synthetic.weeks)")
    ] = None,
    step: Annotated[
        int | None, typer.Option(help="step in seconds (default datasets.synthetic.step_s)")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="random seed (default datasets.synthetic.seed)")
    ] = None,
    scale: Annotated[
        float | None, typer.Option(help="multiplier after calibration (default ...synthetic.scale)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Write the SYNTHETIC data set (gravity model + application mix) as CSV (+ topology).

    Every knob of ``datasets.synthetic`` applies (growth, noise, peak utilisation, hot
    links, base topology); the options override weeks, step, seed and scale."""
    from pydantic import ValidationError

    from shadowcast.datasets.config import SyntheticConfig
    from shadowcast.datasets.source import load_dataset
    from shadowcast.errors import ConfigError
    from shadowcast.settings import format_validation_error

    cfg = settings_of(ctx).datasets
    given = {"weeks": weeks, "step_s": step, "seed": seed, "scale": scale}
    try:
        syn = SyntheticConfig.model_validate(
            {**cfg.synthetic.model_dump(), **{k: v for k, v in given.items() if v is not None}}
        )
    except ValidationError as exc:
        raise ConfigError(
            format_validation_error(exc, "the options", "datasets.synthetic")
        ) from None
    synthetic = cfg.model_copy(update={"topology": None, "demands": None, "synthetic": syn})
    topo, dem, apps = _busy("generating", lambda: load_dataset(synthetic))
    by_app = dict(apps or {})
    _busy(f"writing {out.name}", lambda: write_csv(dem, out))
    summary: dict[str, Any] = {"demands": str(out), **demand_summary(dem)}
    if topology_out is not None:
        write_node_link(topo, topology_out)
        summary["topology"] = str(topology_out)
    summary.update({f"share_{a}": float(v.sum()) for a, v in by_app.items()})
    total = sum(summary[f"share_{a}"] for a in by_app) or 1.0
    for a in by_app:
        summary[f"share_{a}"] /= total
    emit_record(summary, as_json, "synthetic dataset")
