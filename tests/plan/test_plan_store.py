"""Per-application plans end to end through the CLI: ``forecast --by-app --write`` on a
small store, then ``plan --store``: classes from the taxonomy, one quantile per latency
class from the YAML ``plan:`` settings, reservations and shaping for the classes that ask
for them, and no move off lightly loaded links."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from shadowcast.datasets.topology import write_node_link
from shadowcast.records import Link, Topology
from shadowcast.store.duckdb import DuckDBStore
from shadowcast.store.schema import TS

STEP = 300
STEPS = 2 * 288  # two days of 5-min buckets
# (src, dst, app) -> mean Mbit/s. A->B loads the direct 100 Mbit/s link to ~90 %; C->B
# and D->B load theirs to ~15 % and ~18 %. "YouTube" is an application of class video.
SERIES = {
    ("A", "B", "video"): 30.0,
    ("A", "B", "YouTube"): 10.0,
    ("A", "B", "bulk"): 30.0,
    ("A", "B", "voip"): 8.0,
    ("A", "B", "web"): 6.0,
    ("C", "B", "web"): 10.0,
    ("C", "B", "bulk"): 5.0,
    ("D", "B", "web"): 8.0,
    ("D", "B", "video"): 10.0,
}


def _topology() -> Topology:
    edges = [("A", "B"), ("A", "C"), ("C", "B"), ("A", "D"), ("D", "B")]
    links = tuple(Link(a, b, 100e6) for x, y in edges for a, b in ((x, y), (y, x)))
    coords = {"A": (0.0, 0.0), "B": (1.0, 0.0), "C": (0.5, 0.3), "D": (0.5, -0.3)}
    return Topology("square", ("A", "B", "C", "D"), links, coords)


def _store(path: Path) -> None:
    rng = np.random.default_rng(4)
    t0 = 1_767_571_200  # 2026-01-05 00:00 UTC
    t = np.arange(STEPS)
    times = (t0 + t * STEP) * 1000
    day = 1.0 + 0.05 * np.sin(2 * np.pi * t / 288)
    cols: dict[str, list[Any]] = {"time": [], "src": [], "dst": [], "app": [], "mbps": []}
    total: dict[tuple[str, str], np.ndarray] = {}
    for (s, d, app), mean in SERIES.items():
        v = mean * day * rng.lognormal(0, 0.03, STEPS)
        total[(s, d)] = total.get((s, d), 0) + v
        for rows in ((s, d, app, v),):
            cols["time"].append(times)
            cols["src"] += [rows[0]] * STEPS
            cols["dst"] += [rows[1]] * STEPS
            cols["app"] += [rows[2]] * STEPS
            cols["mbps"].append(rows[3])
    for (s, d), v in total.items():  # the all-traffic series, as the replay writes them
        cols["time"].append(times)
        cols["src"] += [s] * STEPS
        cols["dst"] += [d] * STEPS
        cols["app"] += [""] * STEPS
        cols["mbps"].append(v)
    tab = pa.table(
        {
            "time": pa.array(np.concatenate(cols["time"]), type=pa.int64()).cast(TS),
            "src": cols["src"],
            "dst": cols["dst"],
            "app": cols["app"],
            "mbps": pa.array(np.concatenate(cols["mbps"])),
        }
    )
    st = DuckDBStore(str(path))
    try:
        st.write("od_series", tab)
    finally:
        st.close()


def _cli(*args: str) -> dict[str, Any]:
    from shadowcast.cli import app

    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    doc: dict[str, Any] = json.loads(res.stdout)
    return doc


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    store = tmp_path / "s.duckdb"
    _store(store)
    topo = write_node_link(_topology(), tmp_path / "square.json")
    cfg = tmp_path / "shadowcast.yaml"
    cfg.write_text(
        "data_dir: " + str(tmp_path / "var") + "\n"
        "forecast:\n  model: profile\n"
        "plan:\n  quantiles: {high: p90, medium: p80, low: mean}\n  move_above: 0.8\n"
    )
    return store, topo, cfg


def test_forecast_by_app_then_plan_per_class(setup: tuple[Path, Path, Path]) -> None:
    store, topo, cfg = setup
    fc = _cli("-c", str(cfg), "forecast", "--store", str(store), "--by-app", "--write")
    assert fc["series"] == len(SERIES) and fc["written_rows"] > 0
    doc = _cli("-c", str(cfg), "plan", "--topology", str(topo), "--store", str(store))
    assert doc["checker"] == "accepted"
    classes = {c["class"]: c for c in doc["classes"]}
    assert set(classes) == {"video", "bulk", "voip", "web"}  # YouTube is video
    # one quantile per latency class, from the YAML plan: settings (high -> p90)
    assert {k: (c["sensitivity"], c["quantile"]) for k, c in classes.items()} == {
        "video": ("medium", "p80"),
        "web": ("medium", "p80"),
        "bulk": ("low", "mean"),
        "voip": ("high", "p90"),
    }
    assert classes["voip"]["reserve"] and not classes["video"]["reserve"]
    assert classes["bulk"]["shape"] and not classes["voip"]["shape"]
    # video A->B sums video and YouTube: 40 Mbit/s at p80, D->B's 10
    assert classes["video"]["planned_mbps"] == pytest.approx(50.0 * 1.05, rel=0.1)
    plan = doc["plan"]
    res = plan["reservations"]
    assert res and {r["cls"] for r in res} == {"voip"} and {r["quantile"] for r in res} == {"p90"}
    assert sum(r["mbps"] for r in res) == pytest.approx(8.0 * 1.05, rel=0.15)
    assert {s["cls"] for s in plan["splits"]} == set(classes)
    # only A->B moves (its direct link is predicted over 80 %); C->B and D->B stay put
    assert plan["mlu_current"] > 0.8 > plan["mlu_planned"]
    assert plan["changes"] and {(c["src"], c["dst"]) for c in plan["changes"]} == {("A", "B")}
    loads = [int(m) for c in plan["changes"] for m in re.findall(r"predicted (\d+)%", c["reason"])]
    assert loads and min(loads) > 80


def test_plan_store_classes_option_and_errors(setup: tuple[Path, Path, Path]) -> None:
    from shadowcast.cli import app

    store, topo, cfg = setup
    base = ["-c", str(cfg), "plan", "--topology", str(topo), "--store", str(store)]
    res = CliRunner().invoke(app, [*base, "--json"])
    assert res.exit_code == 2 and "no OD forecasts" in res.output
    _cli("-c", str(cfg), "forecast", "--store", str(store), "--write")  # all traffic
    doc = _cli(*base)
    assert [c["class"] for c in doc["classes"]] == ["all"]
    res = CliRunner().invoke(app, [*base, "--classes", "app", "--json"])
    assert res.exit_code == 2 and "per-application" in res.output
    _cli("-c", str(cfg), "forecast", "--store", str(store), "--by-app", "--write")
    assert len(_cli(*base)["classes"]) == 4  # auto: per class when the latest cycle has it
    assert [c["class"] for c in _cli(*base, "--classes", "all")["classes"]] == ["all"]
    other = write_node_link(
        Topology("tri", ("A", "B", "C"), (Link("A", "B", 1e8), Link("B", "A", 1e8))),
        topo.with_name("tri.json"),
    )
    res = CliRunner().invoke(app, [*base[:3], "--topology", str(other), "--store", str(store)])
    assert res.exit_code == 2 and "not in topology" in res.output
