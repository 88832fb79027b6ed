"""Benchmark of the feedback loop's cost per service step, at the synthetic backbone's size.

One step of what the service adds for the feedback loop, on 702 OD pairs x 3 classes
(2,106 stacked series), 74 links, a 12-step horizon and two levels: the drift tests (OD
groups and links), the recalibration's learning and correction of the issued forecast,
and the rolling accuracy the ledger feeds (2 horizons x 2 kinds per step). Prints the
milliseconds per step (wall and CPU: the machine is shared, wall-clock is noisy).

    .venv/bin/python bench/feedback.py [--steps N] [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from shadowcast.feedback.config import FeedbackConfig
from shadowcast.feedback.stage import FeedbackStage
from shadowcast.records import Forecast

STEP = 300


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    nodes = [f"n{i}" for i in range(27)]
    od = [(a, b) for a in nodes for b in nodes if a != b]
    classes = ("high", "low", "medium")
    links = [f"l{i}" for i in range(74)]
    H, levels = 12, (80.0, 95.0)
    fb = FeedbackStage(FeedbackConfig(), classes, od, links, H, levels, STEP)
    n = len(classes) * len(od)
    rng = np.random.default_rng(0)
    level = rng.uniform(1, 100, n)
    link_level = rng.uniform(100, 1000, len(links))
    wall = cpu = 0.0
    for t in range(args.steps):
        y = level * (1 + 0.05 * rng.standard_normal(n))
        ly = link_level * (1 + 0.05 * rng.standard_normal(len(links)))
        mean = np.repeat(level[:, None], H, axis=1)
        fc = Forecast(
            mean=mean,
            lower={lv: mean * 0.9 for lv in levels},
            upper={lv: mean * 1.1 for lv in levels},
            model="m",
        )
        w0, c0 = time.perf_counter(), time.process_time()
        fb.observe("od", t * STEP, y)
        fb.observe("link", t * STEP, ly)
        out = fb.correct((t + 1) * STEP, fc, 1)
        fb.issued("od", (t + 1) * STEP, out.mean[:, 0])
        fb.issued("link", (t + 1) * STEP, link_level)
        for label in ("15m", "1h"):
            lo = {lv: v[:, 0] for lv, v in out.lower.items()}
            hi = {lv: v[:, 0] for lv, v in out.upper.items()}
            fb.accuracy.update("od", "m", label, y, mean[:, 0], y, lo, hi)
            fb.accuracy.update("link", "m", label, ly, link_level, ly, {}, {})
        fb.summary_table(t * STEP)
        wall += time.perf_counter() - w0
        cpu += time.process_time() - c0
    doc = {
        "series": n,
        "links": len(links),
        "steps": args.steps,
        "ms_per_step_wall": round(1000 * wall / args.steps, 3),
        "ms_per_step_cpu": round(1000 * cpu / args.steps, 3),
    }
    print(json.dumps(doc) if args.json else doc)


if __name__ == "__main__":
    main()
