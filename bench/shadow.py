"""Shadow-tunnel probing in the namespace lab (root): accuracy, overhead, onset, RTT.

Lab: A - B - C, tight link B->C 10 Gbit/s / 1000 = 10 Mbit/s (tbf, 50 ms queue), edges at
A and C, one VXLAN shadow tunnel A->C. Cross traffic: iperf3 UDP from a separate process.

* abw: for cross loads 0/30/60/80 %, trains of 30 x 600-byte STAMP packets paced at C,
  admitted by the tunnel manager's probe budget; ground truth = C - cross rate, the cross
  rate from the tight link's tc byte counter minus the probe bytes.
* probe overhead: every probe byte sent / (C x elapsed).
* onset: cross steady at 60 %, then a second iperf3 adds 50 % (110 %); time from the
  step to the detector firing (STAMP pings at 10 pps, forward OWD), 3 repetitions.
* RTT: STAMP RTT vs the same packets' kernel timestamps (AF_PACKET on A's edge device).

Baseline claimed beaten: the issue's floors (abw error <= 25 %, overhead <= 1 %, onset <= 5 s).
The machine has 2 shared cores: Python pacing and iperf3 compete, figures are noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import struct
import sys
import time

import numpy as np

from shadowcast.lab import build, netns
from shadowcast.lab.capture import Capture, qdisc_bytes
from shadowcast.lab.traffic import Processes, iperf_server, iperf_udp, reflector
from shadowcast.records import Link, Topology
from shadowcast.shadow.abw import OnsetDetector, combine, estimate_train, train_gap_s, wire_bytes
from shadowcast.shadow.base import NewPathEvent
from shadowcast.shadow.config import TunnelConfig
from shadowcast.shadow.linux import LinuxVxlanBackend
from shadowcast.shadow.stamp import Sender
from shadowcast.shadow.tunnels import TunnelManager

PREFIX = "scbn-"
C = 10e6
PAYLOAD, TRAIN = 600, 30
PING_PAYLOAD = 44
_PORTS = iter(range(5301, 5400))


def cross(procs: Processes, plan: build.LabPlan, mbps: float, seconds: float) -> None:
    """iperf3 UDP A -> C from separate processes, on a fresh server port each time
    (an iperf3 server is busy until it notices its last client is gone)."""
    port = next(_PORTS)
    procs.procs.append(iperf_server(plan, "C", port))
    procs.procs.append(iperf_udp(plan, "A", "C", mbps, seconds, port=port))


def topology() -> Topology:
    links = []
    for a, b, cap in (("A", "B", 100e9), ("B", "C", 10e9)):
        links += [Link(a, b, cap), Link(b, a, cap)]
    return Topology("bench-line", ("A", "B", "C"), tuple(links))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


async def measure_abw(
    sender: Sender, mgr: TunnelManager, key: object, plan: build.LabPlan, dev_ns: str, dev: str,
    loads: list[float], trains: int, probe: list[int],
) -> list[dict[str, float]]:  # fmt: skip
    rows = []
    gap = train_gap_s(PAYLOAD, C)
    tb = TRAIN * wire_bytes(PAYLOAD)
    for load in loads:
        with Processes() as procs:
            if load > 0:
                cross(procs, plan, load * C / 1e6, trains * 4 + 6)
            await asyncio.sleep(2.0)
            b0, t0, pb0 = qdisc_bytes(dev_ns, dev), time.time(), probe[0]
            ests = []
            while len(ests) < trains:
                if not mgr.admit(key, tb):  # type: ignore[arg-type]
                    await asyncio.sleep(0.1)
                    continue
                run = await sender.train(TRAIN, gap, size=PAYLOAD)
                probe[0] += tb
                ests.append(estimate_train(run, C))
            b1, t1 = qdisc_bytes(dev_ns, dev), time.time()
        x = max(0.0, ((b1 - b0) - (probe[0] - pb0)) * 8 / (t1 - t0))
        truth, est = C - x, combine(ests)
        rows.append({"load": load, "truth_mbps": truth / 1e6, "est_mbps": est / 1e6,
                     "rel_error": abs(est - truth) / truth})  # fmt: skip
        pairs = [e.pairs for e in ests]
        log(f"load {load:.0%}: truth {truth / 1e6:.2f} Mbit/s, estimate {est / 1e6:.2f} "
            f"(trains {[round(e.abw_bps / 1e6, 2) for e in ests]}, pairs {pairs})")  # fmt: skip
    return rows


async def measure_onset(sender: Sender, plan: build.LabPlan, probe: list[int]) -> float:
    with Processes() as procs:
        cross(procs, plan, 6.0, 14)
        det = OnsetDetector()
        for _ in range(6):  # 3 s of baseline at 60 %
            run = await sender.run(5, 0.1)
            probe[0] += 5 * wire_bytes(PING_PAYLOAD)
            for x in run.owd_fwd:
                det.update(float(x))
        det.run = 0
        port = next(_PORTS)
        procs.procs.append(iperf_server(plan, "C", port))
        step = time.time()
        procs.procs.append(iperf_udp(plan, "A", "C", 5.0, 8, port=port))
        while time.time() - step < 10:
            run = await sender.run(5, 0.1)
            probe[0] += 5 * wire_bytes(PING_PAYLOAD)
            if any(det.update(float(x)) for x in run.owd_fwd):
                return time.time() - step
    return math.inf


async def measure_rtt(sender: Sender, plan: build.LabPlan) -> dict[str, float]:
    a = plan.edges["A"]
    cap = Capture(a.ns, a.dev_host)
    run = await sender.run(50, 0.02)
    frames = cap.udp()
    cap.close()
    out: dict[int, float] = {}
    back: dict[int, float] = {}
    for f in frames:
        if f.dport != 4789 or len(f.inner) < 8 + 42 + 28:
            continue
        stamp = f.inner[8 + 42 :]
        if f.src == a.addr_host:
            out[struct.unpack_from(">I", stamp)[0]] = f.ts
        else:
            back[struct.unpack_from(">I", stamp, 24)[0]] = f.ts
    diffs = []
    for i in range(run.sent):
        if i in out and i in back and run.rseq[i] >= 0:
            k_rtt = back[i] - out[i] - (run.t3[i] - run.t2[i])
            diffs.append(abs(run.rtt[i] - k_rtt) * 1e3)
    m = run.metrics()
    return {
        "rtt_ms": m.rtt_ms,
        "rtt_kernel_diff_ms_median": float(np.median(diffs)),
        "rtt_kernel_diff_ms_p95": float(np.percentile(diffs, 95)),
        "matched": len(diffs),
    }


async def main_async(trains: int, reps: int) -> dict[str, object]:
    plan = build.plan_lab(topology(), scale=1000, edges=["A", "C"], prefix=PREFIX)
    build.up(plan)
    caps = {}
    for lk in plan.links:
        caps[(lk.a, lk.b)], caps[(lk.b, lk.a)] = lk.rate_ab_bps, lk.rate_ba_bps
    cfg = TunnelConfig(probe_rate_bps=0.007 * C, max_burst_bytes=TRAIN * wire_bytes(PAYLOAD))
    mgr = TunnelManager(LinuxVxlanBackend({r: e.ns for r, e in plan.edges.items()}),
                        {r: e.addr_host for r, e in plan.edges.items()}, caps, cfg)  # fmt: skip
    t = mgr.on_new_path(NewPathEvent("bench", "A", "C", tuple(plan.path("A", "C"))))
    assert t is not None
    probe = [0]
    dev_ns = plan.routers["B"]
    _lk, dev = plan.link_between("B", "C")
    with Processes() as servers:
        servers.procs.append(reflector(plan, "C", t.spec.inner_remote))
        sender = Sender(t.spec.inner_remote, netns=plan.edges["A"].ns,
                        local=t.spec.inner_local, timeout_s=0.3)  # fmt: skip
        start = time.time()
        rows = await measure_abw(sender, mgr, t.spec.key, plan, dev_ns, dev,
                                 [0.0, 0.3, 0.6, 0.8], trains, probe)  # fmt: skip
        overhead = probe[0] * 8 / (C * (time.time() - start))
        onsets = [await measure_onset(sender, plan, probe) for _ in range(reps)]
        for o in onsets:
            log(f"onset detected after {o:.2f} s")
        rtt = await measure_rtt(sender, plan)
    mgr.close()
    errs = [r["rel_error"] for r in rows]
    return {
        "abw_rel_error_median": float(np.median(errs)),
        "abw_rows": rows,
        "probe_overhead_share": overhead,
        "onset_detect_s_median": float(np.median(onsets)),
        "onset_detect_s": onsets,
        **rtt,
        "floors": {
            "abw_rel_error_median": 0.25,
            "probe_overhead_share": 0.01,
            "onset_detect_s_median": 5.0,
        },  # fmt: skip
        "note": "2 shared cores; Python-paced trains; noisy",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--trains", type=int, default=8)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    ok, why = netns.have_root()
    if not ok:
        sys.exit(f"bench/shadow.py: {why}")
    try:
        res = asyncio.run(main_async(args.trains, args.reps))
    finally:
        build.down(PREFIX)
    if args.json:
        print(json.dumps(res))
        return
    fl = res["floors"]
    assert isinstance(fl, dict)
    for k in ("abw_rel_error_median", "probe_overhead_share", "onset_detect_s_median"):
        v = float(res[k])  # type: ignore[arg-type]
        print(f"{k:28s} {v:8.3f}   floor {fl[k]:.3f}   ratio {v / fl[k]:.2f}")
    print(f"{'rtt_kernel_diff_ms_median':28s} {res['rtt_kernel_diff_ms_median']:8.3f}")


if __name__ == "__main__":
    main()
