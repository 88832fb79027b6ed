"""``shadowcast profile ...``: ingest, top, show, train."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet
import typer
from rich.progress import Progress
from rich.table import Table

from shadowcast.cli_support import console, emit_json, error_exit, settings_of
from shadowcast.cli_support import out as stdout
from shadowcast.errors import ConfigError, DataError, ShadowcastError
from shadowcast.profile.config import ProfileConfig
from shadowcast.units import parse_duration

pq: Any = pyarrow.parquet

app = typer.Typer(help="Application behaviour profiles: who uses what, where, how.")

JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object")]
StoreOpt = Annotated[
    Path | None, typer.Option("--store", help="a DuckDB store file (default: the settings' store)")
]


def _config(ctx: typer.Context) -> ProfileConfig:
    return settings_of(ctx).profile


def _open(ctx: typer.Context, path: Path | None, *, write: bool = False) -> Any:
    """The store: the settings' (or ``--store``); read through a running service's socket
    when it holds the file."""
    from shadowcast.store.config import open_store
    from shadowcast.store.remote import open_for_reading

    settings = settings_of(ctx)
    cfg = settings.store if path is None else settings.store.at(path)
    if write:
        return open_store(cfg)
    return open_for_reading(cfg, settings.data_dir)


def _duration(text: str) -> timedelta:
    try:
        return timedelta(seconds=parse_duration(text))
    except ConfigError as exc:
        raise typer.BadParameter(f"--last: {exc}") from None


def _window(cfg: ProfileConfig, st: Any, last: str, now: datetime | None) -> tuple[str, Any]:
    from shadowcast.profile.series import SeriesBuilder
    from shadowcast.profile.storage import SeriesStore

    span = _duration(last)
    # the finest tier that still holds the whole window
    tiers = sorted(cfg.tiers.items(), key=lambda kv: kv[1].grain_s)
    tier = next((n for n, t in tiers if t.retention_s >= span.total_seconds()), tiers[-1][0])
    store = SeriesStore(st, cfg.tiers, SeriesBuilder())
    if now is None:  # measured back from the newest data (replays have old timestamps)
        now = store.newest(tier) or datetime.now(UTC)
    return tier, store.read(tier, now - span, now)


@app.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="pcap/pcapng (nfstream) or flow parquet")],
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Profile flows from captures or FLOW_SCHEMA parquet files into the store's behaviour
    series."""
    from shadowcast.profile.pcap import flows_from_pcap
    from shadowcast.profile.pipeline import ProfilePipeline

    st = None
    try:
        st = _open(ctx, store, write=True)
        pipe = ProfilePipeline(_config(ctx), store=st)
        flows = series_rows = events = 0
        flow_bytes = series_bytes = 0
        with Progress(console=console, transient=True) as bar:
            task = bar.add_task("profiling", total=len(paths))
            for p in paths:
                if p.suffix in (".pcap", ".pcapng", ".cap"):
                    t = flows_from_pcap(p)
                else:
                    try:
                        t = pq.read_table(p)
                    except (OSError, pa.ArrowException) as exc:
                        raise DataError(f"{p}: not a flow parquet file: {exc}") from exc
                res = pipe.process(t)
                flows += t.num_rows
                flow_bytes += int(pipe.builder.estimated_bytes(res.flows).sum())
                app_rows = np.asarray(res.series.column("kind").to_numpy(False)) == "app"
                series_bytes += int(
                    np.asarray(res.series.column("bytes").to_numpy())[app_rows].sum()
                )
                series_rows += res.series.num_rows
                events += len(res.events)
                bar.advance(task)
    except ShadowcastError as exc:
        raise error_exit(exc) from None
    finally:
        if st is not None:
            st.close()
    result = {
        "flows": flows,
        "flow_bytes": flow_bytes,
        "series_rows": series_rows,
        "series_bytes": series_bytes,
        "path_events": events,
        "by_layer": pipe.profiler.stats.by_layer,
        "unknown_exporters": pipe.profiler.locator.stats.unknown_exporters,
        "geoip_errors": pipe.profiler.locator.stats.geoip_errors,
    }
    if as_json:
        emit_json(result)
    else:
        stdout.print(result)


