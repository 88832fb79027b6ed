"""Planner solve time: GEANT (real matrices), a ~150-node Topology Zoo graph with a gravity
matrix, and the largest Topology Zoo graphs, Kdl (754 nodes) with all 567,762 OD pairs.

Usage: .venv/bin/python bench/plan.py [--json] [--repeats N] [--largest NAME ...]

Each row: the min-MLU path LP (k candidate paths per OD) solved exactly by column
generation on HiGHS (highspy; :mod:`shadowcast.plan.colgen`) on several demand matrices;
``solve_ms_median`` includes building every LP and pricing every path
(``solve_cpu_ms_median``: process CPU time, less sensitive to other load on the machine);
``rounds``/``columns``: LP solves and path columns the last solve needed. ``warm_ms_median``
(GEANT): the same matrices in time order, each solve starting from the previous one's
paths (as ``eval te`` and the service do). Targets: GEANT <= 50 ms, Colt (153 nodes, all
pairs) <= 1 s, a finished solve on the whole of Kdl. Figures on a shared 2-core machine
are noisy: rerun to compare.
"""

from __future__ import annotations

import argparse
import json
import resource
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
FLOORS_MS = {"geant": 50.0, "Colt": 1000.0}


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
    ms, cpu, warm_ms = [], [], []
    warm = None
    for m in mats:
        c0 = time.process_time()
        res = solve_min_mlu(paths, cap, m, penalty_weight=penalty)
        ms.append(res.solve_ms)
        cpu.append((time.process_time() - c0) * 1000)
        if len(mats) > 1:
            again = solve_min_mlu(paths, cap, m, penalty_weight=penalty, warm=warm)
            warm_ms.append(again.solve_ms)
            warm = again.support
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
        "warm_ms_median": float(np.median(warm_ms)) if warm_ms else None,
        "repeats": len(mats),
        "rounds": res.rounds,
        "columns": res.columns,
        "mlu": res.mlu,
        "paths_s": round(path_s, 2),
        "method": f"path LP min-MLU{' + Fortz-Thorup penalty' if penalty else ''}, "
        f"k={k} {algo} paths, column generation on HiGHS (highspy)",
        "floor_ms": FLOORS_MS.get(name),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument(
        "--largest",
        nargs="*",
        default=["Cogentco", "Kdl:200", "Kdl"],
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
    pick = np.arange(10, 10 + args.repeats)  # consecutive: the warm start's use
    mats = [dem.values[i].astype(np.float64) for i in pick]
    rows.append(bench_one("geant", geant, list(dem.od_pairs), mats, k=4))
    rows.append(bench_one("geant", geant, list(dem.od_pairs), mats, k=4, penalty=0.1))
    zoo = DATA / "topologies/topology_zoo"
    for spec in ["Colt", *args.largest]:
        name, _, top_s = spec.partition(":")
        top = int(top_s) if top_s else None
        topo = load_topology(zoo / f"{name}.graphml")
        reps = max(1, min(args.repeats, 3 if top or len(topo.nodes) < 500 else 1))
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
                f"{r['demands']:6d} OD  median {r['solve_ms_median']:9.1f} ms "
                f"(cpu {r['solve_cpu_ms_median']:.0f}){floor} paths {r['paths_s']} s  "
                f"[{r['method']}]"
            )
        print("note: shared 2-core machine; figures are noisy", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
