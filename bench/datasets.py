"""Benchmark: load the SNDlib Abilene week (2,016 matrices x 132 OD pairs).

Compares ``shadowcast.datasets.load_demands`` (expat well-formedness check + strict pattern
read + vectorised assembly) with a plain baseline (ElementTree per member, one Python dict
write per demand). Figures are wall-clock on a shared machine: noisy; compare the ratio.

    .venv/bin/python bench/datasets.py [--json] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from shadowcast.datasets import load_demands, totals

ARCHIVE = (
    "traffic_matrices/sndlib/directed-abilene-zhang-5min-over-6months-ALL_20040301-20040307.tar.gz"
)
NS = "{http://sndlib.zib.de/network}"


def baseline(path: Path) -> np.ndarray:
    rows: dict[str, dict[tuple[str, str], float]] = {}
    with tarfile.open(path) as tf:
        for m in tf.getmembers():
            if not m.isfile():
                continue
            fh = tf.extractfile(m)
            assert fh is not None
            root = ET.fromstring(fh.read())
            t = root.findtext(f"{NS}meta/{NS}time") or m.name
            d = rows.setdefault(t, {})
            for dem in root.iter(f"{NS}demand"):
                s, g = dem.findtext(f"{NS}source"), dem.findtext(f"{NS}target")
                d[(s or "", g or "")] = float(dem.findtext(f"{NS}demandValue") or "nan")
    pairs = sorted({k for d in rows.values() for k in d})
    return np.array([[rows[t].get(k, 0.0) for k in pairs] for t in sorted(rows)], np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--data", type=Path, default=None, help="default: $SHADOWCAST_DATA")
    args = ap.parse_args()
    env = os.environ.get("SHADOWCAST_DATA")
    repo = Path(__file__).resolve().parents[1]
    data = args.data or (Path(env) if env else repo.parent / "shared" / "data")
    path = data / ARCHIVE
    t0 = time.perf_counter()
    dem = load_demands(path)
    ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    base = baseline(path)
    base_s = time.perf_counter() - t0
    same = bool(np.array_equal(base, dem.values))
    out = {
        "steps": dem.steps,
        "od_pairs": len(dem.od_pairs),
        "total_mbit": float(totals(dem).sum()),
        "load_seconds": round(ours, 3),
        "baseline_seconds": round(base_s, 3),
        "speedup_vs_baseline": round(base_s / ours, 2),
        "values_identical": same,
        "cpu_count": os.cpu_count(),
        "note": "shared machine, wall-clock; noisy",
    }
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k:>22}: {v}")


if __name__ == "__main__":
    main()
