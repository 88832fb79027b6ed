"""Input groups (leaving one out), the inputs every path attaches (static geography and
bottleneck, routed path capacity and headroom, the
forecast cycle's meta and exog), the ablation, and ``eval forecast --ablate``."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from shadowcast.errors import ConfigError
from shadowcast.forecast.ablate import HISTORY, ablate
from shadowcast.forecast.config import EXOG_INPUTS, ForecastConfig
from shadowcast.forecast.cycle import ForecastCycle
from shadowcast.forecast.enrich import demand_inputs, static_inputs
from shadowcast.forecast.exog import routed_capacity_exog
from shadowcast.forecast.inputs import check_groups, group_of, keep_inputs, present_groups
from shadowcast.forecast.registry import make_model
from shadowcast.forecast.synthetic import synthetic_frame
from shadowcast.records import Link, SeriesFrame, Topology

from .conftest import FAST_GBM

GBPS = 1e9
# a line A - B - C (10, 2 Gbit/s), plus D hanging off C (1 Gbit/s); coordinates for all
LINE = Topology(
    "line",
    ("A", "B", "C", "D"),
    tuple(
        Link(s, d, c * GBPS, "")
        for a, b, c in (("A", "B", 10), ("B", "C", 2), ("C", "D", 1))
        for s, d in ((a, b), (b, a))
    ),
    {"A": (-74.0, 40.7), "B": (-87.6, 41.9), "C": (-118.2, 34.1), "D": (-122.3, 47.6)},
)
KEYS = ("A->C", "B->A", "C->D", "A->D")


def frame(T: int = 864, seed: int = 3) -> SeriesFrame:
    f = synthetic_frame(len(KEYS), T, 300, seed=seed)
    return SeriesFrame(f.times, KEYS, f.values * 10, 300)


def test_groups_are_checked_and_named() -> None:
    assert check_groups(["geography", "capacity", "geography"]) == ("geography", "capacity")
    with pytest.raises(ConfigError, match=r"unknown input group\(s\) \['weather'\]"):
        check_groups(["weather"])
    with pytest.raises(ConfigError, match="unknown input group"):
        make_model("gbm", exclude=["weather"])
    assert group_of("distance_km") == "geography" and group_of("headroom_mbps") == "capacity"
    assert group_of("rtt_ms") == "shadow" and group_of("category") is None
    got = keep_inputs({"rtt_ms": 1, "distance_km": 2, "category": 3}, ("shadow",))
    assert got == {"distance_km": 2, "category": 3}
    assert present_groups(["src_site"], []) == ["calendar", "geography", "cross_series"]


def test_static_inputs_give_geography_and_the_bottleneck() -> None:
    meta = static_inputs([*KEYS, "C->D/video"], topology=LINE)
    np.testing.assert_allclose(meta["bottleneck_mbps"], [2000, 10000, 1000, 1000, 1000])
    assert list(meta["src_site"]) == ["A", "B", "C", "A", "C"]
    np.testing.assert_array_equal(meta["dst_utc_offset_h"], [-8, -5, -8, -8, -8])
    assert static_inputs(["s0", "s1"], topology=LINE) == {}  # not OD pairs


def test_routed_capacity_and_headroom_per_step() -> None:
    v = np.array([[100.0, 50.0, 300.0, 200.0], [np.nan, 0.0, 900.0, 10.0]])
    ex = routed_capacity_exog(LINE, KEYS, v)
    np.testing.assert_allclose(ex["capacity_mbps"], [[2000, 10000, 1000, 1000]] * 2)
    # step 0: B->C carries A->C and A->D (300), C->D carries C->D and A->D (500)
    np.testing.assert_allclose(ex["headroom_mbps"][0], [1700, 9950, 500, 500])
    # step 1: A->C unknown routes as none
    np.testing.assert_allclose(ex["headroom_mbps"][1], [1990, 10000, 90, 90])


def test_demand_inputs_attach_what_is_asked() -> None:
    f = frame(50)
    full = demand_inputs(f, topology=LINE)
    assert set(full.exog) == {"capacity_mbps", "headroom_mbps"}
    assert {"bottleneck_mbps", "distance_km", "src_region"} <= set(full.meta)
    only = demand_inputs(f, topology=LINE, exog=["headroom_mbps", "rtt_ms"])
    assert set(only.exog) == {"headroom_mbps"}
    geo = demand_inputs(f, coords={"A": (0.0, 0.0)})  # no topology: geography only
    assert not geo.exog and "bottleneck_mbps" not in geo.meta and geo.meta["src_lon"][0] == 0.0


def test_forecast_cycle_passes_meta_and_exog_to_its_model() -> None:
    """The service's cycle: one model over every (class, OD) series, each class's copy of an
    OD pair carrying that pair's static inputs and per-step exogenous rows."""
    seen: list[Any] = []

    def make() -> Any:
        m = make_model("gbm", horizons=["15m"], **FAST_GBM)
        fit, update = m.fit, m.update

        def rec_fit(f: SeriesFrame) -> Any:
            seen.append(("fit", f))
            return fit(f)

        def rec_update(rows: Any, exog: Any = None) -> None:
            seen.append(("update", exog))
            update(rows, exog)

        m.fit, m.update = rec_fit, rec_update  # type: ignore[method-assign]
        return m

    meta = static_inputs(KEYS, topology=LINE)
    od = tuple(tuple(k.split("->")) for k in KEYS)
    c = ForecastCycle(
        make,
        "gbm",
        ("hi", "lo"),
        od,  # type: ignore[arg-type]
        300,
        horizon_steps=3,
        warmup_s=86400,
        retrain_every_s=None,
        meta=meta,
        exog=["headroom_mbps"],
    )
    y = frame(300).values
    head = routed_capacity_exog(LINE, KEYS, y)["headroom_mbps"]
    for t in range(290):
        c.observe(1_700_000_100 + 300 * t, {"hi": y[t], "lo": y[t] / 2}, {"headroom_mbps": head[t]})
    (kind, f), *rest = seen
    assert kind == "fit" and f.keys[4] == "A->C/lo"
    np.testing.assert_allclose(f.meta["bottleneck_mbps"], [2000, 10000, 1000, 1000] * 2)
    assert list(f.meta["src_site"]) == ["A", "B", "C", "A"] * 2
    assert f.exog["headroom_mbps"].shape == (288, 8)
    np.testing.assert_allclose(f.exog["headroom_mbps"][0], np.tile(head[0], 2))
    assert rest[-1][0] == "update" and rest[-1][1]["headroom_mbps"].shape == (1, 8)
    fc = c.predict()
    assert fc is not None and np.isfinite(fc.by_class["lo"].mean).all()


