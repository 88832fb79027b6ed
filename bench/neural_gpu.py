"""The neural model on the shared Abilene week, on the GPU when there is one, else the CPU:
fit time, rolling backtest time and accuracy, as one JSON object.

    python bench/neural_gpu.py [--device auto|cpu|cuda] [--epochs 30] [--hidden 128]
        [--threads 2] [--data DIR] [--no-backtest]

Needs the neural extra (``pip install 'shadowcast-netops[neural]'``, torch 2.13 CPU; for
a GPU, a CUDA build of torch 2.13 installed by hand). Same split as
bench/forecast_eval.py (train on the first 70 %, roll through the last 30 %, updated
online), same inputs (geography, path capacity and headroom). Prints ``device``,
``gpu``, ``fit_seconds`` (calibration and the refit included), ``backtest_seconds``,
``epochs`` chosen by early stopping, and per horizon ``nmae``, the ratio to persistence
and the 80/95 % coverage. Runs in a few minutes on two CPU cores.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
KEYS = ("model", "horizon", "nmae", "mase_persistence", "coverage_80", "coverage_95", "seconds")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="auto", help="auto (cuda if present), cpu or cuda")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--hidden", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--no-backtest", action="store_true", help="time the fit only")
    default = Path(os.environ.get("SHADOWCAST_DATA", BENCH.parent.parent / "shared" / "data"))
    ap.add_argument("--data", type=Path, default=default)
    a = ap.parse_args()
    spec = importlib.util.spec_from_file_location("forecast_eval", BENCH / "forecast_eval.py")
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)  # the same frames as the accuracy bench
    bench.off_bench_path()  # (before torch: bench/profile.py would shadow the stdlib's)
    load = bench.load
    try:
        import torch
    except ImportError:
        print(json.dumps({"error": "torch not installed: pip install 'shadowcast-netops[neural]'"}))
        raise SystemExit(1) from None
    from shadowcast.forecast.evaluate import evaluate, split
    from shadowcast.forecast.neural import NeuralForecaster

    fr = load(a.data, "abilene", inputs=True)
    hs = [max(1, 900 // fr.step), max(1, 3600 // fr.step)]
    opts: dict[str, Any] = {
        "horizons": [h * fr.step for h in hs],
        "epochs": a.epochs,
        "hidden": a.hidden,
        "threads": a.threads,
        "device": a.device,
    }
    cuda = torch.cuda.is_available()
    doc: dict[str, Any] = {
        "torch": torch.__version__,
        "cuda_available": cuda,
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "series": len(fr.keys),
        "steps": int(fr.values.shape[0]),
    }
    train, _ = split(fr, 0.3)
    model = NeuralForecaster(**opts)
    doc["device"] = str(model._dev())
    t0 = time.perf_counter()
    model.fit(train)
    if cuda:
        torch.cuda.synchronize()
    doc["fit_seconds"] = round(time.perf_counter() - t0, 2)
    doc["epochs"] = model.train_report.get("best_epochs")
    if not a.no_backtest:
        t0 = time.perf_counter()
        rows = evaluate(fr, None, hs, [NeuralForecaster(**opts), "persistence"])
        doc["backtest_seconds"] = round(time.perf_counter() - t0, 2)
        doc["rows"] = [{k: r[k] for k in KEYS} for r in rows]
    print(json.dumps(doc))


if __name__ == "__main__":
    main()
