"""``shadowcast replay`` and ``shadowcast eval``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from shadowcast.cli_support import console, emit_json, install_hint, out, settings_of
from shadowcast.replay.evals import eval_alerts
from shadowcast.units import format_duration, parse_duration

eval_app = typer.Typer(
    help="Evaluate forecasters and traffic engineering on a series.", no_args_is_help=True
)
eval_app.command("alerts")(eval_alerts)


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
    capacity_scale: Annotated[
        str,
        typer.Option(
            help="multiply every capacity: a factor, or 'auto' (the optimal routing's p95 "
            "max utilisation becomes 0.9, as `eval te` does) for real matrices whose links "
            "dwarf their demand"
        ),
    ] = "1",
    weeks: Annotated[float | None, typer.Option(help="synthetic replay length")] = None,
    seed: Annotated[int | None, typer.Option(help="synthetic seed")] = None,
    mode: Annotated[str, typer.Option(help="the service's mode: observe | advise | auto")] = "auto",
    resume: Annotated[
        bool, typer.Option(help="continue a stopped replay from its store and checkpoint")
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
    plot: Annotated[bool, typer.Option(help="write the PNG plot")] = True,
    ipfix: Annotated[
        bool,
        typer.Option(
            "--ipfix/--direct",
            help="send the traffic as IPFIX over loopback UDP through the service's "
            "collector (default), or hand the flow records straight to its intake",
        ),
    ] = True,
) -> None:
    """Replay traffic through the living service on a simulated clock, beside doing nothing.

    A traffic source (the seeded synthetic backbone, or --topology/--demands) drives a
    simulated network. Its routers export what it carries to the service, which measures,
    forecasts, alerts, plans and acts (mode auto) exactly as `shadowcast run` does, on the
    same network that the no-action baseline replays beside it. The report compares the
    two (overload link-minutes, excess, delayed and lost traffic) and scores the alerts
    and forecasts. The replay writes to its own store (replaced unless --resume).
    """
    import signal
    import threading

    from shadowcast.datasets.topology import write_node_link
    from shadowcast.errors import ConfigError
    from shadowcast.replay.driver import CHECKPOINT, ReplayRun, run_replay
    from shadowcast.replay.report import build_report, plot_busiest
    from shadowcast.replay.source import capacity_scale as capacity_scale_of
    from shadowcast.replay.source import load_source
    from shadowcast.store.replay_target import open_target, replay_target, reset
    from shadowcast.store.shared import SharedStore

    settings = settings_of(ctx)
    cfg = settings.replay
    if mode not in ("observe", "advise", "auto"):
        raise ConfigError(f"--mode: {mode!r} is not observe, advise or auto")
    source = load_source(
        topology, demands, capacities, weeks or cfg.weeks, cfg.seed if seed is None else seed
    )
    scale = capacity_scale_of(capacity_scale, source)
    if scale != 1.0:
        source = source.scaled(scale)
    data_dir = Path(settings.data_dir)
    # DuckDB: data_dir/replay.duckdb; clickhouse: <database>_replay on the same servers
    target = replay_target(settings.store, data_dir)
    store_path = target.path
    state_dir = data_dir / "replay-state"
    data_dir.mkdir(parents=True, exist_ok=True)
    if not resume:
        import shutil

        reset(target)
        shutil.rmtree(state_dir, ignore_errors=True)
    elif not (state_dir / CHECKPOINT).is_file():
        raise ConfigError(f"--resume: no replay checkpoint in {state_dir}")
    store = SharedStore(open_target(target))
    # the topology beside the store, so `shadowcast forecast` maps forecasts onto its links
    write_node_link(source.topology, store_path.with_suffix(".topology.json"))
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
    run: ReplayRun | None = None
    try:
        with _progress() as bar:
            task = bar.add_task(f"replaying {source.name}", total=source.steps)
            run = run_replay(
                settings,
                source,
                store,
                state_dir,
                ipfix=ipfix,
                mode=mode,
                resume=resume,
                progress=lambda n: bar.advance(task, n),
                stop=stop,
            )
            bar.update(task, completed=run.state.next_t)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        if run is not None:
            run.service.s.writer.close()
        store.close()
    assert run is not None
    report = build_report(
        run, settings.alert.utilisation_threshold, settings.alert.within_s, target.label
    )
    report["capacity_scale"] = scale
    plot_path = None
    if plot and not run.interrupted:
        plot_path = plot_busiest(run, data_dir / "report" / "busiest_links.png")
        if plot_path is None:  # matplotlib is the `plot` extra
            console.print(f"note: no plot ({install_hint('matplotlib')})", markup=False)
    report["plot"] = str(plot_path) if plot_path else None
    if json_out:
        emit_json(report)
    else:
        _print_report(out, report)
    if run.interrupted:
        raise typer.Exit(code=130)


def _print_report(console: Any, report: dict[str, Any]) -> None:
    console.print(
        f"[bold]shadowcast replay[/bold] {report['source']}: {report['steps']} of "
        f"{report['steps_total']} steps of {format_duration(report['step_s'])}, "
        f"{report['od_pairs']} OD pairs, {report['links']} links, kinds "
        f"{', '.join(report['kinds'])}, {report['total_mbit']:,.0f} Mbit summed, "
        f"{report['seconds']:.1f} s (service {report['service_seconds']:.1f} s)"
        + (f", capacities x{report['capacity_scale']:.3g}" if report["capacity_scale"] != 1 else "")
    )
    if report["interrupted"]:
        console.print("[yellow]interrupted[/yellow]: resume with `shadowcast replay --resume`")
    feed = report["collector"]
    if feed:
        console.print(
            f"collector: {feed['records_sent']:,} IPFIX flow records in "
            f"{feed['packets_sent']:,} UDP packets from {feed['exporters']} exporters -> "
            f"{feed['records_stored']:,} stored, {feed['decode_errors']} decode errors, "
            f"{feed['socket_drops']} socket drops"
        )
    r = report["rollup"]
    console.print(
        f"rollup: {r['mapped_records']:,} of {r['records']:,} records mapped to router pairs "
        f"({r['mapped_share']:.2%} of bytes); unmapped {r['unmapped_records']}"
    )
    loop = report["closed_loop"]
    ctab = Table(title="Closed loop: the same traffic without and with shadowcast acting")
    for col in ("", "no action", "shadowcast"):
        ctab.add_column(col, justify="right" if col else "left")
    b, a = loop["baseline"], loop["acting"]
    for key, label in (
        ("overload_link_minutes_100", "link-minutes above 100 %"),
        ("overload_link_minutes_90", "link-minutes at or above 90 %"),
        ("excess_mbit", "excess Mbit (not carried)"),
        ("delayed_mbit", "delayed Mbit (shaped, sent later)"),
        ("lost_mbit", "lost Mbit (shaper gave up)"),
        ("max_utilisation", "highest utilisation"),
        ("links_overloaded", "links ever above 100 %"),
    ):
        fmt = "{:.0%}" if key == "max_utilisation" else "{:,.0f}"
        ctab.add_row(label, fmt.format(b[key]), fmt.format(a[key]))
    console.print(ctab)
    ratio = loop["overload_ratio"]
    console.print(
        f"actions: {a['plans_applied']} plans applied, {a['path_switches']} OD path switches, "
        f"{a['shaping_changes']} shaping limits, {a['reservations']} reservations, "
        f"{a['rollbacks']} rollbacks; overload with shadowcast = "
        + (f"{ratio:.2f} x no action" if ratio is not None else "none either way")
    )
    console.print(f"[dim]{loop['what_happens_above_capacity']}[/dim]")
    if report["actions"]:
        dtab = Table(title="What the service did (latest 10 plans)")
        for col in ("time", "action", "predicted peak", "max util now -> planned", "changes"):
            dtab.add_column(col)
        for a in report["actions"][-10:]:
            mlu = (
                f"{a['mlu_current']:.0%} -> {a['mlu_planned']:.0%}"
                if a["mlu_current"] is not None
                else "-"
            )
            what = f"{a['changes']} moves, {a['shaping']} limits, {a['reservations']} reservations"
            dtab.add_row(a["time"][:16], a["action"], f"{a['predicted_peak']:.0%}", mlu, what)
        console.print(dtab)
        for line in report["actions"][-1]["reasons"][:3]:
            console.print(f"  [dim]{line}[/dim]")
    tab = Table(title="Busiest links: now and predicted (peak over the horizon)")
    for col in ("link", "capacity", "now", "replay peak", "no-action peak", "predicted", "upper"):
        tab.add_column(col, justify="right" if col != "link" else "left")
    for row in report["busiest_links"]:
        pred = row["util_pred_peak"]
        tab.add_row(
            row["link"],
            f"{row['capacity_mbps']:,.0f} Mb/s",
            f"{row['util_now']:.0%}",
            f"{row['util_peak_replay']:.0%}",
            f"{row['util_peak_baseline']:.0%}",
            f"{pred:.0%} ({row['horizon']})" if pred is not None else "-",
            f"{row['util_pred_upper']:.0%}" if row["util_pred_upper"] is not None else "-",
        )
    console.print(tab)
    if report["alerts"] == 0 and report["actions"]:
        console.print(
            "alerts: none raised: the service acted before any link was predicted at or above "
            "the alert threshold under the routing in force (see the plans above); "
            f"{report['overload_episodes_without_action']} overload episodes (>= 90 %) would "
            "have happened without action"
        )
    else:
        console.print(
            f"alerts: {report['alerts']} raised; {report['alerts_confirmed_without_action']} "
            f"would have come true without action, {report['alerts_confirmed']} did with it; "
            f"overload episodes (>= 90 %) without action announced in advance: "
            f"{report['overload_episodes_without_action_alerted']}/"
            f"{report['overload_episodes_without_action']}, median lead "
            f"{_lead(report['alert_lead_s_median'])}"
        )
    ftab = Table(title=f"Forecast accuracy ({report['model']}, online, OD x class series)")
    heads = ("horizon", "NMAE", "NMAE persistence", "x pers", "cover 80", "cover 95")
    for col in (*heads, "link <= hi80", "link <= hi95"):
        ftab.add_column(col)
    nan = float("nan")
    for r in report["accuracy"]:
        ftab.add_row(
            r["horizon"],
            f"{r['nmae']:.3f}",
            f"{r['nmae_persistence']:.3f}",
            f"{r['ratio_to_persistence']:.3f}",
            f"{r.get('coverage_80', nan):.1%}",
            f"{r.get('coverage_95', nan):.1%}",
            f"{r.get('link_upper_coverage_80', nan):.1%}",
            f"{r.get('link_upper_coverage_95', nan):.1%}",
        )
    console.print(ftab)
    console.print(
        "cover L: OD values inside the L % interval; link <= hiL: link loads at or below the "
        "link upper bound (nominal 90 % and 97.5 %)"
    )
    console.print(f"store: {report['store']}")
    if report["plot"]:
        console.print(f"plot: {report['plot']}")
    console.print(
        "next: `shadowcast forecast`, `shadowcast forecast score`, "
        f"`shadowcast plan --topology {Path(report['store']).with_suffix('.topology.json')} "
        f"--store {report['store']}`"
    )


def _lead(seconds: float) -> str:
    return format_duration(int(seconds)) if seconds else "-"


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
        Path | None,
        typer.Option(
            help="topology file (checks the OD pairs' nodes; gives coordinates and the "
            "path capacity and headroom inputs)"
        ),
    ] = None,
    capacities: Annotated[
        Path | None, typer.Option("--capacities-from", help="take capacities from this file")
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
    ablate: Annotated[
        bool,
        typer.Option(
            "--ablate",
            help="also backtest the first model without each input group it reads "
            "(geography, capacity, shadow, calendar, cross_series) and report what each "
            "contributes",
        ),
    ] = False,
    ablate_seeds: Annotated[
        int,
        typer.Option(
            min=1,
            max=32,
            help="with --ablate: backtest each variant with this many seeds and report the "
            "mean and its spread (models that train from a random start differ by seed)",
        ),
    ] = 1,
    json_out: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Backtest forecasters online (rolling origin): NMAE, ratios to persistence and
    seasonal naive, pinball loss, interval coverage per level (and per volume decile).
    The series carry their inputs: geography (the topology's or the demand file's
    coordinates), path capacity and headroom (with a topology: the demands routed over it)."""
    from shadowcast.forecast.evaluate import evaluate
    from shadowcast.forecast.frames import eval_frames
    from shadowcast.records import SeriesFrame
    from shadowcast.units import horizon_steps

    settings = settings_of(ctx)
    train, test_f = eval_frames(demands, test, topology, capacities, settings)
    hs = [horizon_steps(h, train.step) for h in _horizons(horizons)]
    names = [m.strip() for m in models.split(",") if m.strip()]
    levels = settings.replay.levels
    with _progress() as bar:
        task = bar.add_task("backtest", total=None)

        def tick(label: str, done: int, total: int) -> None:
            bar.update(task, description=f"backtest {label}", completed=done, total=total)

        rows = evaluate(train, test_f, hs, names, levels, progress=tick)
        ablation: list[dict[str, Any]] = []
        if ablate:
            from shadowcast.forecast.ablate import ablate as run_ablation

            ablation = run_ablation(
                train, test_f, hs, names[0], levels, progress=tick, seeds=ablate_seeds
            )
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
        doc: dict[str, Any] = {"rows": rows, "subset": subset, "inputs": _inputs(train)}
        if ablate:
            doc["ablation"] = ablation
        emit_json(doc)
        return
    _rows_table(out, "Forecast backtest (all series)", rows)
    if subset:
        n = subset[0]["subset_series"]
        _rows_table(out, f"Beside statsforecast, on the {n} largest series", subset)
    if ablate:
        from shadowcast.forecast.frames import ablation_table

        ablation_table(out, ablation)


def _inputs(frame: Any) -> dict[str, list[str]]:
    return {"meta": sorted(frame.meta), "exog": sorted(frame.exog)}


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