def test_config_defaults_read_every_input_and_check_members() -> None:
    cfg = ForecastConfig()
    assert cfg.exog == list(EXOG_INPUTS) and "neural" in cfg.auto_members
    with pytest.raises(ValidationError, match="unknown member"):
        ForecastConfig(auto_members=["persistence", "prophet"])
    with pytest.raises(ValidationError, match="at least one member"):
        ForecastConfig(auto_members=[])


def test_leaving_a_group_out_is_the_same_as_not_having_it() -> None:
    f = demand_inputs(frame(), topology=LINE)
    hs = [3, 12]
    rows = ablate(f, None, hs, "gbm", options=dict(FAST_GBM))
    by = {(r["inputs"], r["horizon"]): r for r in rows}
    variants = ["all inputs", "-calendar", "-geography", "-capacity", "-cross_series", HISTORY]
    assert [r["inputs"] for r in rows[::2]] == variants
    assert by[("all inputs", "15m")]["delta_nmae"] == 0.0
    # without the capacity group == a frame that never had it
    bare = replace(f, exog={}, meta={k: v for k, v in f.meta.items() if k != "bottleneck_mbps"})
    from shadowcast.forecast.evaluate import evaluate

    ref = evaluate(bare, None, hs, ["gbm"], model_options={"gbm": dict(FAST_GBM)})
    for r in ref:
        assert by[("-capacity", r["horizon"])]["nmae"] == pytest.approx(r["nmae"], rel=1e-12)
    # and each variant is a different model: the inputs are read
    assert by[("-geography", "1h")]["nmae"] != by[("all inputs", "1h")]["nmae"]
    assert by[("-capacity", "1h")]["nmae"] != by[("all inputs", "1h")]["nmae"]
    # a model that reads no inputs: nothing to leave out
    assert [r["inputs"] for r in ablate(f, None, hs, "profile")] == ["all inputs"] * 2


