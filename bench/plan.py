"""Planner solve time: GEANT (real matrices), a ~150-node Topology Zoo graph with a gravity
matrix, and the largest Topology Zoo graph that fits the time budget.

Usage: .venv/bin/python bench/plan.py [--json] [--repeats N] [--largest NAME ...]

Each row: the min-MLU path LP (k candidate paths per OD, HiGHS dual simplex via
scipy.optimize.linprog) solved on several demand matrices; ``solve_ms_median`` includes
building the sparse constraint matrix (``solve_cpu_ms_median``: process CPU time, less
sensitive to other load on the machine). Floors from the planner issue: GEANT <= 50 ms,
150-node gravity <= 5 s. Figures on a shared 2-core machine are noisy: rerun to compare.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from shadowcast.datasets import load_demands, load_topology
from shadowcast.plan.optimise import solve_min_mlu
from shadowcast.plan.paths import candidate_paths
from shadowcast.records import Topology

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
FLOORS_MS = {"geant": 50.0, "Colt": 5000.0}


def gravity(
    topology: Topology, seed: int, scale_to: float = 0.8, top: int | None = None
) -> tuple[list[Any], Any]:
    """All-pairs gravity matrix (log-normal node masses, seeded); with ``top``, only the
    pairs among the ``top`` heaviest nodes carry demand (the others are transit)."""
    rng = np.random.default_rng(seed)
    mass = rng.lognormal(0.0, 1.0, len(topology.nodes))
    ends = list(topology.nodes)
    if top is not None:
        keep = np.argsort(-mass)[:top]
        ends = [topology.nodes[i] for i in sorted(keep)]
    ods = [(a, b) for a in ends for b in ends if a != b]
    idx = topology.node_index()
    src = np.array([idx[a] for a, _ in ods])
    dst = np.array([idx[b] for _, b in ods])
    d = mass[src] * mass[dst]
    return ods, d / d.sum() * topology.capacities.sum() / 1e6 * 0.01 * scale_to


def bench_one(
    name: str, topology: Topology, ods: list[Any], mats: list[Any], k: int, penalty: float = 0.0
) -> dict[str, Any]:
    t0 = time.perf_counter()
    paths = candidate_paths(topology, ods, k)
    path_s = time.perf_counter() - t0
    cap = topology.capacities / 1e6
    ms, cpu = [], []
    for m in mats:
        c0 = time.process_time()
        ms.append(solve_min_mlu(paths, cap, m, penalty_weight=penalty).solve_ms)
        cpu.append((time.process_time() - c0) * 1000)
    algo = "waypoint" if len(ods) > 5000 else "yen"
    return {
        "topology": name,
        "nodes": len(topology.nodes),
        "links": len(topology.links),
        "demands": len(ods),
        "paths": paths.n_paths,
        "solve_ms_median": float(np.median(ms)),
        "solve_ms_max": float(np.max(ms)),
        "solve_cpu_ms_median": float(np.median(cpu)),
        "repeats": len(mats),
        "paths_s": round(path_s, 2),
        "method": f"path LP min-MLU{' + Fortz-Thorup penalty' if penalty else ''}, "
        f"k={k} {algo} paths, HiGHS via scipy linprog",
        "floor_ms": FLOORS_MS.get(name),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument(
        "--largest",
        nargs="*",
        default=["Cogentco", "Kdl:200"],
        help="more Topology Zoo graphs; NAME:N = gravity among the N heaviest nodes",
    )
    args = ap.parse_args(argv)
    rows: list[dict[str, Any]] = []
    geant = load_topology(
        DATA / "topologies/sndlib/geant.xml",
        capacities_from=DATA / "topologies/figret/Data/GEANT/GEANT.json",
    )
    tm = next((DATA / "traffic_matrices/sndlib").glob("directed-geant-*.tar.gz"))
    dem = load_demands(tm, topology=geant)
    pick = np.linspace(10, dem.steps - 1, args.repeats).astype(int)
    mats = [dem.values[i].astype(np.float64) for i in pick]
    rows.append(bench_one("geant", geant, list(dem.od_pairs), mats, k=4))
    rows.append(bench_one("geant", geant, list(dem.od_pairs), mats, k=4, penalty=0.1))
    zoo = DATA / "topologies/topology_zoo"
    for spec in ["Colt", *args.largest]:
        name, _, top_s = spec.partition(":")
        top = int(top_s) if top_s else None
        topo = load_topology(zoo / f"{name}.graphml")
        reps = max(1, min(args.repeats, 3))
        grav = [gravity(topo, seed, top=top) for seed in range(reps)]
        row = bench_one(name, topo, grav[0][0], [g[1] for g in grav], k=3)
        if top:
            row["method"] += f", gravity among the {top} heaviest nodes only"
        rows.append(row)
    for r in rows:
        if r["floor_ms"] is not None:
            r["floor_ratio"] = r["solve_ms_median"] / r["floor_ms"]
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            floor = (
                f" (floor {r['floor_ms']:.0f} ms, ratio {r['floor_ratio']:.2f})"
                if r["floor_ms"]
                else ""
            )
            print(
                f"{r['topology']:10s} {r['nodes']:4d} nodes {r['links']:4d} links "
                f"{r['demands']:6d} OD  median {r['solve_ms_median']:9.1f} ms{floor}  "
                f"[{r['method']}]"
            )
        print("note: shared 2-core machine; figures are noisy", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
