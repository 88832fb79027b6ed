"""The backtest: row contents, definitions, and the real SNDlib series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shadowcast.errors import ForecastError
from shadowcast.forecast.config import ForecastConfig, format_duration, parse_duration
from shadowcast.forecast.evaluate import evaluate, split
from shadowcast.forecast.synthetic import synthetic_frame
from shadowcast.records import SeriesFrame

REQUIRED = {
    "model",
    "horizon",
    "nmae",
    "mase_persistence",
    "mase_seasonal",
    "coverage_80",
    "coverage_95",
    "pinball",
    "interval_score_80",
    "coverage_80_by_decile",
}


def test_rows_and_definitions() -> None:
    f = synthetic_frame(30, 700, 300, seed=2)
    rows = evaluate(f, None, [3, 12], ["persistence", "seasonal_naive", "profile"])
    assert len(rows) == 6
    for r in rows:
        assert REQUIRED <= set(r)
        assert len(r["coverage_80_by_decile"]) == 10
    pers = [r for r in rows if r["model"] == "persistence"]
    assert [r["horizon"] for r in pers] == ["15m", "1h"]
    assert all(r["mase_persistence"] == pytest.approx(1.0) for r in pers)
    assert all(r["nmae"] == pytest.approx(r["nmae_persistence"]) for r in pers)
    sn = [r for r in rows if r["model"] == "seasonal_naive"]
    assert all(r["mase_seasonal"] == pytest.approx(1.0) for r in sn)
    # NMAE by hand for persistence at 1 step on the test part
    train, test = split(f, 0.3)
    rows1 = evaluate(f, None, [1], ["persistence"])
    y = f.values
    cut = train.values.shape[0]
    err = np.abs(y[cut:] - y[cut - 1 : -1]).sum() / np.abs(y[cut:]).sum()
    assert rows1[0]["nmae"] == pytest.approx(err)


def test_with_separate_test_series() -> None:
    f = synthetic_frame(10, 500, 300, seed=3)
    train, test = split(f, 0.2)
    a = evaluate(train, test, [2], ["persistence"])
    b = evaluate(f, None, [2], ["persistence"], test_fraction=0.2)
    assert a[0]["nmae"] == pytest.approx(b[0]["nmae"])
    # a test part without one of the keys: absent = 0 (demand matrices) or unknown (NaN)
    short = SeriesFrame(
        times=test.times, keys=test.keys[:-1], values=test.values[:, :-1], step=test.step
    )
    zero = evaluate(train, short, [2], ["persistence"])
    assert zero[0]["series"] == 10 and zero[0]["nmae"] != a[0]["nmae"]
    unknown = evaluate(train, short, [2], ["persistence"], missing=np.nan)
    nine = evaluate(train.columns(slice(0, 9)), short, [2], ["persistence"])
    assert unknown[0]["series"] == 10 and nine[0]["series"] == 9
    assert unknown[0]["nmae"] == pytest.approx(nine[0]["nmae"], rel=1e-12)  # NaN: not scored
    coarse = SeriesFrame(times=test.times, keys=test.keys, values=test.values, step=600)
    with pytest.raises(ForecastError, match="step"):
        evaluate(train, coarse, [2], ["persistence"])


def test_config_durations() -> None:
    cfg = ForecastConfig()
    assert cfg.horizons_s == [900, 3600]
    assert cfg.levels == [80.0, 95.0]
    assert parse_duration("2d") == 172800 and format_duration(3600) == "1h"
    with pytest.raises(ValueError):
        ForecastConfig(horizons=["soon"])
    with pytest.raises(ValueError):
        ForecastConfig(levels=[120])
    with pytest.raises(ValueError):
        ForecastConfig(unknown=1)  # type: ignore[call-arg]


GEANT = "directed-geant-uhlig-15min-over-4months-ALL_20050504-1500-20050506-2345.tar.gz"


def test_geant_baselines_calibrated(data_dir: Path) -> None:
    """Real GEANT slice (15-min step, first two matrices empty): baselines and the
    profile model, intervals within +-3 points of nominal; persistence as the issue measured."""
    from shadowcast.datasets import load_demands

    f = SeriesFrame.from_demands(load_demands(data_dir / "traffic_matrices" / "sndlib" / GEANT))
    rows = evaluate(f, None, [1, 4], ["persistence", "profile"])
    by = {(r["model"], r["horizon"]): r for r in rows}
    assert by[("persistence", "15m")]["nmae"] == pytest.approx(0.103, abs=0.01)
    assert by[("persistence", "1h")]["nmae"] == pytest.approx(0.171, abs=0.01)
    for r in rows:
        assert abs(r["coverage_80"] - 0.80) <= 0.03, r
        assert abs(r["coverage_95"] - 0.95) <= 0.03, r
        assert r["mase_persistence"] <= 1.02, r


def test_eval_forecast_entry_point() -> None:
    from shadowcast.forecast.evaluate import eval_forecast
    from shadowcast.records import DemandSeries

    f = synthetic_frame(6, 400, 300, seed=9)
    pairs = tuple((f"n{i}", f"n{i + 1}") for i in range(6))
    d = DemandSeries(times=f.times, od_pairs=pairs, values=f.values.astype(np.float32), step=300)
    out = eval_forecast(d, horizons=["15m", "1h"], models=["persistence", "seasonal_naive"])
    assert [r["horizon"] for r in out["rows"]] == ["15m", "1h", "15m", "1h"]
    assert out["rows"][0]["horizon_steps"] == 3 and out["rows"][1]["horizon_steps"] == 12
    assert "sum |yhat - y|" in out["nmae_definition"]


def test_eval_forecast_command_side_by_side_with_statsforecast(tmp_path: Path) -> None:
    """``shadowcast eval forecast --statsforecast N``: the backtest on every series, and ours
    beside the baselines and AutoETS on the N largest, in one JSON object."""
    pytest.importorskip("statsforecast")
    import json

    from typer.testing import CliRunner

    from shadowcast.cli import app
    from shadowcast.datasets.csvdemand import write_csv
    from shadowcast.datasets.synthetic import synthetic_dataset

    dem = synthetic_dataset(weeks=0.4, seed=3).demands
    keep = np.argsort(-dem.values.mean(axis=0))[:12]
    from dataclasses import replace

    dem = replace(dem, od_pairs=tuple(dem.od_pairs[i] for i in keep), values=dem.values[:, keep])
    csv = write_csv(dem, tmp_path / "d.csv")
    args = ["eval", "forecast", "--demands", str(csv), "--models", "profile,persistence"]
    res = CliRunner().invoke(app, [*args, "--statsforecast", "4", "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert {(r["model"], r["horizon"]) for r in doc["rows"]} == {
        (m, h) for m in ("profile", "persistence") for h in ("15m", "1h")
    }
    sub = doc["subset"]
    assert {r["model"] for r in sub} == {"persistence", "seasonal_naive", "profile", "sf_AutoETS"}
    assert all(r["subset_series"] == 4 and r["series"] == 4 for r in sub)
    pers = {r["horizon"]: r["nmae"] for r in sub if r["model"] == "persistence"}
    for r in sub:  # ratios are to persistence on the same four series
        assert r["mase_persistence"] == pytest.approx(r["nmae"] / pers[r["horizon"]], rel=1e-9)
