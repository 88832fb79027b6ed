"""CLI: ``shadowcast forecast``: every series ahead, the links at risk, and their runout."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from shadowcast.cli_support import console, emit_json, error_exit, exitcodes, out, settings_of
from shadowcast.errors import ConfigError, ShadowcastError
from shadowcast.forecast.models_cmd import app as models_app
from shadowcast.forecast.outlook import (
    LinkInputs,
    Outlook,
    forecast_outlook,
    links_from_store,
    series_from_store,
)
from shadowcast.records import SeriesFrame, Topology
from shadowcast.store.base import Store

log = logging.getLogger(__name__)
app = typer.Typer(help="Forecast demand and link load with intervals; runout per link.")
app.add_typer(models_app, name="models")

TOPOLOGY_SIDECAR = ".topology.json"  # written by `shadowcast replay` beside its store


def _store_candidates(ctx: typer.Context) -> list[Path]:
    s = settings_of(ctx)
    path = s.store.resolved_path()
    out = [Path(path)] if path != ":memory:" else []
    return [*out, Path(s.data_dir) / "replay.duckdb"]


def _pick_store(ctx: typer.Context, given: Path | None) -> Path:
    if given is not None:
        if not given.is_file():
            raise ConfigError(f"--store {given}: no such file")
        return given
    candidates = _store_candidates(ctx)
    for p in candidates:
        if p.is_file():
            return p
    tried = ", ".join(str(p) for p in candidates)
    raise ConfigError(
        f"no store found (tried {tried}): run `shadowcast replay` first, or give --store "
        "or --demands"
    )


def _links(topo: Topology, frame: SeriesFrame) -> LinkInputs:
    from shadowcast.network.routing import routing_matrix

    pairs = []
    for k in frame.keys:
        s, _, d = k.partition("->")
        if not d or s not in topo.node_index() or d not in topo.node_index():
            raise ConfigError(f"series {k!r} is not an OD pair of the topology")
        pairs.append((s, d))
    return LinkInputs(topo.link_names(), routing_matrix(topo, pairs), topo.capacities / 1e6)


@app.callback(invoke_without_command=True)
def forecast(
    ctx: typer.Context,
    store: Annotated[
        Path | None,
        typer.Option(
            help="read OD series from this DuckDB store (default: the configured "
            "store, else the replay's)"
        ),
    ] = None,
    demands: Annotated[
        Path | None, typer.Option(help="read demands from a file instead (SNDlib/CSV)")
    ] = None,
    topology: Annotated[
        Path | None,
        typer.Option(help="topology for link forecasts (default: the replay's, if stored)"),
    ] = None,
    capacities: Annotated[
        Path | None, typer.Option("--capacities-from", help="take capacities from this file")
    ] = None,
    by_app: Annotated[
        bool, typer.Option("--by-app", help="forecast each application's OD series")
    ] = False,
    model: Annotated[str | None, typer.Option(help="model (default: forecast.model)")] = None,
    horizon: Annotated[
        list[str] | None, typer.Option("--horizon", help="e.g. 15m, 1h, 1d (repeatable)")
    ] = None,
    days: Annotated[float | None, typer.Option(help="use only the last N days")] = None,
    missing: Annotated[
        str | None,
        typer.Option(
            help="a series without a value at a step is 'zero' or 'nan' (unknown); default: "
            "zero for demand files, nan (a gap) for the store"
        ),
    ] = None,
    top: Annotated[int, typer.Option(help="rows per table")] = 10,
    write: Annotated[
        bool, typer.Option("--write", help="store the forecasts (what `plan --store` reads)")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Forecast every series from the latest history; map OD forecasts onto links
    (P(load > threshold), intervals that do not add quantiles) and date each link's runout."""
    if ctx.invoked_subcommand is not None:
        return
    try:
        report = _run(
            ctx, store, demands, topology, capacities, by_app, model, horizon, days, write, missing
        )
    except ShadowcastError as exc:
        raise error_exit(exc) from None
    doc = _json(report, top)
    if as_json:
        emit_json(doc)
    else:
        _print(report, top)
    if doc["links_at_risk"]:  # cron and Nagios: a distinct status when links are at risk
        raise typer.Exit(exitcodes.AT_RISK)


