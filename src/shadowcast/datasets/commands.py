"""``shadowcast data``: inspect topology/demand files, write the synthetic data set."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import numpy as np
import typer
from rich.console import Console

from shadowcast.datasets.csvdemand import write_csv
from shadowcast.datasets.demands import load_demands, totals
from shadowcast.datasets.synthetic import synthetic_dataset
from shadowcast.datasets.topology import load_topology, write_node_link
from shadowcast.output import emit_record
from shadowcast.records import DemandSeries, Topology

app = typer.Typer(help="Inspect and generate datasets.", no_args_is_help=True)
console = Console(stderr=True)
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
    topology: Annotated[Path | None, typer.Option(help="topology file")] = None,
    demands: Annotated[Path | None, typer.Option(help="demand folder / archive / CSV")] = None,
    capacities: Annotated[Path | None, typer.Option(help="take capacities from this")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Load a topology and/or a demand series and summarise them (checks them on the way)."""
    if topology is None and demands is None:
        raise typer.BadParameter("give --topology and/or --demands")
    out: dict[str, Any] = {}
    topo = None
    if topology is not None:
        topo = load_topology(topology, capacities_from=capacities)
        out.update({f"topology_{k}": v for k, v in topology_summary(topo).items()})
    if demands is not None:
        t0 = time.perf_counter()
        dem = _busy(f"loading {demands.name}", lambda: load_demands(demands, topology=topo))
        out.update(demand_summary(dem))
        out["load_seconds"] = round(time.perf_counter() - t0, 3)
    emit_record(out, as_json, "dataset")


@app.command("synth")
def synth(
    out: Annotated[Path, typer.Option(help="demand CSV to write (time,src,dst,value)")],
    topology_out: Annotated[Path | None, typer.Option(help="also write node-link JSON")] = None,
    weeks: Annotated[float, typer.Option(help="length in weeks")] = 1.0,
    step: Annotated[int, typer.Option(help="step in seconds")] = 300,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    scale: Annotated[float, typer.Option(help="multiplier after calibration")] = 1.0,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Write the SYNTHETIC data set (gravity model + application mix) as CSV (+ topology)."""
    ds = _busy(
        "generating", lambda: synthetic_dataset(weeks=weeks, step_s=step, seed=seed, scale=scale)
    )
    _busy(f"writing {out.name}", lambda: write_csv(ds.demands, out))
    summary: dict[str, Any] = {"demands": str(out), **demand_summary(ds.demands)}
    if topology_out is not None:
        write_node_link(ds.topology, topology_out)
        summary["topology"] = str(topology_out)
    summary.update({f"share_{a}": float(v.sum()) for a, v in ds.by_app.items()})
    total = sum(summary[f"share_{a}"] for a in ds.by_app) or 1.0
    for a in ds.by_app:
        summary[f"share_{a}"] /= total
    emit_record(summary, as_json, "synthetic dataset")
