"""Sparse demand files: absent rows are missing (0 or NaN), pairs come and go, and a CSV
with its zero rows dropped gives exactly the evaluations of the dense one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from ds_samples import matrix
from typer.testing import CliRunner

from shadowcast.datasets import load_demands, write_csv
from shadowcast.errors import DemandError
from shadowcast.records import DemandSeries, Link, Topology

PAIRS = (("A", "B"), ("A", "C"), ("B", "C"), ("C", "A"), ("D", "B"), ("D", "C"))


def _square() -> Topology:
    edges = [("A", "B"), ("A", "C"), ("C", "B"), ("A", "D"), ("D", "B"), ("D", "C")]
    links = [Link(a, b, 10e6) for x, y in edges for a, b in ((x, y), (y, x))]
    return Topology("sq", ("A", "B", "C", "D"), tuple(links))


def _week(seed: int = 0) -> tuple[DemandSeries, DemandSeries]:
    """Two days of history and one of test at 15 min: D->B is absent from the history and
    appears in the middle of the test day, C->A goes silent after the first test hours,
    and zeros are scattered everywhere (rows a sparse export drops)."""
    rng = np.random.default_rng(seed)
    T = 288
    t = np.arange(T)
    day = 1 + 0.5 * np.sin(2 * np.pi * t / 96)[:, None]
    v = np.array([6.0, 3.0, 4.0, 2.0, 2.5, 1.5]) * day * rng.lognormal(0, 0.15, (T, 6))
    v[rng.random(v.shape) < 0.08] = 0.0
    v[:240, 4] = 0.0  # D->B appears at step 240 (in the test part)
    v[210:, 3] = 0.0  # C->A goes silent at step 210
    times = np.datetime64("2024-03-04T00:00:00", "s") + t * np.timedelta64(900, "s")
    full = DemandSeries(times, PAIRS, v.astype(np.float32), 900, ("A", "B", "C", "D"))
    return full.slice(0, 192), full.slice(192)


def _files(tmp: Path) -> dict[str, tuple[Path, Path]]:
    train, test = _week()
    out = {}
    for kind, sparse in (("dense", False), ("sparse", True)):
        out[kind] = (
            write_csv(train, tmp / f"{kind}-train.csv", skip_zeros=sparse),
            write_csv(test, tmp / f"{kind}-test.csv", skip_zeros=sparse),
        )
    return out


def test_sparse_csv_missing_zero_or_nan(tmp_path: Path) -> None:
    files = _files(tmp_path)
    dense = load_demands(files["dense"][0])
    sparse = load_demands(files["sparse"][0])
    assert dense.od_pairs == PAIRS and ("D", "B") not in sparse.od_pairs  # absent so far
    keep = [PAIRS.index(od) for od in sparse.od_pairs]
    np.testing.assert_array_equal(sparse.values, dense.values[:, keep])
    unknown = load_demands(files["sparse"][0], missing="nan")
    zero = dense.values[:, keep] == 0
    assert np.isnan(unknown.values[zero]).all()
    np.testing.assert_array_equal(unknown.values[~zero], dense.values[:, keep][~zero])
    with pytest.raises(DemandError, match="missing='blank'"):
        load_demands(files["sparse"][0], missing="blank")


def test_sndlib_missing_demand_is_zero_or_nan(tmp_path: Path) -> None:
    d = tmp_path / "m"
    d.mkdir()
    (d / "a.xml").write_text(matrix("20240101-0000", [("A", "B", "1.0"), ("B", "C", "2")]))
    (d / "b.xml").write_text(matrix("20240101-0005", [("A", "B", "3.0")]))
    zero = load_demands(d)
    assert zero.od_pairs == (("A", "B"), ("B", "C")) and zero.values[1, 1] == 0.0
    nan = load_demands(d, missing="nan")
    assert np.isnan(nan.values[1, 1]) and nan.values[1, 0] == 3.0


def _cli(args: list[str]) -> dict[str, object]:
    from shadowcast.cli import app

    res = CliRunner().invoke(app, [*args, "--json"])
    assert res.exit_code == 0, res.output
    doc: dict[str, object] = json.loads(res.stdout)
    return doc


def _no_timing(rows: object) -> list[dict[str, object]]:
    assert isinstance(rows, list)
    return [
        {k: v for k, v in r.items() if "seconds" not in k and not k.startswith("solve_ms")}
        for r in rows
    ]


def test_sparse_csv_evaluates_exactly_as_the_dense_one(tmp_path: Path) -> None:
    """``eval forecast`` and ``eval te`` on a history without D->B and a test part where
    it appears (and C->A vanishes): the same numbers from the dense and the sparse files."""
    files = _files(tmp_path)
    topo = tmp_path / "t.json"
    sq = _square()
    topo.write_text(
        json.dumps(
            {
                "directed": True,
                "multigraph": False,
                "graph": {},
                "nodes": [{"id": n} for n in sq.nodes],
                "links": [
                    {"source": lk.src, "target": lk.dst, "capacity": lk.capacity} for lk in sq.links
                ],
            }
        )
    )
    out: dict[str, dict[str, object]] = {}
    for kind, (train, test) in files.items():
        fc = _cli(
            ["eval", "forecast", "--demands", str(train), "--test", str(test)]
            + ["--models", "profile,persistence,theta", "--horizons", "15m,1h"]
        )
        te = _cli(
            ["eval", "te", "--topology", str(topo), "--demands", str(train), "--test", str(test)]
            + ["--horizons", "15m,1h", "--capacity-scale", "auto"]
        )
        out[kind] = {"forecast": _no_timing(fc["rows"]), "te": _no_timing(te["rows"])}
    np.testing.assert_equal(out["sparse"], out["dense"])
    rows = out["dense"]["forecast"]
    assert isinstance(rows, list) and len(rows) == 6
    assert all(r["series"] == 6 for r in rows)  # D->B counted although absent before
    te_rows = out["dense"]["te"]
    assert isinstance(te_rows, list) and {r["method"] for r in te_rows} >= {"predictive-lp"}


def test_empty_matrices_at_the_ends_are_dropped_on_request(tmp_path: Path) -> None:
    """An empty matrix measured nothing: ``trim_empty`` drops those at the start and the
    end (not one inside the series, which stays a step of zeros); all empty is an error."""
    folder = tmp_path / "tm"
    folder.mkdir()
    rows = {0: [], 1: [], 2: [("A", "B", "3")], 3: [], 4: [("B", "C", "1")], 5: []}
    for k, dem in rows.items():
        (folder / f"m-{k}.xml").write_text(matrix(f"20240101-00{5 * k:02d}", dem))
    kept = load_demands(folder)
    assert kept.values.shape[0] == 6
    trimmed = load_demands(folder, trim_empty=True)
    assert trimmed.values.shape[0] == 3
    assert trimmed.times[0] == np.datetime64("2024-01-01T00:10:00")
    np.testing.assert_array_equal(trimmed.values, kept.values[2:5])
    for k in rows:
        (folder / f"m-{k}.xml").write_text(matrix(f"20240101-00{5 * k:02d}", []))
    with pytest.raises(DemandError, match="no step carries any demand"):
        load_demands(folder, trim_empty=True)
