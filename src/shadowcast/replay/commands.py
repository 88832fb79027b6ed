"""``shadowcast replay`` and ``shadowcast eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shadowcast.alert.notifiers import build_notifiers
from shadowcast.cli_support import console, emit_json, install_hint, out, settings_of
from shadowcast.records import DemandSeries, Topology
from shadowcast.replay.report import (
    accuracy_rows,
    busiest,
    lead_text,
    plot_busiest,
    score_alerts,
)
from shadowcast.replay.run import replay
from shadowcast.units import format_duration, parse_duration

eval_app = typer.Typer(
    help="Evaluate forecasters and traffic engineering on a series.", no_args_is_help=True
)


def load_inputs(
    topology: Path | None,
    demands: Path | None,
    capacities: Path | None,
    weeks: float,
    seed: int,
) -> tuple[Topology, DemandSeries, dict[str, Any] | None]:
    """Real topology + demands when given, else the seeded synthetic backbone."""
    from shadowcast import datasets

    if (topology is None) != (demands is None):
        raise typer.BadParameter("--topology and --demands go together (or neither: synthetic)")
    if topology is not None and demands is not None:
        topo = datasets.load_topology(topology, capacities_from=capacities)
        return topo, datasets.load_demands(demands, topology=topo), None
    from shadowcast.datasets.synthetic import synthetic_dataset

    syn = synthetic_dataset(weeks=weeks, seed=seed)
    return syn.topology, syn.demands, dict(syn.by_app)


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )


def replay_cmd(
    ctx: typer.Context,
    topology: Annotated[
        Path | None, typer.Option(help="SNDlib XML, GraphML or node-link JSON")
    ] = None,
    demands: Annotated[
        Path | None, typer.Option(help="SNDlib matrices (dir or .tar.gz) or CSV time,src,dst,value")
    ] = None,
    capacities: Annotated[
        Path | None,
        typer.Option(
            "--capacities",
            "--capacities-from",
            help="take link capacities from this topology file",
        ),
    ] = None,
    weeks: Annotated[float | None, typer.Option(help="synthetic replay length")] = None,
    seed: Annotated[int | None, typer.Option(help="synthetic seed")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    plot: Annotated[bool, typer.Option(help="write the PNG plot")] = True,
    ipfix: Annotated[
        bool | None,
        typer.Option(
            "--ipfix/--direct",
            help="send the traffic as IPFIX over loopback UDP through the collector and "
            "replay what it stored (default: on for the synthetic backbone)",
        ),
    ] = None,
) -> None:
    """Replay a week of backbone traffic: store it, forecast it, map it onto links, alert.

    Without --topology/--demands, replays the seeded synthetic backbone (documented in
    docs/datasets.md). The replay writes to its own store file, replaced on each run.
    """
    from shadowcast.datasets.topology import write_node_link
    from shadowcast.forecast.registry import make_model
    from shadowcast.store.config import open_store

    settings = settings_of(ctx)
    cfg = settings.replay
    topo, dem, by_app = load_inputs(
        topology, demands, capacities, weeks or cfg.weeks, cfg.seed if seed is None else seed
    )
    data_dir = Path(settings.data_dir)
    store_path = data_dir / "replay.duckdb"
    data_dir.mkdir(parents=True, exist_ok=True)
    for p in (store_path, store_path.with_suffix(".duckdb.wal")):
        p.unlink(missing_ok=True)
    store_cfg = settings.store.at(store_path)
    store = open_store(store_cfg)
    # the topology beside the store, so `shadowcast forecast` maps forecasts onto its links
    write_node_link(topo, store_path.with_suffix(".topology.json"))
    alert_cfg = settings.alert
    feed = None
    if ipfix is None:
        ipfix = by_app is not None
    try:
        if ipfix:
            from shadowcast.replay.ipfix import feed_via_ipfix

            apps = by_app if by_app is not None else {"": dem.values}
            with _progress() as bar:
                task = bar.add_task("exporting IPFIX to the collector", total=dem.steps)
                feed = feed_via_ipfix(
                    topo, dem, apps, store, progress=lambda n: bar.advance(task, n)
                )
            dem = feed.demands
            by_app = {a: v for a, v in feed.by_app.items() if a} or None
            # Reopen: the collector's writer thread had its own connection to the file.
            store.close()
            store = open_store(store_cfg)
        with _progress() as bar:
            task = bar.add_task(f"replaying {topo.name}", total=dem.steps)
            result = replay(
                topo,
                dem,
                store,
                cfg,
                lambda name, step: make_model(name, horizons=cfg.horizons),
                rule_threshold=alert_cfg.utilisation_threshold,
                rule_within_s=alert_cfg.within_s,
                rule_level=alert_cfg.quantile_level,
                rule_clear_ratio=alert_cfg.clear_ratio,
                notifiers=build_notifiers(alert_cfg),
                by_app=by_app,
                progress=lambda n: bar.advance(task, n),
            )
    finally:
        store.close()
    score = score_alerts(result, result.alerts, alert_cfg.utilisation_threshold, alert_cfg.within_s)
    plot_path = None
    if plot:
        try:
            plot_path = plot_busiest(result, data_dir / "report" / "busiest_links.png")
        except ImportError as exc:  # matplotlib is the `plot` extra
            console.print(f"note: no plot ({install_hint(exc.name or 'matplotlib')})", markup=False)
    report = {
        "topology": topo.name,
        "steps": dem.steps,
        "step_s": dem.step,
        "od_pairs": len(dem.od_pairs),
        "links": len(topo.links),
        "total_mbit": result.total_mbit,
        "seconds": round(result.seconds, 3),
        "store": str(store_path),
        "plot": str(plot_path) if plot_path else None,
        "alerts": score.alerts,
        "alerts_confirmed": score.confirmed,
        "overload_episodes": score.episodes,
        "overload_episodes_alerted": score.detected,
        "alert_lead_s_median": score.lead_s_median,
        "accuracy": accuracy_rows(result),
        "busiest_links": busiest(result),
        "collector": None
        if feed is None
        else {
            "protocol": "ipfix",
            "records_sent": feed.records_sent,
            "packets_sent": feed.packets_sent,
            "records_stored": feed.records_stored,
            "bytes_stored_share": feed.stored_share,
            "decode_errors": feed.decode_errors,
            "socket_drops": feed.socket_drops,
            "seconds": round(feed.seconds, 3),
        },
    }
    if json_out:
        emit_json(report)
        return
    _print_report(out, result, report)


def _print_report(console: Any, result: Any, report: dict[str, Any]) -> None:
    t0, t1 = result.demands.times[0], result.demands.times[-1]
    console.print(
        f"[bold]shadowcast replay[/bold] {report['topology']}: {report['steps']} steps of "
        f"{format_duration(report['step_s'])} ({t0} → {t1}), {report['od_pairs']} OD pairs, "
        f"{report['links']} links, {report['total_mbit']:,.0f} Mbit summed, "
        f"{report['seconds']:.1f} s"
    )
    feed = report["collector"]
    if feed:
        console.print(
            f"collector path: {feed['records_sent']:,} IPFIX flow records in "
            f"{feed['packets_sent']:,} UDP packets → {feed['records_stored']:,} stored "
            f"({feed['bytes_stored_share']:.4%} of bytes), {feed['decode_errors']} decode "
            f"errors, {feed['socket_drops']} socket drops, {feed['seconds']:.1f} s"
        )
    tab = Table(title="Busiest links: now and predicted (peak over the horizon)")
    for col in ("link", "capacity", "now", "replay peak", "predicted", "upper bound"):
        tab.add_column(col, justify="right" if col != "link" else "left")
    for row in report["busiest_links"]:
        pred = row["util_pred_peak"]
        tab.add_row(
            row["link"],
            f"{row['capacity_mbps']:,.0f} Mb/s",
            f"{row['util_now']:.0%}",
            f"{row['util_peak_replay']:.0%}",
            f"{pred:.0%} ({row['horizon']})" if pred is not None else "-",
            f"{row['util_pred_upper']:.0%}" if row["util_pred_upper"] is not None else "-",
        )
    console.print(tab)
    atab = Table(title=f"Capacity alerts ({report['alerts']} raised; latest 12)")
    for col in ("issued", "link", "predicted peak", "crosses in", "severity", "came true"):
        atab.add_column(col)
    util = result.util
    step = result.demands.step
    idx = {n: i for i, n in enumerate(result.link_names)}
    t_first = result.demands.times[0].astype("datetime64[s]")
    for a in result.alerts[-12:]:
        t = int((a.issued - t_first) / np.timedelta64(step, "s"))
        w = max(1, 3600 // step)
        true = bool((util[t + 1 : t + 1 + w, idx[a.subject]] >= a.threshold).any())
        atab.add_row(
            str(a.issued)[:16],
            a.subject,
            f"{a.value:.0%}",
            lead_text(a.lead_s),
            a.severity,
            "yes" if true else "no",
        )
    console.print(atab)
    console.print(
        f"alerts that came true: {report['alerts_confirmed']}/{report['alerts']}; "
        f"overload episodes (≥ 90 %) announced in advance: "
        f"{report['overload_episodes_alerted']}/{report['overload_episodes']}, median lead "
        f"{lead_text(report['alert_lead_s_median'])}"
    )
    ftab = Table(title="Forecast accuracy over the replay (OD level, online)")
    heads = ("model", "horizon", "NMAE", "NMAE persistence", "cover 80", "cover 95")
    for col in (*heads, "link ≤ hi80", "link ≤ hi95"):
        ftab.add_column(col)
    nan = float("nan")
    for r in report["accuracy"]:
        ftab.add_row(
            r["model"],
            r["horizon"],
            f"{r['nmae']:.3f}",
            f"{r['nmae_persistence']:.3f}",
            f"{r.get('coverage_80', nan):.1%}",
            f"{r.get('coverage_95', nan):.1%}",
            f"{r.get('link_upper_coverage_80', nan):.1%}",
            f"{r.get('link_upper_coverage_95', nan):.1%}",
        )
    console.print(ftab)
    console.print(
        "cover L: OD values inside the L % interval; link ≤ hiL: link loads at or below the "
        "link upper bound (nominal 90 % and 97.5 %)"
    )
    console.print(f"store: {report['store']}")
    if report["plot"]:
        console.print(f"plot: {report['plot']}")
    console.print(
        "next: `shadowcast forecast` (links at risk, runout), `shadowcast forecast score`, "
        f"`shadowcast plan --topology {Path(report['store']).with_suffix('.topology.json')} "
        f"--store {report['store']}`"
    )


def _horizons(text: str) -> list[str]:
    hs = [h.strip() for h in text.split(",") if h.strip()]
    for h in hs:
        parse_duration(h)
    return hs


@eval_app.command("forecast")
def eval_forecast(
    ctx: typer.Context,
    demands: Annotated[Path, typer.Option(help="training (or whole) demand series")],
    topology: Annotated[
        Path | None, typer.Option(help="topology file (checks the OD pairs' nodes)")
    ] = None,
    test: Annotated[
        Path | None, typer.Option(help="test series: fit on D, roll through it")
    ] = None,
    horizons: Annotated[str, typer.Option(help="comma-separated, e.g. 15m,1h")] = "15m,1h",
    models: Annotated[
        str, typer.Option(help="comma-separated model names; the first one is 'ours'")
    ] = "auto,persistence,seasonal_naive",
    statsforecast: Annotated[
        int,
        typer.Option(
            help="also backtest statsforecast models on the N largest series, beside "
            "ours and the baselines on the same series (0: off; extra shadowcast-netops[stats])"
        ),
    ] = 0,
    sf_models: Annotated[
        str, typer.Option(help="statsforecast models, e.g. AutoETS,AutoTheta")
    ] = "AutoETS",
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Backtest forecasters online (rolling origin): NMAE, ratios to persistence and
    seasonal naive, pinball loss, interval coverage per level (and per volume decile)."""
    from shadowcast import datasets
    from shadowcast.forecast.evaluate import evaluate
    from shadowcast.records import SeriesFrame
    from shadowcast.units import horizon_steps

    settings = settings_of(ctx)
    topo = datasets.load_topology(topology) if topology else None
    train = SeriesFrame.from_demands(datasets.load_demands(demands, topology=topo))
    test_f = SeriesFrame.from_demands(datasets.load_demands(test, topology=topo)) if test else None
    hs = [horizon_steps(h, train.step) for h in _horizons(horizons)]
    names = [m.strip() for m in models.split(",") if m.strip()]
    levels = settings.replay.levels
    with _progress() as bar:
        task = bar.add_task("backtest", total=None)

        def tick(label: str, done: int, total: int) -> None:
            bar.update(task, description=f"backtest {label}", completed=done, total=total)

        rows = evaluate(train, test_f, hs, names, levels, progress=tick)
        subset: list[dict[str, Any]] = []
        if statsforecast > 0:
            from shadowcast.forecast.external import eval_subset

            frame, frac = train, 0.3
            if test_f is not None:
                frame = SeriesFrame(
                    times=np.concatenate([train.times, test_f.times]),
                    keys=train.keys,
                    values=np.concatenate([train.values, test_f.values]),
                    step=train.step,
                )
                frac = test_f.values.shape[0] / frame.values.shape[0]
            bar.update(task, description=f"statsforecast on {statsforecast} series")
            subset = eval_subset(
                frame,
                hs,
                statsforecast,
                [m.strip() for m in sf_models.split(",") if m.strip()],
                names[0],
                levels=levels,
                test_fraction=frac,
            )
    if json_out:
        emit_json({"rows": rows, "subset": subset})
        return
    _rows_table(out, "Forecast backtest (all series)", rows)
    if subset:
        n = subset[0]["subset_series"]
        _rows_table(out, f"Beside statsforecast, on the {n} largest series", subset)


# the backtest table's columns: (row key, header); every key is in the --json rows
_EVAL_COLUMNS = (
    ("model", "model"),
    ("horizon", "h"),
    ("nmae", "NMAE"),
    ("mase_persistence", "×pers"),
    ("mase_seasonal", "×seas"),
    ("coverage_80", "cov80"),
    ("coverage_95", "cov95"),
    ("pinball", "pinball"),
    ("seconds", "s"),
)


def _rows_table(console: Any, title: str, rows: list[dict[str, Any]]) -> None:
    if not rows:
        console.print("no rows")
        return
    tab = Table(title=title)
    cols = [(k, h) for k, h in _EVAL_COLUMNS if k in rows[0]]
    for _, head in cols:
        left = head in ("model", "h")
        tab.add_column(head, justify="left" if left else "right", no_wrap=head == "model")
    for r in rows:
        tab.add_row(*(f"{r[k]:.3f}" if isinstance(r[k], float) else str(r[k]) for k, _ in cols))
    console.print(tab)
    console.print(
        "×pers / ×seas: the model's absolute error over persistence's / seasonal naive's "
        "on the same points (< 1 beats them); covL: share inside the L % interval"
    )


__all__ = ["eval_app", "replay_cmd"]