@app.command("top")
def top_cmd(
    ctx: typer.Context,
    by: Annotated[str, typer.Option("--by", help="app | category | site-pair | edge-pair")] = "app",
    last: Annotated[str, typer.Option("--last", help="window, e.g. 15m, 1h, 7d")] = "1h",
    limit: Annotated[int, typer.Option("--limit")] = 20,
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Biggest applications, categories or site pairs over the last window."""
    from shadowcast.profile.query import BY, top
    from shadowcast.profile.series import SeriesBuilder

    if by not in BY:
        raise typer.BadParameter(f"--by must be one of {sorted(BY)}")
    st = None
    try:
        cfg = _config(ctx)
        st = _open(ctx, store)
        tier, series = _window(cfg, st, last, None)
        rows = top(series, by, SeriesBuilder(error_z=cfg.error_z), limit, cfg.taxonomy)
    except ShadowcastError as exc:
        raise error_exit(exc) from None
    finally:
        if st is not None:
            st.close()
    if as_json:
        emit_json({"by": by, "last": last, "tier": tier, "rows": rows})
        return
    table = Table(title=f"top by {by}, last {last} ({tier} tier)")
    keys = [k for k in (rows[0] if rows else {}) if isinstance(rows[0][k], str)]
    for k in [*keys, "Mbit/s avg", "± Mbit/s", "Mbit/s peak", "transfers/min", "unclassified"]:
        table.add_column(k)
    for r in rows:
        table.add_row(
            *[str(r[k]) for k in keys],
            f"{r['bps_avg'] / 1e6:.3f}",
            f"{r['bps_err'] / 1e6:.3f}",
            f"{r['bps_peak'] / 1e6:.3f}",
            f"{r['transfers_per_min']:.2f}",
            f"{100 * r['unclassified_share']:.1f} %",
        )
    stdout.print(table)


@app.command()
def show(
    ctx: typer.Context,
    application: Annotated[str, typer.Argument(help="application name, e.g. NetFlix")],
    last: Annotated[str, typer.Option("--last")] = "1h",
    store: StoreOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """One application's series and behaviour summary."""
    from shadowcast.profile.query import app_summary
    from shadowcast.profile.series import SeriesBuilder

    st = None
    try:
        cfg = _config(ctx)
        st = _open(ctx, store)
        tier, series = _window(cfg, st, last, None)
        summary = app_summary(series, application, SeriesBuilder(error_z=cfg.error_z), cfg.taxonomy)
    except ShadowcastError as exc:
        raise error_exit(exc) from None
    finally:
        if st is not None:
            st.close()
    summary["tier"] = tier
    if as_json:
        emit_json(summary)
        return
    if not summary["found"]:
        console.print(f"no series for application {application!r} in the last {last}")
        raise typer.Exit(1)
    brief = {k: v for k, v in summary.items() if k != "series"}
    stdout.print(brief)


@app.command()
def train(
    pcaps: Annotated[Path, typer.Option("--pcaps", help="folder of labelled captures")],
    out: Annotated[Path, typer.Option("--out", help="model file to write")],
    seed: Annotated[int, typer.Option("--seed")] = 7,
    holdout: Annotated[float, typer.Option("--holdout", help="share of FILES held out")] = 0.0,
    use_ports: Annotated[bool, typer.Option("--use-ports/--no-ports")] = False,
    flows: Annotated[
        Path | None, typer.Option("--flows", help="operator-labelled flows (parquet, 'label')")
    ] = None,
    lab: Annotated[
        Path | None, typer.Option("--lab", help="lab generator flows to add (lab gen-training)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Train the behavioural classifier (nDPI labels from captures plus lab generator
    flows, or your own flows)."""
    from shadowcast.profile.appmap import AppMap
    from shadowcast.profile.classifier import CLASSES, BehaviourModel
    from shadowcast.profile.training import combine, file_split, load_lab, load_labelled, macro_f1

    try:
        if flows is not None:
            t = pq.read_table(flows)
            if "label" not in t.column_names:
                raise DataError(f"{flows}: needs a 'label' column with a category per flow")
            labels = np.asarray(t.column("label").to_pylist(), dtype=object)
            files = np.asarray(
                t.column("file").to_pylist() if "file" in t.column_names else ["x"] * t.num_rows,
                dtype=object,
            )
        else:
            with Progress(console=console, transient=True) as bar:
                task = bar.add_task("reading captures", total=None)
                got = load_labelled(pcaps, AppMap.load(), lambda n: bar.update(task, description=n))
            if lab is not None:
                got = combine(got, load_lab(lab))
            t, labels, files = got.flows, got.labels, got.files
        result: dict[str, Any] = {"flows": int(t.num_rows), "seed": seed}
        if holdout > 0:
            tr, te = file_split(files, holdout, seed)
            model = BehaviourModel.train(
                t.filter(pa.array(tr)), labels[tr], seed=seed, use_ports=use_ports, groups=files[tr]
            )
            keep = te & np.isin(labels, CLASSES)
            pred = model.predict(t.filter(pa.array(keep)))
            result.update(
                holdout_files=len(set(files[te].tolist())),
                holdout_flows=int(keep.sum()),
                holdout_macro_f1=macro_f1(labels[keep], pred.category),
            )
        model = BehaviourModel.train(t, labels, seed=seed, use_ports=use_ports, groups=files)
        model.save(out)
        result["out"] = str(out)
    except (ShadowcastError, OSError, pa.ArrowException) as exc:
        raise error_exit(
            exc if isinstance(exc, ShadowcastError) else ConfigError(str(exc))
        ) from None
    if as_json:
        emit_json(result)
    else:
        stdout.print(result)
