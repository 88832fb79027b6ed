"""Forecast cycle cost: fit + predict (15 min and 1 h, 80/95 % intervals) for 132, 1,000 and
10,000 synthetic series of one week of 5-minute data, locally and on a 2-worker Dask
LocalCluster. Each configuration runs in a fresh subprocess so peak RSS is its own.

    .venv/bin/python bench/forecast.py [--json] [--sizes 132,1000,10000] [--model auto]

Baseline claimed: the floor of 120 s for 10,000 series, and persistence (the cheapest
model) timed in the same run for the ratio. The machine is shared (2 cores, other jobs
running), so figures are noisy.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def one(series: int, workers: int, model: str) -> dict[str, object]:
    from shadowcast.forecast.distributed import fit_predict
    from shadowcast.forecast.synthetic import synthetic_frame

    frame = synthetic_frame(series, 2016, 300, seed=1)
    opts = {"horizons": ["15m", "1h"]}
    t0 = time.perf_counter()
    worker_rss = 0.0
    if workers:
        from dask.distributed import Client, LocalCluster

        with (
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True) as cluster,
            Client(cluster) as client,
        ):
            t0 = time.perf_counter()
            fc = fit_predict(
                frame, model, 12, (80, 95), chunk_series=5000, options=opts, client=client
            )
            secs = time.perf_counter() - t0
            rss = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
            worker_rss = sum(rss.values()) / 1024.0
    else:
        fc = fit_predict(frame, model, 12, (80, 95), chunk_series=5000, options=opts)
        secs = time.perf_counter() - t0
    assert fc.mean.shape == (series, 12)
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return {
        "series": series,
        "workers": workers,
        "model": model,
        "seconds": round(secs, 2),
        "series_per_s": round(series / secs, 1),
        "peak_rss_mb": round(own + worker_rss, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--sizes", default="132,1000,10000")
    ap.add_argument("--model", default="auto")
    ap.add_argument("--workers", default="0,2")
    ap.add_argument("--one", nargs=3, metavar=("SERIES", "WORKERS", "MODEL"))
    a = ap.parse_args()
    if a.one:
        print(json.dumps(one(int(a.one[0]), int(a.one[1]), a.one[2])))
        return
    rows = []
    runs = [(int(s), int(w), a.model) for s in a.sizes.split(",") for w in a.workers.split(",")]
    runs.append((max(int(s) for s in a.sizes.split(",")), 0, "persistence"))
    for s, w, m in runs:
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(s), str(w), m],
            check=True,
            capture_output=True,
            text=True,
        )
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
        if not a.json:
            print(rows[-1], file=sys.stderr, flush=True)
    big = [r for r in rows if r["series"] == max(r2["series"] for r2 in rows)]
    ours = [r for r in big if r["model"] == a.model]
    pers = [r for r in big if r["model"] == "persistence"]
    if a.json:
        print(json.dumps(rows))
        return
    print(
        f"{'series':>7} {'workers':>7} {'model':>12} {'seconds':>8} {'series/s':>9} {'rss MB':>8}"
    )
    for r in rows:
        print(
            f"{r['series']:>7} {r['workers']:>7} {r['model']:>12} {r['seconds']:>8} "
            f"{r['series_per_s']:>9} {r['peak_rss_mb']:>8}"
        )
    for r in ours:
        print(
            f"{r['series']} series, {r['workers']} workers: {r['seconds']} s vs floor 120 s "
            f"(x{float(r['seconds']) / 120:.2f}); vs persistence x"
            f"{float(r['seconds']) / float(pers[0]['seconds']):.1f}"
        )
    print("note: shared 2-core machine, other jobs running: timings are noisy")


if __name__ == "__main__":
    main()
