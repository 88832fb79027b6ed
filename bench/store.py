"""Store benchmark: write synthetic flows to DuckDB, aggregate per app per 5 minutes,
and compare with the same aggregation in pandas; then the same write and aggregation on
ClickHouse, one local server and a two-shard local cluster (entries ``clickhouse`` and
``clickhouse_cluster``; skipped with a reason when clickhouse-server is not installed).

    .venv/bin/python bench/store.py [--rows 10000000] [--batch 100000] [--json]

Prints one JSON object (with ``--json``) or a table. Figures are measured in this run; on a
shared machine they are noisy, so ``--repeat`` takes the best of several aggregation runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from shadowcast.errors import StoreError
from shadowcast.store.base import AggQuery
from shadowcast.store.clickhouse_local import local_servers, server_command
from shadowcast.store.duckdb import DuckDBStore
from shadowcast.store.synth import synthetic_flows


def best(fn: object, repeat: int) -> tuple[float, float, object]:
    """Fastest wall time of ``repeat`` calls, the CPU time (all threads) of that call, and
    the last result."""
    assert callable(fn)
    runs, out = [], None
    for _ in range(repeat):
        t, c = time.perf_counter(), time.process_time()
        out = fn()
        runs.append((time.perf_counter() - t, time.process_time() - c))
    wall, cpu = min(runs)
    return wall, cpu, out


def bench_clickhouse(
    args: argparse.Namespace, shards: int, want: pa.Table, folder: Path, err: Console
) -> dict[str, object]:
    """The DuckDB run's write and aggregation on ``shards`` local ClickHouse servers."""
    if server_command() is None:
        return {"skipped": "clickhouse-server not installed"}
    try:
        from shadowcast.store.clickhouse import ClickHouseStore
    except ImportError as exc:  # pragma: no cover - the driver is imported when opened
        return {"skipped": str(exc)}
    cluster = "bench" if shards > 1 else None
    with local_servers(folder, shards, cluster=cluster) as servers:
        hosts = [servers[0].address]
        try:
            store = ClickHouseStore(hosts, "bench", cluster)
        except StoreError as exc:
            return {"skipped": str(exc)}
        write_s = write_cpu = 0.0
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task(f"clickhouse x{shards}", total=args.rows)
            for batch in synthetic_flows(args.rows, args.batch, seed=42):
                t, c = time.perf_counter(), time.process_time()
                store.write("flows", batch)
                write_s += time.perf_counter() - t
                write_cpu += time.process_time() - c
                bar.advance(task, batch.num_rows)
        rows = store.count("flows")
        query = AggQuery("flows", 300, by=["app"], values=["bytes"])
        roll_s, _, roll_out = best(lambda: store.aggregate(query), args.repeat)
        store.rollups = False
        raw_s, raw_cpu, raw_out = best(lambda: store.aggregate(query), args.repeat)
        version = ".".join(map(str, store.features.version))
        store.close()
    assert isinstance(raw_out, pa.Table) and isinstance(roll_out, pa.Table)
    return {
        "server": version,
        "shards": shards,
        "rows": rows,
        "write_seconds": round(write_s, 3),
        "write_rows_per_s": round(rows / write_s),
        "write_client_cpu_seconds": round(write_cpu, 3),
        "agg_seconds": round(raw_s, 4),
        "agg_client_cpu_seconds": round(raw_cpu, 4),
        "agg_rollup_seconds": round(roll_s, 4),
        "results_match": bool(raw_out.equals(want) and roll_out.equals(want)),
        "note": "agg_seconds over the raw rows; agg_rollup_seconds from the flows_5m rollup;"
        " server CPU is not in the client cpu seconds",
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--batch", type=int, default=100_000, help="rows per write")
    ap.add_argument("--repeat", type=int, default=3, help="aggregation runs (best is kept)")
    ap.add_argument("--memory-limit", default="4GB", help="DuckDB memory_limit")
    ap.add_argument("--dir", type=Path, default=None, help="where the DuckDB file goes")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument(
        "--no-clickhouse", action="store_true", help="skip the ClickHouse server and cluster"
    )
    args = ap.parse_args(argv)
    err = Console(stderr=True)

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = Path(tmp) / "bench.duckdb"
        store = DuckDBStore(path, memory_limit=args.memory_limit)
        keep: list[pa.Table] = []  # the columns pandas needs, for the same data in memory
        write_s = gen_s = write_cpu = 0.0
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task("writing flows", total=args.rows)
            t = time.perf_counter()
            for batch in synthetic_flows(args.rows, args.batch, seed=42):
                t1, c1 = time.perf_counter(), time.process_time()
                gen_s += t1 - t
                store.write("flows", batch)
                t = time.perf_counter()
                write_s += t - t1
                write_cpu += time.process_time() - c1
                keep.append(batch.select(["time_start", "app", "bytes"]))
                bar.advance(task, batch.num_rows)
        rows = store.count("flows")
        assert rows == args.rows, (rows, args.rows)

        query = AggQuery("flows", 300, by=["app"], values=["bytes"])
        duck_s, duck_cpu, duck_out = best(lambda: store.aggregate(query), args.repeat)
        assert isinstance(duck_out, pa.Table)

        frame = pa.concat_tables(keep).to_pandas()
        del keep

        def pandas_agg(df: pd.DataFrame = frame) -> pd.Series:
            bucket = df["time_start"].dt.floor("5min")
            return df.groupby([bucket, "app"], sort=True, observed=True)["bytes"].sum()

        pandas_s, pandas_cpu, pandas_out = best(pandas_agg, args.repeat)
        assert isinstance(pandas_out, pd.Series)
        cat = frame.assign(app=frame["app"].astype("category"))
        pandas_cat_s, _, _ = best(lambda: pandas_agg(cat), args.repeat)
        groups_equal = len(pandas_out) == duck_out.num_rows and int(pandas_out.sum()) == sum(
            duck_out.column("bytes").to_pylist()
        )
        store.close()
        file_mb = path.stat().st_size / 1e6
        seg_dir = Path(str(path) + ".segments")  # flows live in Parquet segments by default
        seg_mb = sum(f.stat().st_size for f in seg_dir.rglob("*") if f.is_file()) / 1e6
        ch: dict[str, dict[str, object]] = {}
        for key, shards in (("clickhouse", 1), ("clickhouse_cluster", 2)):
            if args.no_clickhouse:
                ch[key] = {"skipped": "--no-clickhouse"}
            else:
                ch[key] = bench_clickhouse(args, shards, duck_out, Path(tmp) / key, err)

    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    result = {
        "bench": "store",
        "rows": rows,
        "batch_rows": args.batch,
        "write_seconds": round(write_s, 3),
        "write_rows_per_s": round(rows / write_s),
        "write_cpu_seconds": round(write_cpu, 3),
        "write_rows_per_cpu_s": round(rows / write_cpu),
        "generate_seconds": round(gen_s, 3),
        "duckdb_file_mb": round(file_mb, 1),
        "segments_mb": round(seg_mb, 1),
        "store_mb": round(file_mb + seg_mb, 1),
        "agg_query": "sum(bytes) per app per 5 min over all rows",
        "agg_groups": duck_out.num_rows,
        "duckdb_agg_seconds": round(duck_s, 4),
        "duckdb_agg_cpu_seconds": round(duck_cpu, 4),
        "pandas_agg_seconds": round(pandas_s, 4),
        "pandas_agg_cpu_seconds": round(pandas_cpu, 4),
        "pandas_category_agg_seconds": round(pandas_cat_s, 4),
        "ratio_pandas_over_duckdb": round(pandas_s / duck_s, 2),
        "ratio_pandas_category_over_duckdb": round(pandas_cat_s / duck_s, 2),
        "results_match": groups_equal,
        **ch,
        "peak_rss_mb": round(peak_mb),
        "repeat": args.repeat,
        "duckdb": duckdb.__version__,
        "pandas": pd.__version__,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "note": (
            "wall times on a shared machine (see load_average_1m); aggregation figures are the"
            " best of --repeat; cpu seconds count all threads of this process"
        ),
    }
    if args.json:
        print(json.dumps(result))
    else:
        table = Table("figure", "value", title="store benchmark")
        for k, v in result.items():
            table.add_row(k, str(v))
        Console().print(table)
    ch_ok = all(v.get("results_match", True) for v in ch.values())
    return 0 if groups_equal and ch_ok else 1


if __name__ == "__main__":
    sys.exit(main())
