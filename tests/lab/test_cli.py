"""``shadowcast lab up|down`` and ``shadow open|list|show|probe`` end to end (root)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from netnames import lab_prefix
from shadowcast.lab import build, netns
from shadowcast.lab.commands import app as lab_app
from shadowcast.records import Link, Topology
from shadowcast.shadow.commands import app as shadow_app

pytestmark = pytest.mark.integration
PREFIX = lab_prefix("c")


def run(app: object, args: list[str]) -> dict:
    res = CliRunner().invoke(app, [*args, "--json"])  # type: ignore[arg-type]
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def test_lab_and_shadow_commands(tmp_path: Path) -> None:
    ok, why = netns.have_root()
    if not ok:
        pytest.skip(why)
    datasets = pytest.importorskip("shadowcast.datasets.topology")
    links = []
    for a, b, cap in (("A", "B", 100e9), ("B", "C", 10e9), ("C", "D", 100e9)):
        links += [Link(a, b, cap), Link(b, a, cap)]
    topo_file = datasets.write_node_link(
        Topology("line4", ("A", "B", "C", "D"), tuple(links)), tmp_path / "line4.json"
    )
    try:
        up = run(lab_app, ["up", "--topology", str(topo_file), "--edges", "A,D",
                           "--prefix", PREFIX])  # fmt: skip
        assert up["built"] is True and up["routers"] == 4
        assert run(lab_app, ["up", "--topology", str(topo_file), "--edges", "A,D",
                             "--prefix", PREFIX])["built"] is False  # fmt: skip
        t = run(shadow_app, ["open", "--src", "A", "--dst", "D", "--sport", "50123",
                             "--prefix", PREFIX])  # fmt: skip
        assert t["path"] == ["A", "B", "C", "D"] and t["sport"] == 50123
        listed = run(shadow_app, ["list", "--prefix", PREFIX])
        assert listed["count"] == 1 and listed["tunnels"][0]["sport"] == 50123
        shown = run(shadow_app, ["show", t["name"], "--prefix", PREFIX])
        assert shown["path"] == ["A", "B", "C", "D"]
        probed = run(shadow_app, ["probe", t["name"], "--count", "10", "--interval", "0.01",
                                  "--abw", "--trains", "3",
                                  "--prefix", PREFIX])  # fmt: skip
        assert probed["received"] == 10 and 5.0 < probed["abw_mbps"] <= 10.0
        assert probed["path"] == ["A", "B", "C", "D"]
    finally:
        down = run(lab_app, ["down", "--prefix", PREFIX])
    assert down["removed_namespaces"] == 6 and netns.list_netns(PREFIX) == []
    assert not (build.STATE_DIR / f"{PREFIX}state.json").exists()
