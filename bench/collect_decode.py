"""Decode-only speed of the flow decoders on one core, beside the pure-Python ``netflow``.

    .venv/bin/python bench/collect_decode.py [--json] [--records N] [--batch P]

The same pre-built packet streams (``shadowcast.collect.synth.build_stream``: ~30 records
per packet, IPv4, IPFIX with applicationId + options mapping; sFlow 10 flow samples per
datagram) go to our decoders in batches of ``--batch`` packets, three ways: as the worker
hands them over (``decode_datagrams`` on received batches: "ours"), through the list API
(``decode``, which first copies the payloads into a batch) and datagram by datagram
(``walk``, the decoders as they were before the batched paths); and, packet by packet, to
``netflow.parse_packet`` (PyPI ``netflow``; no sFlow support there). The process is
pinned to one CPU. Rates are records per CPU-second of this process (``process_time``),
the figure that is comparable on a shared machine; wall-clock rates are printed beside
them. Floors: 1.5M IPFIX and 1M sFlow records/s on one core.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

from shadowcast.collect.datagrams import Datagrams
from shadowcast.collect.decoders import FlowDecoder
from shadowcast.collect.synth import build_stream

PROTOS = ("v5", "v9", "ipfix", "sflow")
FLOOR_IPFIX = 1_500_000
FLOOR_SFLOW = 1_000_000
EXPORTER = "192.0.2.1"


def _timed(fn: Callable[[], int], repeat: int) -> tuple[float, float]:
    """Best (records per CPU second, records per wall second) over ``repeat`` runs."""
    best_cpu = best_wall = 0.0
    for _ in range(repeat):
        c0, w0 = time.process_time(), time.perf_counter()
        n = fn()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        best_cpu = max(best_cpu, n / max(cpu, 1e-9))
        best_wall = max(best_wall, n / max(wall, 1e-9))
    return best_cpu, best_wall


def python_loop_ns() -> float:
    """CPU ns per iteration of a trivial Python loop: how fast this core is (~30-40 ns on a
    current desktop/server core); compare figures across machines with it."""
    t0 = time.process_time()
    x = 0
    for i in range(2_000_000):
        x += i
    return (time.process_time() - t0) / 2_000_000 * 1e9


def ours(packets: list[bytes], batch: int, repeat: int, how: str) -> tuple[float, float, int]:
    """``how``: "batched" (``decode_datagrams`` on batches received as the worker's
    receiver holds them), "pairs" (``decode``, the list API) or "walk" (datagram by
    datagram, the decoders before the batched paths)."""
    pairs = [(p, EXPORTER) for p in packets]
    chunks = [pairs[i : i + batch] for i in range(0, len(pairs), batch)]
    batches = [Datagrams.from_pairs(c) for c in chunks]  # built before the clock starts
    rows = 0

    def run() -> int:
        nonlocal rows
        dec = FlowDecoder()
        if how == "batched":
            rows = sum(dec.decode_datagrams(d, 0.0).num_rows for d in batches)
        elif how == "pairs":
            rows = sum(dec.decode(c, 0.0).num_rows for c in chunks)
        else:
            rows = sum(dec.walk(c, 0.0).num_rows for c in chunks)
        return rows

    cpu, wall = _timed(run, repeat)
    return cpu, wall, rows


def netflow_py(packets: list[bytes], repeat: int) -> tuple[float, float] | None:
    try:
        from netflow.utils import parse_packet
    except ImportError:
        return None

    def run() -> int:
        templates: dict[str, dict[int, object]] = {"netflow": {}, "ipfix": {}}
        return sum(len(parse_packet(p, templates).flows) for p in packets)

    return _timed(run, repeat)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--records", type=int, default=300_000)
    ap.add_argument("--baseline-records", type=int, default=30_000)
    ap.add_argument("--batch", type=int, default=1024, help="packets per decode call")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    result: dict[str, object] = {}
    rates: dict[str, float] = {}
    walls: dict[str, float] = {}
    base: dict[str, float | None] = {}
    base_wall: dict[str, float | None] = {}
    pairs_api: dict[str, float] = {}
    walk: dict[str, float] = {}
    for proto in PROTOS:
        packets = build_stream(proto, args.records, seed=1)
        cpu, wall, rows = ours(packets, args.batch, args.repeat, "batched")
        if rows != args.records:
            sys.exit(f"{proto}: decoded {rows} records, expected {args.records}")
        rates[proto], walls[proto] = round(cpu), round(wall)
        pairs_api[proto] = round(ours(packets, args.batch, args.repeat, "pairs")[0])
        walk[proto] = round(ours(packets, args.batch, args.repeat, "walk")[0])
        if proto == "sflow":
            base[proto] = base_wall[proto] = None
            continue
        got = netflow_py(build_stream(proto, args.baseline_records, seed=1), args.repeat)
        base[proto] = round(got[0]) if got else None
        base_wall[proto] = round(got[1]) if got else None
    ratio = {p: (round(rates[p] / b, 1) if b else None) for p, b in base.items()}
    result = {
        "decode_records_per_s": rates,
        "decode_records_per_wall_s": walls,
        "list_api_records_per_s": pairs_api,
        "walk_records_per_s": walk,
        "netflow_py_records_per_s": base,
        "netflow_py_records_per_wall_s": base_wall,
        "ratio_vs_netflow_py": ratio,
        "floor_ipfix_records_per_s": FLOOR_IPFIX,
        "floor_met": rates["ipfix"] >= FLOOR_IPFIX,
        "floor_sflow_records_per_s": FLOOR_SFLOW,
        "floor_sflow_met": rates["sflow"] >= FLOOR_SFLOW,
        "records": args.records,
        "batch_packets": args.batch,
        "cpu_count": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python_loop_ns": round(python_loop_ns(), 1),
        "note": "records per CPU-second of one pinned process; wall rates depend on load",
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{'proto':<6} {'ours rec/s':>12} {'(wall)':>12} {'list API':>12} {'walk':>12} "
        f"{'netflow-py':>12} {'ratio':>7}"
    )
    for p in PROTOS:
        b = base[p]
        print(
            f"{p:<6} {rates[p]:>12,.0f} {walls[p]:>12,.0f} {pairs_api[p]:>12,.0f} "
            f"{walk[p]:>12,.0f} {(f'{b:,.0f}' if b else '-'):>12} "
            f"{(f'{ratio[p]}x' if ratio[p] else '-'):>7}"
        )
    verdict = "met" if result["floor_met"] else "NOT met"
    print(f"floor {FLOOR_IPFIX:,} IPFIX records/s on one core: {verdict}")
    verdict = "met" if result["floor_sflow_met"] else "NOT met"
    print(f"floor {FLOOR_SFLOW:,} sFlow records/s on one core: {verdict}")
    print(f"load average {result['load_avg_1m']} on {os.cpu_count()} CPUs (shared machine: noisy)")
    print(f"python loop: {result['python_loop_ns']} ns/iteration (~30-40 on a typical core)")


if __name__ == "__main__":
    main()
