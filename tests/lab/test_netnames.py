"""Names the root tests give namespaces and devices are unique per process (two suites on
one machine must not remove each other's labs) and fit Linux's limits."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from netnames import lab_prefix, process_token
from shadowcast.lab import trafficgen
from shadowcast.lab.build import plan_lab
from shadowcast.records import Link, Topology

TESTS = Path(__file__).resolve().parents[1]
IFNAMSIZ = 15  # usable characters of a Linux interface name
# a literal prefix handed to the lab, the traffic generator or a command
LITERAL = re.compile(r"""(PREFIX\s*=\s*|prefix=|"--prefix",\s*)["'][^"']*["']""")
KERNEL = re.compile(r"\bnetns\b|\bgenerate\(|\"ip\", \"netns\"")


def test_prefix_differs_in_another_process() -> None:
    code = "from netnames import lab_prefix; print(lab_prefix('t'))"
    other = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        cwd=TESTS, timeout=60,
    ).stdout.strip()  # fmt: skip
    assert other != lab_prefix("t") and len(other) == len(lab_prefix("t")) == 7


def test_prefix_is_exact_per_pid_and_tag() -> None:
    assert process_token(0) == "00000" and process_token(36**5 - 1) == "zzzzz"
    assert lab_prefix("t", pid=4194304) == "t2hwcg-"  # Linux's largest pid_max
    assert lab_prefix("t", pid=1) != lab_prefix("d", pid=1)
    for bad in ("", "tt", "T", "1", "-"):
        with pytest.raises(ValueError, match="one lowercase letter"):
            lab_prefix(bad)


def test_every_device_name_fits_ifnamsiz() -> None:
    nodes = tuple(f"n{i}" for i in range(120))
    links = tuple(
        lk for i in range(len(nodes) - 1)
        for lk in (Link(nodes[i], nodes[i + 1], 1e9), Link(nodes[i + 1], nodes[i], 1e9))
    )  # fmt: skip
    plan = plan_lab(Topology("line", nodes, links), prefix=lab_prefix("t", pid=4194303))
    names = [n for lk in plan.links for n in (lk.dev_a, lk.dev_b)]
    names += [n for e in plan.edges.values() for n in (e.dev_host, e.dev_router)]
    assert max(len(n) for n in names) <= IFNAMSIZ
    slot = trafficgen.Slot(999, lab_prefix("g", pid=4194303))
    assert len(slot.dev("c")) <= IFNAMSIZ and len(slot.dev("s")) <= IFNAMSIZ


def test_no_root_test_names_its_namespaces_with_a_fixed_prefix() -> None:
    """A fixed ``sctst-`` made two suites on one machine tear down each other's labs."""
    fixed = []
    for path in sorted(TESTS.rglob("test_*.py")):
        text = path.read_text()
        if KERNEL.search(text):
            fixed += [f"{path.relative_to(TESTS)}: {m.group(0)}" for m in LITERAL.finditer(text)]
    assert fixed == []
