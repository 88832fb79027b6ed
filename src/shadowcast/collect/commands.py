"""``shadowcast collect`` (UDP flow export) and ``shadowcast ingest pcap`` (nfstream)."""

from __future__ import annotations

import functools
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import Progress
from rich.table import Table

from shadowcast.cli_support import console as err
from shadowcast.cli_support import emit_json, out, settings_of
from shadowcast.collect.config import CollectConfig, ListenerConfig
from shadowcast.collect.metrics import CollectSnapshot, make_registry
from shadowcast.collect.pcap import capture_source, ingest_pcaps
from shadowcast.collect.server import CollectServer
from shadowcast.errors import ConfigError
from shadowcast.settings import format_validation_error
from shadowcast.store.config import StoreConfig, open_store

log = logging.getLogger(__name__)

app = typer.Typer(help="Receive NetFlow v5/v9, IPFIX and sFlow v5 over UDP into the store.")
ingest_app = typer.Typer(help="Ingest packet captures through nfstream (nDPI).")


def _settings(ctx: typer.Context) -> tuple[CollectConfig, StoreConfig]:
    settings = settings_of(ctx)
    return settings.collect, settings.store


def _store_config(base: StoreConfig, path: Path | None) -> StoreConfig:
    """The store settings, ``--store`` applied. Unless ``store.threads`` is set, the
    collector's store uses one thread: the workers already use the other cores, and
    DuckDB's parallel insert cost ~17% more CPU per row here."""
    if path is not None:
        base = base.at(path)
    return base if base.threads is not None else base.model_copy(update={"threads": 1})


def _override(cfg: CollectConfig, updates: dict[str, Any]) -> CollectConfig:
    data = cfg.model_dump()
    data.update({k: v for k, v in updates.items() if v is not None})
    try:
        return CollectConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, "the options", "collect")) from None


def _listeners(specs: list[str]) -> list[dict[str, Any]] | None:
    if not specs:
        return None
    out_: list[dict[str, Any]] = []
    for spec in specs:
        proto, _, port = spec.partition("=")
        if not port.isdigit():
            raise ConfigError(f"--listen {spec!r}: expected PROTOCOL=PORT, e.g. ipfix=4739")
        out_.append(ListenerConfig(protocol=proto, port=int(port)).model_dump())
    return out_


def stats_table(snap: CollectSnapshot) -> Table:
    t = Table(title="flow export per exporter")
    cols = [
        "exporter",
        "packets",
        "records",
        "bytes",
        "decode errors",
        "template misses",
        "seq gaps",
        "est. lost records",
        "unknown sampling",
        "invalid records",
    ]
    for c in cols:
        t.add_column(c, justify="left" if c == "exporter" else "right")
    rows = sorted(snap.exporters.items())
    for ex, st in [*rows, ("total", snap.total())]:
        t.add_row(
            ex,
            *(
                f"{v:,}"
                for v in (
                    st.packets,
                    st.records,
                    st.bytes,
                    st.decode_errors,
                    st.template_misses,
                    st.sequence_gaps,
                    st.lost_records_estimate,
                    st.unknown_sampling,
                    st.invalid_records,
                )
            ),
        )
    drops = ", ".join(f"{p}: {n:,}" for p, n in sorted(snap.socket_drops.items()))
    sp = snap.spool
    t.caption = (
        f"socket drops (kernel) per port: {drops or 'n/a'}; stored rows {snap.rows_stored:,} "
        f"in {snap.batches_stored} batches; store errors {snap.store_errors} "
        f"(retries {sp.write_retries}); rows spilled {sp.rows_spilled:,}, "
        f"lost {sp.rows_lost:,}, refused by the store {sp.rows_rejected:,}"
    )
    return t