def test_ablation_over_seeds_reports_the_mean_and_spread() -> None:
    f = demand_inputs(frame(), topology=LINE)
    hs = [3, 12]
    opts = {**FAST_GBM, "bags": 1}
    geo = ["geography"]
    one = {
        (r["inputs"], r["horizon"]): r for r in ablate(f, None, hs, "gbm", groups=geo, options=opts)
    }
    other = {
        (r["inputs"], r["horizon"]): r
        for r in ablate(f, None, hs, "gbm", groups=geo, options={**opts, "seed": 1})
    }
    rows = ablate(f, None, hs, "gbm", options=opts, groups=geo, seeds=2)
    by = {(r["inputs"], r["horizon"]): r for r in rows}
    assert [r["inputs"] for r in rows[::2]] == ["all inputs", "-geography"]
    for key, r in by.items():  # each seed's run is the single-seed backtest with that seed
        runs = [one[key]["nmae"], other[key]["nmae"]]
        assert r["nmae_runs"] == pytest.approx(runs, rel=1e-12)
        assert r["nmae"] == pytest.approx(np.mean(runs)) and r["seeds"] == 2
        assert r["nmae_sd"] == pytest.approx(np.std(runs, ddof=1))
    assert any(r["nmae_sd"] > 0 for r in rows)  # the seeds do differ
    ref = by[("all inputs", "1h")]["nmae"]
    assert by[("-geography", "1h")]["delta_nmae"] == pytest.approx(
        by[("-geography", "1h")]["nmae"] - ref
    )
    with pytest.raises(ConfigError, match="seeds"):
        ablate(f, None, hs, "gbm", options=opts, seeds=0)


def test_eval_forecast_ablate_seeds_out_of_range(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from shadowcast.cli import app

    args = ["eval", "forecast", "--demands", str(tmp_path / "none.csv"), "--ablate"]
    res = CliRunner().invoke(app, [*args, "--ablate-seeds", "0"])
    assert res.exit_code == 2 and "--ablate-seeds" in res.output


def test_eval_forecast_ablate_command(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from shadowcast.cli import app
    from shadowcast.datasets.csvdemand import write_csv
    from shadowcast.datasets.topology import write_node_link
    from shadowcast.records import DemandSeries

    f = frame(600)
    pairs = tuple(tuple(k.split("->")) for k in KEYS)
    dem = DemandSeries(f.times, pairs, f.values.astype(np.float32), 300)  # type: ignore[arg-type]
    csv = write_csv(dem, tmp_path / "d.csv")
    topo = write_node_link(LINE, tmp_path / "line.json")
    args = ["eval", "forecast", "--demands", str(csv), "--topology", str(topo)]
    args += ["--models", "gbm,persistence", "--ablate", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["inputs"]["exog"] == ["capacity_mbps", "headroom_mbps"]
    assert {"bottleneck_mbps", "distance_km", "src_utc_offset_h"} <= set(doc["inputs"]["meta"])
    got = {(r["inputs"], r["horizon"]) for r in doc["ablation"]}
    assert ("-geography", "15m") in got and (HISTORY, "1h") in got
    assert all(r["model"] == "gbm" for r in doc["ablation"])
    table = CliRunner().invoke(app, args[:-1])
    assert table.exit_code == 0 and "What each input contributes" in table.output
    bad = CliRunner().invoke(
        app, ["eval", "forecast", "--demands", str(csv), "--capacities-from", str(topo)]
    )
    assert bad.exit_code == 2 and "--capacities-from needs --topology" in bad.output
