"""``shadowcast store stats`` and ``store retain`` on a real DuckDB file."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from shadowcast.store.commands import app
from shadowcast.store.duckdb import DuckDBStore
from shadowcast.store.schema import TABLES
from shadowcast.store.synth import DAY_MS, T0_MS, random_table

runner = CliRunner()


def make_store(path: Path) -> None:
    with DuckDBStore(path) as s:
        s.write("od_series", random_table("od_series", 100, span_ms=10 * DAY_MS))
        s.write("alerts", random_table("alerts", 5))


def test_stats_json(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    make_store(path)
    res = runner.invoke(app, ["stats", "--path", str(path), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["tables"]["od_series"]["rows"] == 100
    assert out["tables"]["flows"] == {"rows": 0, "first": None, "last": None}
    with DuckDBStore(path) as s:
        first = s.read("od_series").column("time")[0].as_py()
    assert out["tables"]["od_series"]["first"] == first.isoformat()
    assert out["file_bytes"] > 0
    res = runner.invoke(app, ["stats", "--path", str(path)])
    assert res.exit_code == 0 and "od_series" in res.stdout


def test_stats_missing_file_is_an_error(tmp_path: Path) -> None:
    res = runner.invoke(app, ["stats", "--path", str(tmp_path / "none.duckdb")])
    assert res.exit_code != 0
    assert "no store at" in str(res.exception)
    assert not (tmp_path / "none.duckdb").exists()


def test_retain_days(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    make_store(path)
    now = "2023-11-24T22:13:20"  # T0 + 10 days
    with DuckDBStore(path) as s:
        times = s.read("od_series").column("time").cast("int64").to_numpy()
    old = int((times < T0_MS + 5 * DAY_MS).sum())
    # per-table defaults (od_series 90 days, alerts 365): nothing is old enough
    res = runner.invoke(app, ["retain", "--path", str(path), "--now", now])
    assert res.exit_code == 0, res.output
    assert "od_series" in res.stdout
    with DuckDBStore(path) as s:
        assert (s.count("od_series"), s.count("alerts")) == (100, 5)
    res = runner.invoke(app, ["retain", "--path", str(path), "--days", "5", "--now", now, "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["deleted"] == {
        **dict.fromkeys(TABLES, 0),
        "od_series": old,
        "alerts": 5,
    }
    with DuckDBStore(path) as s:
        assert s.count("od_series") == 100 - old