@app.command("score")
def score(
    ctx: typer.Context,
    store: Annotated[
        Path | None, typer.Option(help="the store (default: the configured one, else the replay's)")
    ] = None,
    kind: Annotated[str, typer.Option(help="link or od")] = "link",
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Feedback: score the stored forecasts against what was measured at their targets
    (NMAE, interval coverage, upper-bound coverage), per model and horizon."""
    from shadowcast.forecast.score import score_stored
    from shadowcast.store.remote import open_for_reading
    from shadowcast.units import format_duration

    try:
        path = _pick_store(ctx, store)
        st = open_for_reading(settings_of(ctx).store.at(path), settings_of(ctx).data_dir)
        try:
            doc = score_stored(st, kind)
        finally:
            st.close()
    except ShadowcastError as exc:
        raise error_exit(exc) from None
    doc["store"] = str(path)
    if as_json:
        emit_json(doc)
        return
    cols = sorted({k for r in doc["rows"] for k in r if "coverage" in k})
    t = Table(title=f"stored {kind} forecasts against what was measured ({path})")
    heads = [c.replace("upper_coverage_", "<=hi ").replace("coverage_", "in ") for c in cols]
    for c in ("model", "h", "scored", "pending", "NMAE", *heads):
        t.add_column(c, justify="left" if c == "model" else "right")
    for r in doc["rows"]:
        cells = [r["model"], format_duration(r["horizon_s"]), f"{r['scored']:,}"]
        cells += [f"{r['pending']:,}", "" if r["nmae"] is None else f"{r['nmae']:.3f}"]
        cells += ["" if r.get(c) is None else f"{r[c]:.1%}" for c in cols]
        t.add_row(*cells)
    out.print(t)
    console.print(
        "in L: share inside the L % interval; <=hi L: share at or below its upper bound "
        "(nominal (100 + L) / 2 %)"
    )


def _run(
    ctx: typer.Context,
    store_path: Path | None,
    demands: Path | None,
    topology: Path | None,
    capacities: Path | None,
    by_app: bool,
    model: str | None,
    horizons: list[str] | None,
    days: float | None,
    write: bool,
    missing: str | None = None,
) -> dict[str, Any]:
    from pydantic import ValidationError

    from shadowcast import datasets
    from shadowcast.datasets.demands import missing_value
    from shadowcast.forecast.config import ForecastConfig
    from shadowcast.forecast.enrich import demand_inputs, site_regions, store_inputs
    from shadowcast.settings import format_validation_error
    from shadowcast.store.config import open_store
    from shadowcast.store.remote import open_for_reading

    settings = settings_of(ctx)
    over: dict[str, Any] = {}
    if model:
        over["model"] = model
    if horizons:
        over["horizons"] = horizons
    base = settings.forecast
    try:
        cfg = ForecastConfig.model_validate({**base.model_dump(), **over})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "the options", "forecast")) from None
    topo = None
    observed = None
    if demands is not None:
        if store_path is not None:
            raise ConfigError("give --store or --demands, not both")
        if by_app:
            raise ConfigError("--by-app reads per-application series from a store")
        if write:
            raise ConfigError("--write stores into the store the series came from: use --store")
        topo = datasets.load_topology(topology, capacities_from=capacities) if topology else None
        dem = datasets.load_demands(
            demands, topology=topo, missing=missing or "zero", trim_empty=True
        )
        frame = demand_inputs(
            SeriesFrame.from_demands(dem),
            topology=topo,
            coords=datasets.demand_coords(demands),
            regions=site_regions(settings.profile.sites_file),
            exog=cfg.exog,
        )
        if days is not None:
            frame = frame.rows(-max(4, int(days * 86400 // frame.step)))
        source = str(demands)
    else:
        path = _pick_store(ctx, store_path)
        source = str(path)
        if topology is None and path.with_suffix(TOPOLOGY_SIDECAR).is_file():
            topology = path.with_suffix(TOPOLOGY_SIDECAR)
        if topology is not None:
            topo = datasets.load_topology(topology, capacities_from=capacities)
        st = open_for_reading(settings.store.at(path), settings.data_dir)
        try:
            fill = missing_value(missing or "nan")
            frame = series_from_store(st, by_app=by_app, days=days, missing=fill)
            observed = links_from_store(st, topo.link_names() if topo else None)
            frame = store_inputs(
                st,
                frame,
                topology=topo,
                regions=site_regions(settings.profile.sites_file),
                exog=[] if by_app else cfg.exog,  # measurements are per OD pair, not per app
            )
        finally:
            st.close()
    links = _links(topo, frame) if topo is not None and not by_app else None
    client = None
    if cfg.dask_scheduler:
        from dask.distributed import Client

        client = Client(cfg.dask_scheduler)  # type: ignore[no-untyped-call]
    try:
        with console.status(f"forecasting {len(frame.keys)} series with {cfg.model}"):
            ol = forecast_outlook(frame, cfg, links=links, observed=observed, client=client)
    finally:
        if client is not None:
            client.close()  # type: ignore[no-untyped-call]
    written = _write(open_store(settings.store.at(source)), ol) if write else 0
    return {
        "outlook": ol,
        "source": source,
        "topology": str(topology) if topology else None,
        "written": written,
        "history": frame,
    }


def _write(st: Store, ol: Outlook) -> int:
    """OD forecasts of every step into the store's ``forecasts`` table (kind ``od``)."""
    from shadowcast.forecast.tables import od_forecast_table

    try:
        tab = od_forecast_table(ol.issued, ol.step, ol.keys, ol.model, ol.series)
        with st.transaction():
            st.write("forecasts", tab)
    finally:
        st.close()
    return int(tab.num_rows)


def _risk_order(ol: Outlook) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Links by descending max P(exceed) over horizons, then by upper utilisation."""
    n = len(ol.link_names)
    cap = ol.capacity_mbps if ol.capacity_mbps is not None else np.ones(n)
    p = np.zeros(n)
    up = np.zeros(n)
    for lf in ol.links.values():
        if lf.p_exceed is not None:
            p = np.maximum(p, lf.p_exceed[:, 0])
        hi = lf.upper[max(lf.upper)] if lf.upper else lf.mean
        up = np.maximum(up, hi[:, 0] / cap)
    return np.lexsort((-up, -p)).astype(np.int64)


def _num(x: float, nd: int = 4) -> float | None:
    return None if not np.isfinite(x) else round(float(x), nd)


def _json(report: dict[str, Any], top: int) -> dict[str, Any]:
    ol: Outlook = report["outlook"]
    frame: SeriesFrame = report["history"]
    fc = ol.series
    cap = ol.capacity_mbps
    links = []
    if ol.links and cap is not None:
        for e in _risk_order(ol):
            row: dict[str, Any] = {"link": ol.link_names[e], "capacity_mbps": _num(cap[e], 3)}
            for label, lf in ol.links.items():
                h: dict[str, Any] = {"mean_util": _num(lf.mean[e, 0] / cap[e])}
                for lv in lf.lower:
                    h[f"lower_{lv:g}_util"] = _num(lf.lower[lv][e, 0] / cap[e])
                    h[f"upper_{lv:g}_util"] = _num(lf.upper[lv][e, 0] / cap[e])
                if lf.p_exceed is not None:
                    h["p_exceed"] = _num(lf.p_exceed[e, 0])
                row[label] = h
            links.append(row)
    runouts = []
    if ol.runout is not None and cap is not None:
        ro = ol.runout
        for e in np.lexsort((-np.nan_to_num(ro.p95_now / cap), ro.days)):
            runouts.append(
                {
                    "link": ol.link_names[e],
                    "date": None if np.isnat(ro.date[e]) else str(ro.date[e]) + "Z",
                    "days": _num(ro.days[e], 2),
                    "p95_peak_util": _num(ro.p95_now[e] / cap[e]),
                    "slope_util_per_day": _num(ro.slope[e] / cap[e], 6),
                }
            )
    return {
        "source": report["source"],
        "topology": report["topology"],
        "exog": sorted(frame.exog),
        "meta": sorted(frame.meta),
        "model": ol.model,
        "issued": str(ol.issued) + "Z",
        "step_s": ol.step,
        "series": len(ol.keys),
        "history_steps": int(frame.values.shape[0]),
        "horizons": ol.horizons,
        "levels": list(fc.levels),
        "uncalibrated_horizons": ol.report.get("uncalibrated", []),
        "threshold": next(iter(ol.links.values())).threshold if ol.links else None,
        "seconds": round(ol.seconds, 3),
        "links": links,
        "runout": runouts,
        "top_series": _top_series(ol, frame, top),
        "written_rows": report["written"],
        "links_at_risk": _at_risk(ol),
    }


def _at_risk(ol: Outlook) -> list[str]:
    """Links whose mean or any upper bound reaches the threshold at some horizon."""
    cap = ol.capacity_mbps
    if not ol.links or cap is None:
        return []
    hit = np.zeros(len(ol.link_names), dtype=bool)
    for lf in ol.links.values():
        for level in [lf.mean, *lf.upper.values()]:
            hit |= (level / cap[:, None] >= lf.threshold).any(axis=1)
    return [ol.link_names[int(e)] for e in np.flatnonzero(hit)]


def _top_series(ol: Outlook, frame: SeriesFrame, top: int) -> list[dict[str, Any]]:
    """Series with the largest predicted level at the longest horizon."""
    fc = ol.series
    h = max(ol.horizons.values()) - 1
    last = np.nan_to_num(frame.values[-1])
    col = {k: j for j, k in enumerate(frame.keys)}  # retired series are not in ol.keys
    lv = max(fc.levels) if fc.levels else None
    out = []
    for i in np.argsort(-fc.mean[:, h], kind="stable")[:top]:
        row: dict[str, Any] = {"key": ol.keys[i], "last": _num(last[col[ol.keys[i]]], 3)}
        for label, steps in ol.horizons.items():
            cell: dict[str, Any] = {"mean": _num(fc.mean[i, steps - 1], 3)}
            if lv is not None:
                cell[f"lower_{lv:g}"] = _num(fc.lower[lv][i, steps - 1], 3)
                cell[f"upper_{lv:g}"] = _num(fc.upper[lv][i, steps - 1], 3)
            row[label] = cell
        out.append(row)
    return out


def _print(report: dict[str, Any], top: int) -> None:
    doc = _json(report, top)
    console.print(
        f"{doc['series']} series from {doc['source']}, {doc['history_steps']} steps of "
        f"{doc['step_s']} s up to {doc['issued']}; model {doc['model']}, {doc['seconds']} s"
    )
    labels = list(doc["horizons"])
    if doc["uncalibrated_horizons"]:
        console.print(
            f"[yellow]note:[/yellow] {', '.join(doc['uncalibrated_horizons'])} lie beyond the "
            "calibration window: their intervals are a wide fallback, not calibrated (raise "
            "forecast.calibration_window to calibrate them)"
        )
    lv = max(doc["levels"]) if doc["levels"] else None
    if doc["links"]:
        t = Table(title=f"links most at risk (P = P(load > {doc['threshold']:.0%} of capacity))")
        t.add_column("link")
        for label in labels:
            t.add_column(f"{label} mean", justify="right")
            if lv is not None:
                t.add_column(f"{label} {lv:g}% hi", justify="right")
            t.add_column(f"{label} P", justify="right")
        for row in doc["links"][:top]:
            cells = [row["link"]]
            for label in labels:
                c = row[label]
                cells.append(_pct(c["mean_util"]))
                if lv is not None:
                    cells.append(_pct(c.get(f"upper_{lv:g}_util")))
                cells.append(_pct(c.get("p_exceed")))
            t.add_row(*cells)
        out.print(t)
    elif doc["topology"] is None:
        console.print("no topology: give --topology to map the forecasts onto links")
    if doc["runout"]:
        t = Table(title="runout: when the p95 daily peak crosses the target utilisation")
        for c in ("link", "p95 peak", "trend /day", "runout"):
            t.add_column(c, justify="left" if c == "link" else "right")
        for row in doc["runout"][:top]:
            days = row["days"]
            when = "now" if days == 0 else (row["date"] or "")[:10] or "beyond horizon"
            slope = row["slope_util_per_day"]
            t.add_row(
                row["link"],
                _pct(row["p95_peak_util"]),
                "" if slope is None else f"{slope * 100:+.2f} pt",
                when,
            )
        out.print(t)
    t = Table(title=f"largest series at {labels[-1]} (Mbit/s, [{lv:g} % interval])")
    t.add_column("series")
    t.add_column("now", justify="right")
    for label in labels:
        t.add_column(label, justify="right")
    for row in doc["top_series"]:
        cells = [row["key"], f"{row['last']:.1f}"]
        for label in labels:
            c = row[label]
            rng = ""
            if lv is not None and c.get(f"lower_{lv:g}") is not None:
                rng = f" [{c[f'lower_{lv:g}']:.0f}, {c[f'upper_{lv:g}']:.0f}]"
            cells.append(f"{c['mean']:.1f}{rng}")
        t.add_row(*cells)
    out.print(t)
    if doc["written_rows"]:
        console.print(f"stored {doc['written_rows']:,} forecast rows in {doc['source']}")


def _pct(x: float | None) -> str:
    return "" if x is None else f"{x:.0%}"
