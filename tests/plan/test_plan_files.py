"""Plans read back from disk (``plan --save`` / ``plan --current``): hostile files give one
PlanError naming the file; a plan that loads then passes or fails the checker with PlanError.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import typer
from hypothesis import HealthCheck, example, given, settings
from typer.testing import CliRunner

from hostile import EDITS, Edit, mutate, one_clear_line
from shadowcast.errors import PlanError
from shadowcast.plan.base import Plan, check_plan
from shadowcast.plan.paths import candidate_paths
from shadowcast.plan.planner import ClassForecast, make_plan, split_matrix
from shadowcast.records import Forecast, Topology

FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
ODS = [("A", "B"), ("C", "D")]


def _plan(square: Topology) -> Plan:
    m = np.array([[18.0] * 3, [4.0] * 3])
    fc = Forecast(mean=m, lower={90.0: m * 0.9}, upper={90.0: m * 1.1})
    paths = candidate_paths(square, ODS, k=3)
    return make_plan([ClassForecast("video", fc)], paths, square, step_s=300)


@pytest.fixture
def saved(square: Topology) -> bytes:
    plan = _plan(square)
    assert plan.splits and plan.changes
    return plan.to_json().encode()


def test_a_saved_plan_loads_back_equal(tmp_path: Path, square: Topology) -> None:
    plan = _plan(square)
    p = tmp_path / "p.json"
    p.write_text(plan.to_json())
    assert Plan.load(p) == plan


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"[" * 100_000, "nested too deeply"),
        (b'{"plan_id": ' + b"9" * 5000 + b"}", "5000 digits"),
        (b'{"plan_id": "\xc3"}', "not UTF-8"),
        (b"[1, 2]", "not a plan: plan: Input should be"),
        (b'{"plan_id": "p"}', "not a plan: topology: Field required"),
    ],
)
def test_hostile_plan_files(tmp_path: Path, text: bytes, match: str) -> None:
    p = tmp_path / "p.json"
    p.write_bytes(text)
    with pytest.raises(PlanError, match=match) as ei:
        Plan.load(p)
    one_clear_line(str(ei.value), str(p))


@pytest.mark.fuzz
@FUZZ
@given(edits=EDITS)
@example(edits=[("put", 0, 0, b"[" * 1200)]).via("discovered failure")
@example(edits=[("ins", 1, 0, b'"horizon_s": 1e400, ')]).via("discovered failure")
@example(edits=[("ins", 1, 0, b'"horizon_s": "lp", ')]).via("discovered failure")
@example(edits=[("ins", 1, 0, b'"splits": ["x"], ')]).via("discovered failure")
def test_plan_file_under_hostile_edits(
    tmp_path: Path, square: Topology, saved: bytes, edits: list[Edit]
) -> None:
    p = tmp_path / "plan.json"
    p.write_bytes(mutate(saved, edits))
    try:
        plan = Plan.load(p)
    except PlanError as exc:
        one_clear_line(str(exc), str(p))
        return
    paths = candidate_paths(square, ODS, k=3)
    split_matrix(plan, paths, ["video"])
    try:
        check_plan(plan, square, max_changes=None)
    except PlanError as exc:
        assert "\n" not in str(exc)


def test_cli_current_plan_that_is_hostile(tmp_path: Path, square: Topology) -> None:
    from shadowcast.datasets import write_csv
    from shadowcast.plan.commands import app as plan_app
    from shadowcast.records import DemandSeries

    topo = tmp_path / "t.json"
    topo.write_text(
        json.dumps(
            {
                "nodes": [{"id": n} for n in square.nodes],
                "links": [
                    {"source": lk.src, "target": lk.dst, "capacity": lk.capacity}
                    for lk in square.links
                ],
            }
        )
    )
    t = np.datetime64("2024-01-01T00:00:00", "s") + np.arange(40) * np.timedelta64(900, "s")
    vals = np.full((40, 1), 3.0, dtype=np.float32)
    dem = write_csv(DemandSeries(t, (("A", "B"),), vals, 900, square.nodes), tmp_path / "d.csv")
    bad = tmp_path / "cur.json"
    bad.write_bytes(b"[" * 100_000)
    root = typer.Typer()
    root.add_typer(plan_app, name="plan")
    args = ["plan", "--topology", str(topo), "--demands", str(dem), "--horizon", "1h"]
    res = CliRunner().invoke(root, [*args, "--current", str(bad), "--json"])
    assert res.exit_code == 2, res.output
    assert "cur.json: JSON nested too deeply" in res.output


def test_a_loaded_plan_reserving_an_unknown_link_is_refused(square: Topology) -> None:
    reservation = {
        "cls": "voip", "src": "A", "dst": "B", "nodes": ["A", "B"], "links": [99],
        "mbps": 1.0, "quantile": "p95", "reason": "r",
    }  # fmt: skip
    plan = Plan.from_dict({**_plan(square).to_dict(), "reservations": [reservation]})
    with pytest.raises(PlanError, match="reservation voip A->B names a link not in topology"):
        check_plan(plan, square)
