"""Benchmark: hostile files against the loaders (issue #12): time to refuse and peak RSS.

Each bomb is made here, small on disk (zeros streamed through deflate with a full flush per
MiB, so one compressed MiB repeats), then loaded in a fresh child process that reports the
time the loader took (imports done before) and its peak RSS (``ru_maxrss``), beside the RSS
after the imports alone. One JSON object per bomb.

    .venv/bin/python bench/bombs.py [--dir DIR] [--only SUBSTRING]
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Callable
from pathlib import Path

MIB = 1 << 20
GIB = 1 << 30
ZEROS = bytes(MIB)


class GzipZeros:
    """A gzip stream written piecewise; runs of zeros cost one compressed MiB, repeated."""

    def __init__(self) -> None:
        self.comp = zlib.compressobj(9, zlib.DEFLATED, -15)
        self.out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"]
        self.crc = self.size = 0
        self.one: bytes | None = None

    def data(self, b: bytes) -> None:
        self.out.append(self.comp.compress(b))
        self.crc, self.size = zlib.crc32(b, self.crc), self.size + len(b)

    def zeros(self, n: int) -> None:
        k, rest = divmod(n, MIB)
        if k:
            self.out.append(self.comp.flush(zlib.Z_FULL_FLUSH))  # the deflate state restarts
            if self.one is None:
                self.one = self.comp.compress(ZEROS) + self.comp.flush(zlib.Z_FULL_FLUSH)
            self.out.append(self.one * k)  # ... so every MiB of zeros compresses the same
            for _ in range(k):
                self.crc = zlib.crc32(ZEROS, self.crc)
            self.size += k * MIB
        if rest:
            self.data(bytes(rest))

    def close(self) -> bytes:
        self.out.append(self.comp.flush())
        self.out.append(struct.pack("<II", self.crc, self.size & 0xFFFFFFFF))
        return b"".join(self.out)


def zero_tar_gz(members: list[tuple[str, int]], pax: dict[str, str] | None = None) -> bytes:
    w = GzipZeros()
    for name, size in members:
        info = tarfile.TarInfo(name)
        info.size = size
        if pax:
            info.pax_headers = pax
        w.data(info.tobuf(format=tarfile.PAX_FORMAT if pax else tarfile.GNU_FORMAT))
        w.zeros(size + (-size) % 512)
    w.zeros(1024)
    w.zeros((-w.size) % tarfile.RECORDSIZE)
    return w.close()


def csv_gz(zeros: int) -> bytes:
    w = GzipZeros()
    w.data(b"time,src,dst,value\n")
    w.zeros(zeros)
    return w.close()


ALIAS_BOMB = (
    b"a: &a [x, x, x, x, x, x, x, x, x]\n"
    + b"".join(b"%c: &%c [%s]\n" % (c, c, b", ".join([b"*%c" % (c - 1)] * 9)) for c in b"bcdefg")
    + b"rules: *g\n"
)

BOMBS: dict[str, tuple[str, str, Callable[[], bytes]]] = {
    "tar.gz, one 1 GiB .xml member": (
        "b1.tar.gz", "demands", lambda: zero_tar_gz([("tm/m-20240101-0000.xml", GIB)])
    ),
    "tar.gz, one 3 GiB .xml member": (
        "b3.tar.gz", "demands", lambda: zero_tar_gz([("tm/m-20240101-0000.xml", 3 * GIB)])
    ),
    "tar.gz, 70 x 60 MiB .bin members (4.1 GiB)": (
        "many.tar.gz", "demands", lambda: zero_tar_gz([(f"p{i}.bin", 60 * MIB) for i in range(70)])
    ),
    "tar.gz, 2 MiB pax header": (
        "pax.tar.gz", "demands",
        lambda: zero_tar_gz([("m-20240101-0000.xml", 10)], pax={"comment": "x" * (2 * MIB)}),
    ),
    "csv.gz, 1 GiB of zeros on one line": ("z.csv.gz", "demands", lambda: csv_gz(GIB)),
    "node-link JSON nested 100,000 deep": (
        "deep.json", "topology", lambda: b"[" * 100_000 + b"]" * 100_000
    ),
    "node-link JSON, 5000-digit capacity": (
        "bigint.json", "topology",
        lambda: b'{"nodes": [{"id": "A"}, {"id": "B"}], "links": [{"source": "A", '
        b'"target": "B", "capacity": ' + b"9" * 5000 + b"}]}",
    ),
    "rules YAML alias bomb (9^7 nodes)": ("bomb.yaml", "rules", lambda: ALIAS_BOMB),
}  # fmt: skip

CHILD = """
import json, resource, sys, time
from pathlib import Path
kind, path = sys.argv[1], Path(sys.argv[2])
import shadowcast.datasets, shadowcast.profile.rules
from shadowcast.errors import ShadowcastError
# import what the loaders import lazily, so that the time below is the loader's own
import pandas, shadowcast.datasets.demands, shadowcast.datasets.sndlib, shadowcast.datasets.topology
rss_imports = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
t0 = time.perf_counter()
try:
    if kind == "demands":
        shadowcast.datasets.load_demands(path)
    elif kind == "topology":
        shadowcast.datasets.load_topology(path)
    else:
        shadowcast.profile.rules.RuleSet.load(path)
    result = "accepted"
except ShadowcastError as exc:
    result = "refused: " + str(exc)
except BaseException as exc:
    result = f"ESCAPED {type(exc).__name__}: {str(exc)[:200]}"
print(json.dumps({
    "result": result,
    "seconds": round(time.perf_counter() - t0, 3),
    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    "rss_after_imports_mb": round(rss_imports),
}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=None, help="where to write the bombs")
    ap.add_argument("--only", default="", help="run the bombs whose label contains this")
    args = ap.parse_args()
    folder = args.dir or Path(tempfile.mkdtemp(prefix="bombs-"))
    folder.mkdir(parents=True, exist_ok=True)
    for label, (name, kind, make) in BOMBS.items():
        if args.only not in label:
            continue
        path = folder / name
        if not path.exists():
            path.write_bytes(make())
        proc = subprocess.run(
            [sys.executable, "-c", CHILD, kind, str(path)],
            capture_output=True,
            text=True,
            timeout=1800,
            env=os.environ.copy(),
            check=False,
        )
        if proc.returncode:
            tail = proc.stderr.strip().splitlines()[-1:] or [""]
            row: dict[str, object] = {"result": f"child died ({proc.returncode}): {tail[0]}"}
        else:
            row = json.loads(proc.stdout.strip().splitlines()[-1])
        print(json.dumps({"bomb": label, "file_bytes": path.stat().st_size, **row}), flush=True)


if __name__ == "__main__":
    main()
