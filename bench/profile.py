"""Benchmark of the application profiler.

Measures, in this run:

- ``category_accuracy``: full pipeline (nfstream/nDPI -> identify) on the labelled nDPI
  captures vs nDPI's expected results (.out files), both mapped through the app map;
- ``behavioural_macro_f1``: the behavioural classifier alone (no nDPI names, no ports)
  trained on 70 % of the capture FILES and scored on the other 30 % (seeded split), plus
  a 5-fold by-file cross-validation mean;
- ``records_per_s``: flow records/s through identify + placement + 1-minute series
  (both kinds) on synthetic batches, next to the collector's lossless rate (0.6 M/s) and a
  per-flow Python loop baseline.

The machine is shared (2 cores, other jobs running): wall-clock figures are noisy, so
CPU-time rates are printed beside them.

    .venv/bin/python bench/profile.py [--json] [--pcaps DIR] [--flows N]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "profile"))

from profile_flowgen import make_flows  # noqa: E402

from shadowcast.profile.appmap import AppMap  # noqa: E402
from shadowcast.profile.classifier import CLASSES, BehaviourModel  # noqa: E402
from shadowcast.profile.config import ProfileConfig  # noqa: E402
from shadowcast.profile.identify import Profiler  # noqa: E402
from shadowcast.profile.series import SeriesBuilder  # noqa: E402
from shadowcast.profile.training import (  # noqa: E402
    file_split,
    load_labelled,
    macro_f1,
    pipeline_accuracy,
)

COLLECTOR_RATE = 600_000.0


def _data_dir() -> Path:
    env = os.environ.get("SHADOWCAST_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


def bench_accuracy(pcaps: Path, results: Path) -> dict[str, float]:
    p = Profiler()
    acc = pipeline_accuracy(pcaps, results, p.identify, p.appmap)
    return {
        "category_accuracy": acc.accuracy,
        "accuracy_flows": acc.expected,
        "accuracy_matched": acc.matched,
        "unclassified_byte_share": acc.unclassified_bytes / max(acc.total_bytes, 1),
    }


def bench_behavioural(pcaps: Path, seed: int = 7) -> dict[str, float]:
    lab = load_labelled(pcaps, AppMap.load())
    keep_lab = np.isin(lab.labels, CLASSES)
    tr, te = file_split(lab.files, 0.3, seed)
    model = BehaviourModel.train(lab.flows.filter(pa.array(tr)), lab.labels[tr], seed=seed)
    keep = te & keep_lab
    test = lab.flows.filter(pa.array(keep))
    f1 = macro_f1(lab.labels[keep], model.predict(test).category)
    f1_plain = macro_f1(lab.labels[keep], model.predict(test, hide_rich=True).category)
    # 5-fold cross-validation by file
    names = np.array(sorted(set(lab.files.tolist())), dtype=object)
    folds = np.array_split(np.random.default_rng(seed).permutation(names), 5)
    pred = np.full(len(lab.labels), "", dtype=object)
    for fold in folds:
        held = np.isin(lab.files, fold)
        m = BehaviourModel.train(lab.flows.filter(pa.array(~held)), lab.labels[~held], seed=seed)
        pred[held] = m.predict(lab.flows.filter(pa.array(held))).category
    cv = macro_f1(lab.labels[keep_lab], pred[keep_lab])
    # majority-class baseline on the same held-out flows
    values, counts = np.unique(lab.labels[tr & keep_lab], return_counts=True)
    majority = np.full(int(keep.sum()), values[counts.argmax()], dtype=object)
    return {
        "behavioural_macro_f1": f1,
        "behavioural_macro_f1_flow_export_features": f1_plain,
        "behavioural_macro_f1_cv5_by_file": cv,
        "behavioural_majority_baseline_f1": macro_f1(lab.labels[keep], majority),
        "behavioural_test_files": len(set(lab.files[te].tolist())),
        "behavioural_test_flows": int(keep.sum()),
    }


def naive_series(flows: pa.Table) -> dict[tuple[str, int], int]:
    """Per-flow Python baseline: bytes per (app, minute), no spreading."""
    out: dict[tuple[str, int], int] = {}
    cols = flows.select(["app", "time_start", "bytes"]).to_pylist()
    for r in cols:
        key = (r["app"], int(r["time_start"].timestamp()) // 60)
        out[key] = out.get(key, 0) + r["bytes"]
    return out


def bench_throughput(n: int, batches: int = 3) -> dict[str, float]:
    prof = Profiler(ProfileConfig())
    builder = SeriesBuilder()
    data = [make_flows(n, seed=100 + i) for i in range(batches)]
    prof.identify(data[0].slice(0, 1000))  # warm-up
    w0, c0 = time.perf_counter(), time.process_time()
    t_ident = t_series = 0.0
    for t in data:
        a = time.perf_counter()
        f = prof.identify(t)
        b = time.perf_counter()
        builder.build(f)
        t_ident += b - a
        t_series += time.perf_counter() - b
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    total = n * batches
    # named flows only (what an NBAR2/nProbe exporter sends): no model in the path
    named = [t.filter(pa.compute.not_equal(t.column("app"), "")) for t in data]
    w1 = time.perf_counter()
    for t in named:
        builder.build(prof.identify(t))
    named_rate = sum(t.num_rows for t in named) / (time.perf_counter() - w1)
    small = data[0].slice(0, 50_000)
    w2 = time.perf_counter()
    naive_series(small)
    naive_rate = small.num_rows / (time.perf_counter() - w2)
    rate = total / wall
    return {
        "records_per_s": rate,
        "records_per_s_cpu": total / cpu,
        "records_per_s_named_only": named_rate,
        "identify_s_per_million": t_ident / total * 1e6,
        "series_s_per_million": t_series / total * 1e6,
        "unnamed_share": float(np.mean([1 - t.num_rows / n for t in named])),
        "collector_rate": COLLECTOR_RATE,
        "ratio_vs_collector": rate / COLLECTOR_RATE,
        "naive_python_records_per_s": naive_rate,
        "ratio_vs_naive_python": rate / naive_rate,
        "flows_measured": total,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--pcaps", type=Path, default=_data_dir() / "pcaps" / "ndpi" / "pcap")
    ap.add_argument("--flows", type=int, default=300_000, help="flows per throughput batch")
    args = ap.parse_args()
    out: dict[str, object] = {}
    if args.pcaps.is_dir():
        out.update(bench_accuracy(args.pcaps, args.pcaps.parent / "result"))
        out.update(bench_behavioural(args.pcaps))
    else:
        out["note"] = f"{args.pcaps} missing: accuracy and macro-F1 not measured"
    out.update(bench_throughput(args.flows))
    out["machine_note"] = "2 shared cores with concurrent jobs: wall-clock rates are noisy"
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:48s} {v:.4g}" if isinstance(v, float) else f"{k:48s} {v}")


if __name__ == "__main__":
    main()
