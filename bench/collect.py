"""Collector benchmark: decode-only records/s per core, then end-to-end UDP -> store at
increasing offered rates, side by side with nfcapd and the pure-Python ``netflow`` package.

One run, one pre-built packet stream (``collect.synth``) for everyone: for end-to-end,
NetFlow v9 (30 records per datagram, flows of the last minute) from ``--exporters``
exporters (127.0.0.11, .12, ...), sent by ``--senders`` paced sender processes with
``sendmmsg`` in bursts of up to 32 datagrams per exporter (one process offers 4 M
records/s here). Rates are stepped up, each collector in turn at each rate (a change of
load hits both alike). "stored" is what each collector kept: rows in
our store (Prometheus ``shadowcast_collect_stored_rows_total``), flows in nfcapd's files
(``nfdump -I``), records parsed by the netflow-py loop (it has no store).

Our collector's store writes fresh (Arrow) segments and compacts them into Parquet once
writes pause; after each of its steps the bench waits for that compaction
(``compact_s_after``) so that the next collector's step has the CPUs to itself.

Every collector gets the same socket buffer (``--rcvbuf``, default 4 MiB = this kernel's
rmem_max, which is what nfcapd gets). The machine may be shared: figures are noisy; the
JSON carries the load average seen at start and end.

    .venv/bin/python bench/collect.py [--json] [--rates 0.3,0.6,...,2.7,3,3.3,3.6,4.2] [--step-s 2]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from shadowcast.collect import recv
from shadowcast.collect.decoders import FlowDecoder
from shadowcast.collect.synth import build_stream

PER_PACKET = 30
BURST = 32  # datagrams per sendmmsg call (an exporter flushing its cache sends bursts)
REPO = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- decode only -----------------------------------------------------------------------------


def decode_rate(packets: list[bytes], burst: int = 512, repeat: int = 3) -> float:
    """Best of ``repeat`` passes, fresh decoder each, bursts as the workers decode them."""
    best = 0.0
    for _ in range(repeat):
        dec = FlowDecoder()
        pairs = [(p, "192.0.2.1") for p in packets]
        n = 0
        t0 = time.perf_counter()
        for i in range(0, len(pairs), burst):
            n += dec.decode(pairs[i : i + burst], time.time()).num_rows
        best = max(best, n / (time.perf_counter() - t0))
    return best


# -- the paced sender (own process) ------------------------------------------------------------


def write_streams(streams: list[list[bytes]], path: Path) -> None:
    """One file, datagrams interleaved by exporter as they would arrive."""
    with open(path, "wb") as f:
        for i in range(max(map(len, streams))):
            for k, s in enumerate(streams):
                if i < len(s):
                    f.write(k.to_bytes(1, "big") + len(s[i]).to_bytes(2, "big") + s[i])


def read_streams(path: Path) -> list[tuple[int, bytes]]:
    data = path.read_bytes()
    out, off = [], 0
    while off < len(data):
        k, n = data[off], int.from_bytes(data[off + 1 : off + 3], "big")
        out.append((k, data[off + 3 : off + 3 + n]))
        off += 3 + n
    return out


# the sender's sendmmsg uses the receiver's structures (struct iovec, msghdr, mmsghdr)
_Iovec, _Msghdr, _Mmsghdr = recv._Iovec, recv._Msghdr, recv._Mmsghdr


class Exporter:
    """One exporter's datagrams, sent in bursts with sendmmsg(2) on a connected socket."""

    def __init__(self, k: int, datagrams: list[bytes], dest: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((f"127.0.0.{11 + k}", 0))
        self.sock.connect(dest)
        self.data = ctypes.create_string_buffer(b"".join(datagrams))
        n = len(datagrams)
        self.iov = (_Iovec * n)()
        self.msgs = (_Mmsghdr * n)()
        at = ctypes.addressof(self.data)
        for i, d in enumerate(datagrams):
            self.iov[i].base, self.iov[i].len = at, len(d)
            hdr = self.msgs[i].hdr
            hdr.iov, hdr.iovlen = ctypes.addressof(self.iov[i]), 1
            at += len(d)
        self.n, self.next = n, 0

    def send(self, count: int, sendmmsg: Any) -> int:
        """Up to ``count`` more datagrams; how many went."""
        count = min(count, self.n - self.next)
        if count <= 0:
            return 0
        got = sendmmsg(self.sock.fileno(), ctypes.addressof(self.msgs[self.next]), count, 0)
        if got <= 0:  # a full loopback queue: skip them, as an exporter would
            got = count
        self.next += got
        return int(got)


def sender(path: str, port: int, mine: list[int], rate: float, seconds: float, q: Any) -> None:
    """Send exporters ``mine`` of the stream at ``rate`` records/s (this process's share)
    for ``seconds``, in bursts of up to BURST datagrams each; report what went."""
    sendmmsg = ctypes.CDLL(None, use_errno=True).sendmmsg
    sendmmsg.argtypes = [ctypes.c_int, ctypes.c_void_p, ctypes.c_uint, ctypes.c_int]
    streams: dict[int, list[bytes]] = {k: [] for k in mine}
    for k, p in read_streams(Path(path)):
        if k in streams:
            streams[k].append(p)
    exporters = [Exporter(k, streams[k], ("127.0.0.1", port)) for k in mine]
    total = min(sum(e.n for e in exporters), int(rate * seconds / PER_PACKET))
    per_s = rate / PER_PACKET
    sent = 0
    t0 = time.perf_counter()
    while sent < total:
        due = min(total, int((time.perf_counter() - t0) * per_s) + BURST)
        if sent >= due:
            time.sleep(0.0005)
            continue
        before = sent
        for e in exporters:
            sent += e.send(min(BURST, due - sent), sendmmsg)
            if sent >= due:
                break
        if sent == before:
            break  # every exporter is out of datagrams
    q.put((sent * PER_PACKET, time.perf_counter() - t0))


def offer(
    path: Path, port: int, n_exporters: int, rate: float, seconds: float, senders: int = 1
) -> tuple[int, float]:
    """``senders`` processes, each with its share of the exporters and of the rate."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    parts = [list(range(i, n_exporters, senders)) for i in range(senders)]
    parts = [p for p in parts if p]
    procs = [
        ctx.Process(
            target=sender,
            args=(str(path), port, p, rate * len(p) / n_exporters, seconds, q),
        )
        for p in parts
    ]
    for p in procs:
        p.start()
    got = [q.get(timeout=seconds * 10 + 120) for _ in procs]
    for p in procs:
        p.join(30)
    return sum(int(s) for s, _ in got), max(float(t) for _, t in got)


# -- collectors --------------------------------------------------------------------------------


def settle(read: Any, quiet_s: float = 3.0, limit_s: float = 60.0) -> int:
    """Poll ``read()`` until it stops growing for ``quiet_s``."""
    last, since, until = read(), time.monotonic(), time.monotonic() + limit_s
    while time.monotonic() < until:
        time.sleep(0.25)
        now = read()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            break
    return int(last)


class Shadowcast:
    name = "shadowcast"

    def __init__(self, tmp: Path, rcvbuf: int, workers: int) -> None:
        self.compact_s: list[float] = []  # per step: waiting for its compaction
        self.port, self.mport = free_udp_port(), free_tcp_port()
        self.err = open(tmp / "shadowcast.log", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "shadowcast.cli", "collect", "--bind", "127.0.0.1"]
            + ["--listen", f"netflow={self.port}", "--workers", str(workers)]
            + ["--rcvbuf", str(rcvbuf), "--metrics-port", str(self.mport)]
            + ["--store", str(tmp / "bench.duckdb"), "--json"],
            cwd=tmp,
            stdout=subprocess.PIPE,
            stderr=self.err,
            text=True,
        )
        log_path = tmp / "shadowcast.log"
        until = time.monotonic() + 120
        while "collector ready" not in log_path.read_text():
            if self.proc.poll() is not None or time.monotonic() > until:
                raise RuntimeError(f"shadowcast collect did not start: {log_path.read_text()}")
            time.sleep(0.1)

    def metric(self, name: str) -> int:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.mport}/metrics", timeout=5) as r:
            text = r.read().decode()
        m = re.search(rf"^{name} (\S+)$", text, re.M)
        return int(float(m.group(1))) if m else 0

    def stored(self) -> int:
        return self.metric("shadowcast_collect_stored_rows_total")

    def step(
        self, path: Path, n_exp: int, rate: float, seconds: float, senders: int
    ) -> tuple[int, float, int]:
        before = self.stored()
        sent, took = offer(path, self.port, n_exp, rate, seconds, senders)
        stored = settle(self.stored) - before
        # Its store compacts fresh segments once writes pause: let it finish before the
        # next collector's step, which must not share the CPUs with it.
        t0, until = time.monotonic(), time.monotonic() + 300
        while self.metric("shadowcast_collect_store_fresh_rows") and time.monotonic() < until:
            time.sleep(0.25)
        self.compact_s.append(round(time.monotonic() - t0, 2))
        return sent, took, stored

    def close(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        out, _ = self.proc.communicate(timeout=120)
        self.err.close()
        return dict(json.loads(out)) if out.strip() else {}


class Nfcapd:
    name = "nfcapd"

    def __init__(self, tmp: Path, rcvbuf: int) -> None:
        self.tmp, self.rcvbuf, self.i = tmp, rcvbuf, 0

    def step(
        self, path: Path, n_exp: int, rate: float, seconds: float, senders: int
    ) -> tuple[int, float, int]:
        self.i += 1
        out = self.tmp / f"nfcapd{self.i}"
        out.mkdir()
        port = free_udp_port()
        proc = subprocess.Popen(
            ["nfcapd", "-b", "127.0.0.1", "-p", str(port), "-w", str(out), "-t", "3600"]
            + ["-B", str(self.rcvbuf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)
            sent, took = offer(path, port, n_exp, rate, seconds, senders)
            time.sleep(1.0)
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        stored = 0
        for f in out.glob("nfcapd.*"):
            info = subprocess.run(
                ["nfdump", "-r", str(f), "-I"], capture_output=True, text=True, timeout=60
            ).stdout
            m = re.search(r"^Flows: (\d+)", info, re.M)
            stored += int(m.group(1)) if m else 0
        shutil.rmtree(out, ignore_errors=True)
        return sent, took, stored


NETFLOW_PY_LOOP = r"""
import signal, socket, sys, netflow
port, rcvbuf, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
s.bind(("127.0.0.1", port)); s.settimeout(0.2)
templates, n, stop = {"netflow": {}, "ipfix": {}}, 0, []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
open(ready, "w").close()
while not stop:
    try:
        data, _ = s.recvfrom(65535)
    except socket.timeout:
        continue
    try:
        n += len(netflow.parse_packet(data, templates).flows)
    except Exception:
        pass
print(n, flush=True)
"""


class NetflowPy:
    name = "netflow-py"

    def __init__(self, tmp: Path, rcvbuf: int) -> None:
        self.tmp, self.rcvbuf = tmp, rcvbuf

    def step(
        self, path: Path, n_exp: int, rate: float, seconds: float, senders: int
    ) -> tuple[int, float, int]:
        port, ready = free_udp_port(), self.tmp / "netflow-py.ready"
        ready.unlink(missing_ok=True)
        proc = subprocess.Popen(
            [sys.executable, "-c", NETFLOW_PY_LOOP, str(port), str(self.rcvbuf), str(ready)],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            until = time.monotonic() + 60
            while not ready.exists() and time.monotonic() < until:
                time.sleep(0.05)
            sent, took = offer(path, port, n_exp, rate, seconds, senders)
            # it parses what its socket buffer still holds, then stops
            time.sleep(min(10.0, 0.2 + self.rcvbuf / 2e6))
            proc.send_signal(signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        return sent, took, int(out.split()[-1]) if out.split() else 0


# -- main --------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--decode-records", type=int, default=150_000)
    ap.add_argument(
        "--rates",
        default="0.3,0.6,0.9,1.2,1.5,1.8,2.4,2.7,3.0,3.3,3.6,4.2",
        help="offered Mrecords/s",
    )
    ap.add_argument("--step-s", type=float, default=2.0)
    ap.add_argument("--exporters", type=int, default=8)
    ap.add_argument("--senders", type=int, default=1, help="sending processes (sendmmsg)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rcvbuf", type=int, default=4 * 1024 * 1024, help="every collector's")
    ap.add_argument(
        "--shadowcast-rcvbuf",
        type=int,
        default=0,
        help="ours only (it may exceed rmem_max with CAP_NET_ADMIN; default: --rcvbuf)",
    )
    ap.add_argument("--netflow-py-rates", default="0.03,0.3", help="Mrecords/s (it is slow)")
    ap.add_argument("--skip", default="", help="comma list of collectors to leave out")
    args = ap.parse_args()
    t_start = time.monotonic()
    load0 = os.getloadavg()

    log("building streams ...")
    decode: dict[str, float] = {}
    for proto in ("v5", "v9", "ipfix", "sflow"):
        stream = build_stream(proto, args.decode_records, seed=7)
        decode[proto] = decode_rate(stream)
        log(f"decode {proto}: {decode[proto] / 1e6:.3f} M records/s (one core)")

    rates = [float(r) * 1e6 for r in args.rates.split(",")]
    py_rates = [float(r) * 1e6 for r in args.netflow_py_rates.split(",")]
    need = int(max(rates + py_rates) * args.step_s)
    per_exp = -(-need // args.exporters)
    # flows of the last minute: the collector refuses records a year old (collect.validate)
    now_ms = int(time.time() * 1000) - 60_000
    streams = [
        build_stream("v9", per_exp, seed=100 + k, start_ms=now_ms) for k in range(args.exporters)
    ]
    tmp = Path(tempfile.mkdtemp(prefix="shadowcast-bench-"))
    path = tmp / "stream.bin"
    write_streams(streams, path)
    del streams

    e2e: list[dict[str, Any]] = []
    skip = set(args.skip.split(",")) - {""}
    have_nfcapd = shutil.which("nfcapd") is not None and shutil.which("nfdump") is not None
    try:
        runs: list[tuple[Any, list[float]]] = []
        if "shadowcast" not in skip:
            runs.append(
                (Shadowcast(tmp, args.shadowcast_rcvbuf or args.rcvbuf, args.workers), rates)
            )
        if "nfcapd" not in skip and have_nfcapd:
            runs.append((Nfcapd(tmp, args.rcvbuf), rates))
        if "netflow-py" not in skip:
            runs.append((NetflowPy(tmp, args.rcvbuf), py_rates))
        final: dict[str, Any] = {}
        # rate by rate, each collector in turn: a change of load hits both alike
        steps = sorted({r for _, rs in runs for r in rs})
        for rate in steps:
            for coll, rs in runs:
                if rate not in rs:
                    continue
                sent, took, stored = coll.step(
                    path, args.exporters, rate, args.step_s, args.senders
                )
                row = {
                    "collector": coll.name,
                    "offered_records_per_s": round(rate),
                    "achieved_records_per_s": round(sent / took) if took else 0,
                    "sent": sent,
                    "stored": stored,
                    "stored_share": round(stored / sent, 4) if sent else 0.0,
                    "stored_records_per_s": round(stored / took) if took else 0,
                    "loadavg_1m": round(os.getloadavg()[0], 2),
                }
                if getattr(coll, "compact_s", None):  # its store's catch-up after the step
                    row["compact_s_after"] = coll.compact_s[-1]
                e2e.append(row)
                log(
                    f"{coll.name:>10}: offered {rate / 1e6:.2f} M/s (achieved "
                    f"{row['achieved_records_per_s'] / 1e6:.2f}) stored {row['stored_share']:.1%}"
                    f" (load {row['loadavg_1m']})"
                )
        for coll, _ in runs:
            if isinstance(coll, Shadowcast):
                final = coll.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    def summary(name: str) -> dict[str, float]:
        rows = [r for r in e2e if r["collector"] == name]
        lossless = [r for r in rows if r["stored_share"] >= 0.999]
        return {
            "lossless_up_to": float(
                max((r["achieved_records_per_s"] for r in lossless), default=0)
            ),
            # the rate both collectors were offered (the achieved rate differs by the
            # senders' jitter, a few hundred records/s): the floor compares these
            "lossless_offered_up_to": float(
                max((r["offered_records_per_s"] for r in lossless), default=0)
            ),
            "saturation": float(max((r["stored_records_per_s"] for r in rows), default=0)),
        }

    sums = {n: summary(n) for n in ("shadowcast", "nfcapd", "netflow-py")}

    def ratio(a: float, b: float) -> float | None:
        return round(a / b, 3) if b else None

    ratios = {
        "saturation_vs_nfcapd": ratio(
            sums["shadowcast"]["saturation"], sums["nfcapd"]["saturation"]
        ),
        "saturation_vs_netflow_py": ratio(
            sums["shadowcast"]["saturation"], sums["netflow-py"]["saturation"]
        ),
        "lossless_vs_nfcapd": ratio(
            sums["shadowcast"]["lossless_up_to"], sums["nfcapd"]["lossless_up_to"]
        ),
    }
    doc = {
        "decode_records_per_s": {k: round(v) for k, v in decode.items()},
        "e2e": e2e,
        "summary": sums,
        "ratios": ratios,
        "floors": {
            "decode_ipfix_1_5M": decode["ipfix"] >= 1.5e6,
            "lossless_0_6M": sums["shadowcast"]["lossless_up_to"] >= 0.6e6 * 0.97,
            "lossless_at_least_nfcapd": sums["shadowcast"]["lossless_offered_up_to"]
            >= sums["nfcapd"]["lossless_offered_up_to"],
            "saturation_half_nfcapd": (ratios["saturation_vs_nfcapd"] or 0) >= 0.5,
        },
        "shadowcast_final_stats": {k: final.get(k) for k in ("totals", "socket_drops")},
        "setup": {
            "stream": "NetFlow v9, 30 records/datagram",
            "exporters": args.exporters,
            "workers": args.workers,
            "rcvbuf": args.rcvbuf,
            "shadowcast_rcvbuf": args.shadowcast_rcvbuf or args.rcvbuf,
            "step_s": args.step_s,
            "senders": args.senders,
            "cpus": os.cpu_count(),
            "loadavg_start": load0,
            "loadavg_end": os.getloadavg(),
            "seconds": round(time.monotonic() - t_start, 1),
        },
    }
    if args.json:
        print(json.dumps(doc))
        return
    print(f"decode only, one core (records/s): {doc['decode_records_per_s']}")
    print(f"{'collector':>10} {'offered/s':>12} {'achieved/s':>12} {'stored':>8} {'stored/s':>12}")
    for r in e2e:
        print(
            f"{r['collector']:>10} {r['offered_records_per_s']:>12,} "
            f"{r['achieved_records_per_s']:>12,} {r['stored_share']:>8.1%} "
            f"{r['stored_records_per_s']:>12,}"
        )
    print(f"summary: {sums}")
    print(f"ratios: {ratios}")
    print(f"floors: {doc['floors']}  (load average {load0} -> {os.getloadavg()})")


if __name__ == "__main__":
    main()
