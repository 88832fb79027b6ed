"""``shadowcast act apply``: the ``act`` settings drive the actuator, guardrails and audit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from shadowcast.cli import app
from shadowcast.datasets import write_csv
from shadowcast.exitcodes import USAGE
from shadowcast.records import DemandSeries
from shadowcast.store.duckdb import DuckDBStore

runner = CliRunner()


@pytest.fixture
def saved_plan(tmp_path: Path) -> tuple[Path, Path]:
    """A topology file and a plan saved by ``shadowcast plan --save``."""
    topo = tmp_path / "t.json"
    links = [("A", "B", 10e6), ("A", "C", 10e6), ("C", "B", 10e6), ("A", "D", 10e6)]
    topo.write_text(
        json.dumps(
            {
                "directed": True,
                "multigraph": False,
                "graph": {},
                "nodes": [{"id": n} for n in "ABCD"],
                "links": [
                    {"source": s, "target": d, "capacity": c}
                    for a, b, c in links
                    for s, d in ((a, b), (b, a))
                ],
            }
        )
    )
    t = np.arange(60)
    vals = (np.array([9.0, 4.0, 5.0]) * (1 + 0.3 * np.sin(t / 4))[:, None]).astype(np.float32)
    times = np.datetime64("2024-01-01T00:00:00", "s") + t * np.timedelta64(900, "s")
    dem = DemandSeries(times, (("A", "B"), ("C", "B"), ("A", "D")), vals, 900, tuple("ABCD"))
    csv = write_csv(dem, tmp_path / "d.csv")
    plan = tmp_path / "plan.json"
    res = runner.invoke(
        app, ["plan", "-t", str(topo), "-d", str(csv), "--save", str(plan), "--json"]
    )
    assert res.exit_code == 0, res.output
    return topo, plan


def test_apply_follows_the_act_settings(saved_plan: tuple[Path, Path], tmp_path: Path) -> None:
    topo, plan = saved_plan
    cfg = tmp_path / "s.yaml"
    out_dir = tmp_path / "rendered"
    cfg.write_text(f"data_dir: {tmp_path / 'var'}\nact:\n  format: yaml\n  out_dir: {out_dir}\n")
    res = runner.invoke(app, ["-c", str(cfg), "act", "apply", str(plan), "-t", str(topo), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["actuator"] == "dry-run" and doc["status"] == "dry-run" and doc["dry_run"]
    pid = doc["plan_id"]
    assert (out_dir / f"plan-{pid}.yaml").is_file()  # act.format and act.out_dir
    with DuckDBStore(str(tmp_path / "var" / "shadowcast.duckdb")) as st:  # the audit trail
        rows = st.read("actions").to_pylist()
    assert [(r["plan_id"], r["action"], r["status"]) for r in rows] == [(pid, "dry-run", "ok")]


def test_apply_refuses_a_plan_past_max_changes(
    saved_plan: tuple[Path, Path], tmp_path: Path
) -> None:
    topo, plan = saved_plan
    doc = json.loads(plan.read_text())
    if not doc.get("changes"):
        pytest.skip("the plan has no changes to refuse")
    cfg = tmp_path / "s.yaml"
    cfg.write_text(f"data_dir: {tmp_path / 'var'}\nact:\n  max_changes: 0\n")
    res = runner.invoke(app, ["-c", str(cfg), "act", "apply", str(plan), "-t", str(topo)])
    assert res.exit_code == USAGE
    last = res.output.splitlines()[-1]
    assert last.startswith("error: plan changes the splits") and last.endswith("at most 0 allowed")
    with DuckDBStore(str(tmp_path / "var" / "shadowcast.duckdb")) as st:
        assert [r["action"] for r in st.read("actions").to_pylist()] == ["reject"]


def test_apply_names_a_bad_plan_file(saved_plan: tuple[Path, Path], tmp_path: Path) -> None:
    topo, _ = saved_plan
    junk = tmp_path / "junk.json"
    junk.write_text("{}")
    res = runner.invoke(app, ["act", "apply", str(junk), "-t", str(topo), "--no-audit"])
    assert res.exit_code == USAGE and "junk.json: not a plan file" in res.output
