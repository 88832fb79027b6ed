"""``shadowcast store stats``, ``shadowcast store check`` and ``shadowcast store retain``."""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from shadowcast.cli_support import emit_json, out, settings_of
from shadowcast.errors import ConfigError
from shadowcast.store.base import Store
from shadowcast.store.config import StoreConfig, apply_retention, open_store
from shadowcast.store.schema import TABLES

log = logging.getLogger(__name__)

app = typer.Typer(help="Inspect and maintain the store.", no_args_is_help=True)

PathOpt = Annotated[
    Path | None, typer.Option("--path", help="a DuckDB store file (default: from settings)")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object")]


def _config(ctx: typer.Context, path: Path | None) -> StoreConfig:
    base = settings_of(ctx).store
    return base.at(path) if path is not None else base


def _open_existing(cfg: StoreConfig, *, read_only: bool = False) -> Store:
    """The store at ``cfg``; with ``read_only``, through a running service's socket when
    the service holds the file."""
    from shadowcast.store.remote import open_for_reading

    if cfg.backend == "duckdb" and cfg.resolved_path() != ":memory:":
        p = Path(cfg.resolved_path())
        if not p.is_file():
            raise ConfigError(f"no store at {p}")
    return open_for_reading(cfg) if read_only else open_store(cfg)


def _iso(ts: object) -> str | None:
    return ts.isoformat() if isinstance(ts, datetime) else None


def _problems(items: list[Any]) -> list[dict[str, Any]]:
    return [asdict(p) for p in items]


def store_stats(store: Store, cfg: StoreConfig) -> dict[str, Any]:
    """Rows and time range per table, damaged segment files (footers checked; their rows
    are not counted), and the file size of a DuckDB store."""
    tables: dict[str, Any] = {}
    check = getattr(store, "check_segments", None)
    damaged = _problems(check(full=False)) if callable(check) else []
    time_range = getattr(store, "time_range", None)
    for name in TABLES:
        lo = hi = None
        if callable(time_range):
            lo, hi = time_range(name)
        tables[name] = {"rows": store.count(name), "first": _iso(lo), "last": _iso(hi)}
    size = None
    path = cfg.resolved_path()
    if cfg.backend == "duckdb" and path != ":memory:":
        files = [Path(path), Path(path + ".wal")]
        segments = Path(path + ".segments")  # flows as Parquet (and fresh Arrow) segments
        if segments.is_dir():
            files += list(segments.rglob("*.parquet")) + list(segments.rglob("*.arrow"))
        size = sum(f.stat().st_size for f in files if f.is_file())
    where = repr(store) if cfg.backend == "clickhouse" else path  # servers and database
    return {
        "backend": cfg.backend,
        "path": where,
        "file_bytes": size,
        "tables": tables,
        "damaged_segments": damaged,
    }


@app.command("stats")
def stats(ctx: typer.Context, path: PathOpt = None, as_json: JsonOpt = False) -> None:
    """Rows per table, time range and file size (through the running service when it holds
    the store)."""
    cfg = _config(ctx, path)
    store = _open_existing(cfg, read_only=True)
    try:
        result = store_stats(store, cfg)
    finally:
        store.close()
    if as_json:
        emit_json(result)
        return
    table = Table("table", "rows", "first", "last", title=f"store {result['path']}")
    for name, t in result["tables"].items():
        table.add_row(name, f"{t['rows']:,}", t["first"] or "-", t["last"] or "-")
    out.print(table)
    if result["file_bytes"] is not None:
        out.print(f"file size: {result['file_bytes'] / 1e6:,.1f} MB")
    for p in result["damaged_segments"]:
        out.print(
            f"[red]damaged segment[/red] {p['table']}/{p['file']} ({p['rows']:,} rows, "
            f"left out): {p['reason']}; run `shadowcast store check --repair`"
        )


@app.command("check")
def check(
    ctx: typer.Context,
    path: PathOpt = None,
    repair: Annotated[
        bool,
        typer.Option(
            "--repair",
            help="rewrite the readable rows of each damaged segment (or drop it from the "
            "manifest) and move the file into <store>.segments/quarantine/",
        ),
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Read every segment file in full (page checksums verified); exit 1 if any is damaged
    and not repaired."""
    cfg = _config(ctx, path)
    store = _open_existing(cfg)
    try:
        inspect = getattr(store, "check_segments", None)
        mend = getattr(store, "repair_segments", None)
        if not callable(inspect) or not callable(mend):
            result: dict[str, Any] = {"path": cfg.resolved_path(), "damaged": [], "repaired": []}
        else:
            damaged = _problems(inspect(full=True))
            repaired = _problems(mend()) if repair and damaged else []
            result = {"path": cfg.resolved_path(), "damaged": damaged, "repaired": repaired}
    finally:
        store.close()
    if as_json:
        emit_json(result)
    elif not result["damaged"]:
        out.print(f"[green]ok[/green] {result['path']}: every segment file reads")
    else:
        table = Table("table", "segment", "rows", "problem", "repair", title="damaged segments")
        done = {(r["table"], r["file"]): r for r in result["repaired"]}
        for p in result["damaged"]:
            r = done.get((p["table"], p["file"]))
            fix = f"{r['action']}, {r['kept']:,} rows kept" if r else "-"
            table.add_row(p["table"], p["file"], f"{p['rows']:,}", p["reason"], fix)
        out.print(table)
    if result["damaged"] and not result["repaired"]:
        raise typer.Exit(1)


@app.command("retain")
def retain(
    ctx: typer.Context,
    path: PathOpt = None,
    days: Annotated[
        float | None,
        typer.Option(
            help="delete rows older than this in every table (default: per table "
            "from store.retention_days)",
            min=0.0,
        ),
    ] = None,
    now: Annotated[datetime | None, typer.Option(help="reference time (UTC; default: now)")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete rows older than the retention period (one transaction)."""
    cfg = _config(ctx, path)
    ref = (now.replace(tzinfo=UTC) if now.tzinfo is None else now) if now else datetime.now(UTC)
    store = _open_existing(cfg)
    try:
        if days is not None:
            deleted = store.retain(timedelta(days=days), ref)
        else:
            with store.transaction():
                deleted = apply_retention(store, cfg, ref)
    finally:
        store.close()
    result = {"path": cfg.resolved_path(), "now": ref.isoformat(), "deleted": deleted}
    if as_json:
        emit_json(result)
        return
    table = Table("table", "rows deleted", title=f"retention at {ref.isoformat()}")
    for name, n in deleted.items():
        table.add_row(name, f"{n:,}")
    out.print(table)


# -- schema migrations and copies between backends (ClickHouse) -------------------------------


def _spec_config(ctx: typer.Context, spec: str) -> StoreConfig:
    """A store named on the command line: ``duckdb:PATH``, ``clickhouse`` (settings'
    store.clickhouse) or ``clickhouse:DATABASE``."""
    base = _config(ctx, None)
    kind, _, arg = spec.partition(":")
    if kind == "duckdb" and arg:
        return base.model_copy(update={"backend": "duckdb", "path": str(Path(arg).resolve())})
    if kind == "clickhouse":
        ch = base.clickhouse.model_copy(update={"database": arg}) if arg else base.clickhouse
        return StoreConfig.model_validate(
            {**base.model_dump(), "backend": "clickhouse", "clickhouse": ch.model_dump()}
        )
    raise ConfigError(
        f"bad store {spec!r}: expected duckdb:PATH, clickhouse or clickhouse:DATABASE"
    )


@app.command("migrate")
def migrate(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Create or upgrade the store's schema (idempotent; ClickHouse: on every shard)."""
    cfg = _config(ctx, None)
    servers: dict[str, Any] = {}
    if cfg.backend == "clickhouse":
        from shadowcast.store.clickhouse import ClickHouseStore

        with ClickHouseStore.from_config(cfg, to_migrate=True) as ch:
            servers = ch.migrate(ttl=True)
    else:
        open_store(cfg).close()  # DuckDB and memory stores create and upgrade when opened
    result = {"backend": cfg.backend, "servers": servers}
    if as_json:
        emit_json(result)
        return
    table = Table("server", "version", "created", "columns added", title="store migrate")
    for server, r in servers.items():
        made = ", ".join(r["created"]) or "-"
        table.add_row(
            server, f"{r['version_before']} -> {r['version']}", made, str(len(r["added_columns"]))
        )
    out.print(table if servers else f"{cfg.backend} store: schema up to date")


@app.command("copy")
def copy(
    ctx: typer.Context,
    source: Annotated[str, typer.Option("--from", help="duckdb:PATH, clickhouse[:DATABASE]")],
    dest: Annotated[str, typer.Option("--to", help="clickhouse[:DATABASE] or duckdb:PATH")],
    table: Annotated[list[str] | None, typer.Option(help="only these tables")] = None,
    window_hours: Annotated[float, typer.Option(help="rows read per time window", min=0.01)] = 6.0,
    as_json: JsonOpt = False,
) -> None:
    """Copy every table from one store to another, checking row counts and sums."""
    from shadowcast.store.clickhouse_copy import copy_store

    src_cfg, dst_cfg = _spec_config(ctx, source), _spec_config(ctx, dest)
    src = _open_existing(src_cfg)
    try:
        dst = open_store(dst_cfg)
        try:
            report = copy_store(src, dst, table, window=timedelta(hours=window_hours))
        finally:
            dst.close()
    finally:
        src.close()
    result = {
        "from": source,
        "to": dest,
        "tables": {r.table: {"rows": r.rows, "checked": r.ok} for r in report},
    }
    if as_json:
        emit_json(result)
        return
    out_table = Table("table", "rows", "checked", title=f"store copy {source} -> {dest}")
    for r in report:
        out_table.add_row(r.table, f"{r.rows:,}", "counts and sums match" if r.ok else "no")
    out.print(out_table)
