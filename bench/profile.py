"""Benchmark of the application profiler.

Measures, in this run:

- ``category_accuracy``: full pipeline (nfstream/nDPI -> identify) on the labelled nDPI
  captures vs nDPI's expected results (.out files), both mapped through the app map;
- ``behavioural_macro_f1``: the behavioural classifier alone (no nDPI names, no ports),
  leave-groups-out. The nDPI captures (group = capture file, label = nDPI's category) and
  the lab generator's flows (group = session, label = the generator that made the flow;
  the shipped ``profile/data/lab_flows.parquet`` or ``--lab``) are dealt into ``--folds``
  folds of whole groups; every flow is predicted by the model trained on the other folds.
  The headline and ``behavioural_per_class`` (precision / recall) are on the held-out lab
  sessions; ``*_ndpi_captures`` on the held-out captures, ``*_all_groups`` on both; each
  with packet features, as a plain two-way record (``*_flow_export_features``) and as each
  direction's one-way record (``*_one_way_records``, what NetFlow/IPFIX carries).
  ``old_model_*``: the former recipe (nDPI captures only, former settings) trained and
  scored on the same folds; ``--old-model FILE`` also scores a saved model as it is;
- ``records_per_s``: flow records/s through identify + placement + 1-minute series
  (both kinds) on synthetic batches, next to the collector's lossless rate (0.6 M/s) and a
  per-flow Python loop baseline.

The machine is shared (2 cores, other jobs running): wall-clock figures are noisy, so
CPU-time rates are printed beside them.

    .venv/bin/python bench/profile.py [--json] [--pcaps DIR] [--flows N] [--lab FILE]
        [--folds K] [--old-model FILE] [--skip-throughput]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

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
    CrossValidation,
    class_report,
    combine,
    cross_validate,
    load_lab,
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


# the classifier as it was trained before the lab set (nDPI captures only, these settings)
OLD_RECIPE: dict[str, Any] = {
    "num_rounds": 30,
    "one_way_copies": False,
    "params": {
        "learning_rate": 0.08,
        "num_leaves": 7,
        "min_data_in_leaf": 5,
        "feature_fraction": 0.9,
        "bagging_fraction": 0.9,
        "bagging_freq": 1,
        "lambda_l2": 1.0,
    },
}


NOTE = (
    "behavioural_macro_f1 and behavioural_per_class: held-out lab sessions (labels = the "
    "generator that made the flow); *_ndpi_captures: held-out nDPI capture files (labels = "
    "nDPI's application, noisy); *_all_groups: both; flows weighted alike. Folds hold whole "
    "sessions and whole captures. old_model_*: the former recipe (nDPI captures only, former "
    "settings) trained and scored on the same folds"
)


def _f1(y: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> float:
    return macro_f1(y[mask], pred[mask]) if mask.any() else float("nan")


def _views(
    name: str, y: np.ndarray, cv: CrossValidation, masks: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Macro-F1 of one model per population (lab, ndpi, all) and view; per-class on lab."""
    out: dict[str, Any] = {}
    ow_y = y[cv.one_way_rows]
    for pop, m in masks.items():
        suffix = "" if pop == "lab" else f"_{pop}"
        out[f"{name}_macro_f1{suffix}"] = _f1(y, cv.full, m)
        out[f"{name}_macro_f1{suffix}_flow_export_features"] = _f1(y, cv.plain, m)
        out[f"{name}_macro_f1{suffix}_one_way_records"] = _f1(ow_y, cv.one_way, m[cv.one_way_rows])
    lab = masks["lab"]
    out[f"{name}_per_class"] = class_report(y[lab], cv.full[lab])
    out[f"{name}_per_class_flow_export_features"] = class_report(y[lab], cv.plain[lab])
    return out


def bench_behavioural(
    pcaps: Path, lab_path: Path | None, seed: int = 7, k: int = 5, old_model: Path | None = None
) -> dict[str, Any]:
    """Leave-groups-out (k folds of whole capture files and lab sessions) on the nDPI
    captures plus the lab generator's flows; the old recipe on the same folds."""
    data = combine(load_labelled(pcaps, AppMap.load()), load_lab(lab_path))
    y = data.labels
    known = np.isin(y, CLASSES)
    scored = known & data.view_mask("flow")  # whole flows; cut records scored apart
    lab, ndpi = data.source_mask("lab") & scored, data.source_mask("ndpi") & scored
    chunks = data.view_mask("chunk") & known
    masks = {"lab": lab, "ndpi_captures": ndpi, "all_groups": scored}
    new = cross_validate(
        data, lambda t, yy, g: BehaviourModel.train(t, yy, seed=seed, groups=g), k, seed
    )
    old = cross_validate(
        data,
        lambda t, yy, g: BehaviourModel.train(t, yy, seed=seed, **OLD_RECIPE),
        k,
        seed,
        fit_mask=data.source_mask("ndpi"),
    )
    out: dict[str, Any] = {"behavioural_note": NOTE}
    out.update(_views("behavioural", y, new, masks))
    out["behavioural_per_class_ndpi_captures"] = class_report(y[ndpi], new.full[ndpi])
    out["behavioural_macro_f1_30s_records_flow_export_features"] = _f1(y, new.plain, chunks)
    out.update(_views("old_model", y, old, masks))
    values, counts = np.unique(y[lab], return_counts=True)
    out["behavioural_majority_baseline_f1"] = macro_f1(
        y[lab], np.full(int(lab.sum()), values[counts.argmax()], dtype=object)
    )
    out.update(
        {
            "behavioural_folds": k,
            "behavioural_lab_sessions": len(set(data.files[lab].tolist())),
            "behavioural_lab_flows": int(lab.sum()),
            "behavioural_lab_30s_records": int(chunks.sum()),
            "behavioural_ndpi_captures": len(set(data.files[ndpi].tolist())),
            "behavioural_ndpi_flows": int(ndpi.sum()),
        }
    )
    if old_model is not None:  # the shipped file: it saw every nDPI capture (leak there)
        m = BehaviourModel.load(old_model)
        pred = m.predict(data.flows).category
        out["old_shipped_model_macro_f1"] = _f1(y, pred, lab)
        out["old_shipped_model_macro_f1_ndpi_captures_seen_in_training"] = _f1(y, pred, ndpi)
    return out


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
    ap.add_argument("--lab", type=Path, default=None, help="lab flows (default: the shipped set)")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--old-model", type=Path, default=None, help="a model file to score too")
    ap.add_argument("--skip-throughput", action="store_true")
    args = ap.parse_args()
    out: dict[str, object] = {}
    if args.pcaps.is_dir():
        out.update(bench_accuracy(args.pcaps, args.pcaps.parent / "result"))
        out.update(bench_behavioural(args.pcaps, args.lab, k=args.folds, old_model=args.old_model))
    else:
        out["note"] = f"{args.pcaps} missing: accuracy and macro-F1 not measured"
    if not args.skip_throughput:
        out.update(bench_throughput(args.flows))
    out["machine_note"] = "2 shared cores with concurrent jobs: wall-clock rates are noisy"
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:48s} {v:.4g}" if isinstance(v, float) else f"{k:48s} {v}")


if __name__ == "__main__":
    main()
