"""Labelled training flows from real programs in network namespaces (root).

Each *session* runs one kind of traffic (:data:`shadowcast.lab.genkinds.KINDS`: segmented
video, iperf3/HTTP/scp bulk, ssh typing, game, SIP call, conference, web browsing, DNS,
ping) between a client and a server namespace joined by a veth pair whose two directions
are shaped by tbf at rates drawn for the session. tcpdump in the client namespace records
it; the project's own pcap reader (:func:`shadowcast.profile.pcap.flows_from_pcap`, nfstream)
turns the capture into flows, and every flow gets the session's label: the generator that
made it, never nDPI. Sessions are planned from one seed (kinds in turn, parameters drawn),
run ``slots`` at a time, each bounded in time, and the whole run stops starting sessions
when ``budget_s`` is spent. Every namespace carries the prefix (``scgen-``).

    python -m shadowcast.lab.trafficgen OUT.parquet [--sessions N] [--slots K]
        [--budget-s S] [--seed N] [--kinds a,b] [--max-duration-s S]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import subprocess
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute
import pyarrow.parquet

from shadowcast.errors import DataError, ProbeError
from shadowcast.lab import netns
from shadowcast.lab.genkinds import KINDS, Ctx, Params, missing_tools
from shadowcast.lab.traffic import Processes

log = logging.getLogger(__name__)
pc: Any = pyarrow.compute
pq: Any = pyarrow.parquet

PREFIX = "scgen-"
SNAPLEN = 128
CHUNK_S = 30  # active timeout of the "chunk" view (exporters: 30 s to 30 min)
META_KEY = b"shadowcast.trafficgen"


@dataclass(frozen=True, slots=True)
class Session:
    """One run of one kind: its label, seed, access-link rates and parameters."""

    run: int  # the plan's seed
    index: int
    kind: str
    label: str
    seed: int
    down_mbps: float  # server -> client (tbf on the server's veth)
    up_mbps: float
    queue_ms: float  # tbf queue bound at the shaped rate
    params: Params = field(hash=False)

    @property
    def name(self) -> str:
        return f"r{self.run}-{self.index:04d}-{self.kind}"

    @property
    def duration_s(self) -> float:
        return float(self.params["duration_s"])


def plan_sessions(
    n: int, seed: int = 1, kinds: Sequence[str] | None = None, max_duration_s: float = 0.0
) -> list[Session]:
    """``n`` sessions, labels in turn and the kinds of each label in turn (pure, seeded);
    ``max_duration_s`` > 0 caps every session's duration."""
    names = list(kinds) if kinds else list(KINDS)
    unknown = [k for k in names if k not in KINDS]
    if unknown:
        raise DataError(f"unknown traffic kind(s) {unknown}; known: {sorted(KINDS)}")
    by_label: dict[str, list[str]] = {}
    for k in names:
        by_label.setdefault(KINDS[k].label, []).append(k)
    labels = sorted(by_label)
    rng = random.Random(seed)
    out = []
    for i in range(n):
        label = labels[i % len(labels)]
        group = by_label[label]
        kind = group[(i // len(labels)) % len(group)]
        params = KINDS[kind].params(rng)
        if max_duration_s > 0:
            params["duration_s"] = min(params["duration_s"], max_duration_s)
        down = float(np.exp(rng.uniform(np.log(1.0), np.log(100.0))))
        up = down * rng.uniform(0.1, 1.0)
        out.append(Session(seed, i, kind, label, rng.randrange(1 << 30), down, up,
                           rng.uniform(20, 200), params))  # fmt: skip
    return out


@dataclass(frozen=True, slots=True)
class Slot:
    """A client and a server namespace joined by one veth pair."""

    index: int
    prefix: str = PREFIX

    @property
    def client_ns(self) -> str:
        return f"{self.prefix}c{self.index}"

    @property
    def server_ns(self) -> str:
        return f"{self.prefix}s{self.index}"

    def dev(self, side: str) -> str:
        return f"{self.prefix.rstrip('-')}{self.index}{side}"

    def addr(self, side: str) -> str:
        return f"10.77.{self.index}.{1 if side == 'c' else 2}"

    def up(self) -> None:
        self.down()
        ns = {"c": self.client_ns, "s": self.server_ns}
        for n in ns.values():
            netns.run(["ip", "netns", "add", n])
        netns.run(["ip", "link", "add", self.dev("c"), "netns", ns["c"], "type", "veth",
                   "peer", "name", self.dev("s"), "netns", ns["s"]])  # fmt: skip
        for side, n in ns.items():
            netns.sysctl(n, {"net.ipv6.conf.all.disable_ipv6": "1",
                             "net.ipv6.conf.default.disable_ipv6": "1"})  # fmt: skip
            netns.batch(n, [f"addr add {self.addr(side)}/30 dev {self.dev(side)}",
                            f"link set {self.dev(side)} up", "link set lo up"])  # fmt: skip
            # the capture must see wire-sized packets, not 64 kB offload super-packets
            netns.run(["ip", "netns", "exec", n, "ethtool", "-K", self.dev(side), "tso", "off",
                       "gso", "off", "gro", "off"])  # fmt: skip

    def shape(self, s: Session) -> None:
        for side, n, mbps in (("s", self.server_ns, s.down_mbps), ("c", self.client_ns,
                                                                     s.up_mbps)):  # fmt: skip
            rate = mbps * 1e6
            burst = max(15_000, int(rate / 8 / 100))
            limit = max(3 * 1514, int(rate / 8 * s.queue_ms / 1000))
            netns.tc(n, "qdisc", "replace", "dev", self.dev(side), "root", "tbf", "rate",
                     f"{int(rate)}bit", "burst", str(burst), "limit", str(limit))  # fmt: skip

    def down(self) -> None:
        for n in (self.client_ns, self.server_ns):
            if n in netns.list_netns(self.prefix):
                netns.kill_netns_pids(n)
                netns.run(["ip", "netns", "del", n], check=False)


def _spawn(ns: str, argv: list[str], cwd: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["ip", "netns", "exec", ns, *argv], cwd=cwd,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def run_session(slot: Slot, s: Session, assets: Path, home: Path) -> Path:
    """Run ``s`` in ``slot``; the capture (client side) is ``home/<name>.pcap``."""
    home.mkdir(parents=True, exist_ok=True)
    slot.shape(s)
    ctx = Ctx(s.params, s.seed, slot.addr("c"), slot.addr("s"), assets, home)
    servers, clients = KINDS[s.kind].launch(ctx)
    pcap = home / f"{s.name}.pcap"
    filt = f"ip and host {slot.addr('c')} and host {slot.addr('s')}"
    cap = subprocess.Popen(
        ["ip", "netns", "exec", slot.client_ns, "tcpdump", "-i", slot.dev("c"), "-s",
         str(SNAPLEN), "-U", "-n", "-w", str(pcap), filt],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert cap.stderr is not None
    first = cap.stderr.readline().decode(errors="replace").strip()  # "listening on ..."
    if cap.poll() is not None:
        raise ProbeError(f"tcpdump in {slot.client_ns}: {first or cap.returncode}")
    with Processes() as procs:
        procs.procs.append(cap)
        procs.procs += [_spawn(slot.server_ns, a, home) for a in servers]
        time.sleep(0.5 if servers else 0.0)
        cli = [_spawn(slot.client_ns, a, home) for a in clients]
        procs.procs += cli
        stop = time.monotonic() + s.duration_s + 30
        for c in cli:
            try:
                c.wait(timeout=max(1.0, stop - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("session %s over time", s.name)
        time.sleep(1.0)  # last packets (FIN, BYE) into the capture
        procs.procs.remove(cap)
    cap.terminate()
    cap.wait(timeout=10)
    cap.stderr.close()
    for n in (slot.client_ns, slot.server_ns):
        netns.kill_netns_pids(n)  # stragglers (sshd children) of this session only
    return pcap


def session_flows(pcap: Path, s: Session, chunk_s: int = CHUNK_S) -> pa.Table:
    """The capture's flows (project pcap reader) labelled with the session's generator:
    whole flows (``view="flow"``) and, for flows longer than ``chunk_s``, the records an
    exporter with that active timeout would send (``view="chunk"``)."""
    from shadowcast.profile.pcap import flows_from_pcap

    whole = flows_from_pcap(pcap, exporter="trafficgen")
    parts = [(whole, "flow")]
    if chunk_s > 0:
        cut = flows_from_pcap(pcap, exporter="trafficgen", active_timeout=chunk_s)
        names = ("src_addr", "src_port", "dst_addr", "dst_port", "proto")
        a, ap, b, bp, proto = (cut.column(c).to_pylist() for c in names)
        # either end may send a record's first packet: the key is direction-free
        keys = [(p, *sorted([(x, xp), (y, yp)])) for x, xp, y, yp, p in
                zip(a, ap, b, bp, proto, strict=True)]  # fmt: skip
        count = Counter(keys)
        split = np.array([count[k] > 1 for k in keys], dtype=bool)
        parts.append((cut.filter(pa.array(split)), "chunk"))  # split flows only
    out = []
    for t, view in parts:
        if not KINDS[s.kind].icmp:  # port-unreachables of a side that already left
            t = t.filter(pc.not_equal(t.column("proto"), 1))
        n = t.num_rows
        for name, value in (("label", s.label), ("kind", s.kind), ("session", s.name),
                            ("view", view)):  # fmt: skip
            t = t.append_column(name, pa.array([value] * n, pa.string()))
        out.append(t)
    return pa.concat_tables(out)


def make_assets(d: Path) -> None:
    """Keys, a certificate and a G.711 file shared by every session of a run."""
    d.mkdir(parents=True, exist_ok=True)
    for name in ("id_ed25519", "host_ed25519"):
        netns.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / name)])
    netns.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "30",
            "-subj",
            "/CN=lab",
            "-keyout",
            str(d / "key.pem"),
            "-out",
            str(d / "cert.pem"),
        ]
    )
    (d / "audio.raw").write_bytes(random.Random(0).randbytes(8000 * 10))  # 10 s, looped
    Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # sshd's privilege-separation dir


def check_tools(kinds: Sequence[str]) -> dict[str, str]:
    """``{kind: why it cannot run}`` for every kind missing root or a program."""
    ok, why = netns.have_root()
    base = [t for t in ("tcpdump", "ethtool", "ssh-keygen", "openssl") if not shutil.which(t)]
    out = {}
    for k in kinds:
        miss = base + missing_tools(k)
        if not ok or miss:
            out[k] = why if not ok else f"not installed: {', '.join(miss)}"
    return out


def generate(
    out: Path,
    sessions: Sequence[Session],
    *,
    slots: int = 3,
    budget_s: float = 3600.0,
    workdir: Path | None = None,
    keep_pcaps: Path | None = None,
    prefix: str = PREFIX,
    on_done: Callable[[Session, str], None] | None = None,
) -> dict[str, Any]:
    """Run ``sessions`` (``slots`` at a time, none started after ``budget_s``), write the
    labelled flows to ``out`` (Parquet) and return a summary; ``keep_pcaps``: a folder
    to keep the captures in."""
    cant = check_tools(sorted({s.kind for s in sessions}))
    todo = [s for s in sessions if s.kind not in cant]
    if not todo:
        raise ProbeError(f"no session can run here: {cant}")
    base = Path(tempfile.mkdtemp(prefix="scgen-", dir=workdir))
    make_assets(base / "assets")
    if not 1 <= len(prefix) <= 7:
        raise ProbeError(f"namespace prefix {prefix!r}: 1 to 7 characters")
    free = [Slot(i, prefix) for i in range(slots)]
    for sl in free:
        sl.up()
    lock, t0 = threading.Lock(), time.monotonic()
    done: list[tuple[Session, Path]] = []
    skipped: dict[str, str] = {s.name: cant[s.kind] for s in sessions if s.kind in cant}

    def one(s: Session) -> None:
        with lock:
            late = time.monotonic() - t0 + s.duration_s > budget_s
            if late:
                skipped[s.name] = "time budget spent"
            slot = free.pop() if not late else Slot(-1)
        if late:
            if on_done is not None:
                on_done(s, skipped[s.name])
            return
        try:
            pcap = run_session(slot, s, base / "assets", base / s.name)
            with lock:
                done.append((s, pcap))
            if on_done is not None:
                on_done(s, "ok")
        except Exception as exc:  # noqa: BLE001 - one session's failure must not end the run
            log.warning("session %s failed: %s", s.name, exc)
            with lock:
                skipped[s.name] = f"{type(exc).__name__}: {exc}"
            if on_done is not None:
                on_done(s, f"failed: {exc}")
        finally:
            with lock:
                free.append(slot)

    try:
        with ThreadPoolExecutor(max_workers=slots) as pool:
            list(pool.map(one, todo))
    finally:
        for sl in (Slot(i, prefix) for i in range(slots)):
            sl.down()
    tables = []
    for s, pcap in sorted(done, key=lambda d: d[0].index):
        if keep_pcaps is not None:
            keep_pcaps.mkdir(parents=True, exist_ok=True)
            shutil.copy(pcap, keep_pcaps / pcap.name)
        try:
            tables.append(session_flows(pcap, s))
        except DataError as exc:
            skipped[s.name] = str(exc)
    shutil.rmtree(base, ignore_errors=True)
    if not tables:
        raise ProbeError(f"no session produced flows: {skipped}")
    table = pa.concat_tables(tables)
    meta = {s.name: {"kind": s.kind, "label": s.label, "seed": s.seed, "down_mbps": s.down_mbps,
                     "up_mbps": s.up_mbps, "queue_ms": s.queue_ms, "params": s.params}
            for s, _ in done}  # fmt: skip
    table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    out.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out, compression="zstd")
    return {"sessions": len(done), "flows": table.num_rows, "skipped": skipped,
            "wall_s": round(time.monotonic() - t0, 1), "out": str(out)}  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    ap.add_argument("out", type=Path)
    ap.add_argument("--sessions", type=int, default=60)
    ap.add_argument("--slots", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=3600.0)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--kinds", default="", help="comma-separated kinds (default: all)")
    ap.add_argument("--max-duration-s", type=float, default=0.0)
    ap.add_argument("--keep-pcaps", type=Path, default=None, help="folder to keep captures in")
    ap.add_argument("--prefix", default=PREFIX, help="namespace prefix (<= 7 characters)")
    a = ap.parse_args(argv)
    kinds = [k for k in a.kinds.split(",") if k] or None
    try:
        plan = plan_sessions(a.sessions, a.seed, kinds, a.max_duration_s)
        summary = generate(
            a.out,
            plan,
            slots=a.slots,
            budget_s=a.budget_s,
            keep_pcaps=a.keep_pcaps,
            prefix=a.prefix,
            on_done=lambda s, r: print(f"{s.name}: {r}", flush=True),
        )
    except (DataError, ProbeError) as exc:
        print(f"error: {exc}")
        return 2
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