@app.callback(invoke_without_command=True)
def collect(
    ctx: typer.Context,
    bind: Annotated[str | None, typer.Option(help="listen address (default 0.0.0.0)")] = None,
    listen: Annotated[
        list[str] | None,
        typer.Option(help="PROTOCOL=PORT, repeatable (default netflow=2055 ipfix=4739 sflow=6343)"),
    ] = None,
    workers: Annotated[int | None, typer.Option(help="decoding processes")] = None,
    flush_rows: Annotated[int | None, typer.Option(help="rows per store write")] = None,
    flush_interval: Annotated[float | None, typer.Option(help="max seconds before a write")] = None,
    rcvbuf: Annotated[int | None, typer.Option(help="socket receive buffer, bytes")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Prometheus port (0: off)")] = None,
    interface: Annotated[
        str | None, typer.Option(help="also capture packets live on this interface (nfstream)")
    ] = None,
    duration: Annotated[float | None, typer.Option(help="stop after this many seconds")] = None,
    store: Annotated[Path | None, typer.Option(help="DuckDB file (overrides store.path)")] = None,
    stats: Annotated[bool, typer.Option("--stats", help="print per-exporter accounting")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Listen for flow export until SIGTERM/SIGINT (or --duration); flush everything on exit."""
    if ctx.invoked_subcommand is not None:
        return
    base, store_base = _settings(ctx)
    cfg = _override(
        base,
        {
            "bind": bind,
            "listeners": _listeners(listen or []),
            "workers": workers,
            "flush_rows": flush_rows,
            "flush_interval_s": flush_interval,
            "rcvbuf_bytes": rcvbuf,
            "metrics_port": metrics_port,
        },
    )
    st = open_store(_store_config(store_base, store).collecting())
    sources = []
    if interface:
        sources.append(
            functools.partial(
                capture_source, interface, cfg.flush_interval_s, cfg.capture_idle_timeout_s
            )
        )
    server = CollectServer(cfg, st, extra_sources=sources)
    try:
        ports = server.bind()
        server.install_signal_handlers()
        http = None
        if cfg.metrics_port:
            from prometheus_client import start_http_server

            http = start_http_server(
                cfg.metrics_port, cfg.metrics_bind, registry=make_registry(server.snapshot)
            )

        def ready(p: dict[int, str]) -> None:
            for port, proto in p.items():
                err.print(f"listening udp {cfg.bind}:{port} ({proto})", highlight=False)
            err.print(f"collector ready, {cfg.workers} workers", highlight=False)
            sys.stderr.flush()

        t0 = time.monotonic()
        snap = server.serve(duration=duration, on_ready=ready)
        if http is not None:
            http[0].shutdown()
    finally:
        st.close()
    if json_out:
        doc: dict[str, Any] = {"listeners": {str(p): v for p, v in ports.items()}}
        doc["duration_s"] = round(time.monotonic() - t0, 3)
        doc.update(snap.to_json())
        emit_json(doc)
    elif stats:
        out.print(stats_table(snap))
    else:
        total = snap.total()
        err.print(
            f"stopped: {total.packets:,} packets, {total.records:,} records, "
            f"{snap.rows_stored:,} rows stored",
            highlight=False,
        )
    for failure in server.failures:
        err.print(f"[red]error:[/red] {failure}")
    if snap.store_errors and not (snap.rows_lost or snap.spool.rows_rejected):
        err.print(
            f"[yellow]warning:[/yellow] {snap.store_errors} store writes failed and were "
            "retried; nothing was lost",
            highlight=False,
        )
    if snap.rows_lost or snap.spool.rows_rejected:
        err.print(
            f"[red]error:[/red] {snap.rows_lost:,} rows lost (write buffer full), "
            f"{snap.spool.rows_rejected:,} refused by the store",
            highlight=False,
        )
    if snap.rows_lost or snap.spool.rows_rejected or server.failures:
        raise typer.Exit(1)


@ingest_app.command("pcap")
def ingest_pcap(
    ctx: typer.Context,
    files: Annotated[list[Path], typer.Argument(help="pcap or pcapng files")],
    splt: Annotated[int, typer.Option(help="packets in the SPLT features (max 10)")] = 10,
    store: Annotated[Path | None, typer.Option(help="DuckDB file (overrides store.path)")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Meter captures with nfstream: flows (app and category from nDPI) + flow_features."""
    if not 1 <= splt <= 10:
        raise ConfigError(f"--splt must be between 1 and 10, not {splt}")
    _, store_base = _settings(ctx)
    st = open_store(_store_config(store_base, store))
    try:
        with Progress(console=err, transient=True, disable=json_out) as progress:
            task = progress.add_task("metering", total=len(files))

            def step(path: Path, n: int) -> None:
                progress.update(task, advance=1, description=f"{path.name}: {n} flows")

            res = ingest_pcaps(files, st, splt, on_file=step)
    finally:
        st.close()
    if json_out:
        emit_json(
            {
                "files": res.files,
                "flows": res.flows,
                "flow_rows": res.flow_rows,
                "feature_rows": res.feature_rows,
                "seconds": round(res.seconds, 3),
                "flows_per_s": round(res.flows / res.seconds, 1) if res.seconds else 0.0,
                "errors": res.errors,
            }
        )
    else:
        out.print(
            f"{res.files} files, {res.flows:,} flows -> {res.flow_rows:,} flow rows, "
            f"{res.feature_rows:,} feature rows in {res.seconds:.1f} s",
            highlight=False,
        )
        for path, why in res.errors.items():
            err.print(f"[red]error[/red] {path}: {why}", highlight=False)
    if res.errors:
        raise typer.Exit(1)
