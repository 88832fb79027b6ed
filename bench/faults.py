"""The collector attacked from outside, at scale (``make faults``): one JSON object.

The same scenarios as tests/faults (which run them small in ``make test``), sized like the
attacks that found the faults: 200 spoofed exporters x 1,100 templates, 40 x 300
template-less 64 KB datagrams, one record starting at 2^52 ms among 200,000 good ones, a
store away for 10 s under 500,000 records, SIGKILL with 100,000 records in flight. Loopback
only; each scenario checks its outcome (``ok``) and reports its figures; the exit status is
1 if any failed.

    .venv/bin/python bench/faults.py [--only NAME ...] [--small]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "faults"))

import scenarios  # noqa: E402

Run = Callable[[Path], dict[str, Any]]


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plan(small: bool) -> dict[str, Run]:
    k = 10 if small else 1
    return {
        "bad_record": lambda d: scenarios.bad_record(d, n_good=200_000 // k),
        "template_flood": lambda d: scenarios.template_flood_attack(
            d, n_addrs=200 // k, n_templates=1100, max_templates=16384, ceiling_mb=128
        ),
        "pending_flood": lambda d: scenarios.pending_flood_attack(
            d, n_addrs=40, n_msgs=300 // k, max_pending_mb=16, age_s=30.0, ceiling_mb=64
        ),
        "many_sources": lambda d: scenarios.exporter_flood(
            d, n_addrs=20_000 // k, max_exporters=2048 // k
        ),
        "allow_list": lambda d: scenarios.allow_list(d, n_addrs=5000 // k),
        "store_outage_in_memory": lambda d: scenarios.store_outage(d, 500_000 // k, outage_s=10.0),
        "store_outage_spilled": lambda d: scenarios.store_outage(
            d, 500_000 // k, outage_s=10.0, buffer_bytes=16 << 20, spill_dir=d / "spill"
        ),
        "store_outage_past_bounds": lambda d: scenarios.store_outage(
            d, 500_000 // k, outage_s=10.0, buffer_bytes=16 << 20
        ),
        "kill_9": lambda d: scenarios.kill9(d, 100_000 // k, free_tcp_port()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", nargs="*", default=None, help="scenarios to run (default all)")
    ap.add_argument("--small", action="store_true", help="a tenth of the size")
    args = ap.parse_args()
    runs = plan(args.small)
    names = args.only or list(runs)
    out: dict[str, Any] = {}
    t_all = time.monotonic()
    for name in names:
        t0 = time.monotonic()
        with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as tmp:
            try:
                fig = runs[name](Path(tmp))
                fig["ok"] = True
            except AssertionError as exc:
                fig = {"ok": False, "failed": str(exc).splitlines()[0]}
            except Exception as exc:  # report, and go on with the next attack
                fig = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                traceback.print_exc(file=sys.stderr)
        fig["wall_s"] = round(time.monotonic() - t0, 1)
        out[name] = fig
        print(f"{name}: {json.dumps(fig)}", file=sys.stderr, flush=True)
    out["total_s"] = round(time.monotonic() - t_all, 1)
    out["ok"] = all(v["ok"] for k, v in out.items() if isinstance(v, dict))
    print(json.dumps(out, indent=1))
    sys.exit(0 if out["ok"] else 1)


if __name__ == "__main__":
    main()
