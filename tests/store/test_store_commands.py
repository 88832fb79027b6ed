"""``shadowcast store stats``, ``retain`` and ``migrate`` on a real DuckDB file, and
``store copy`` from DuckDB into a real ClickHouse server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from shadowcast.settings import Settings
from shadowcast.store.clickhouse_copy import arrow_totals, differences
from shadowcast.store.commands import app
from shadowcast.store.config import StoreConfig, open_store
from shadowcast.store.duckdb import DuckDBStore
from shadowcast.store.schema import TABLES, TS
from shadowcast.store.synth import DAY_MS, T0_MS, random_table, synthetic_flows

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


def _sorted(t: pa.Table) -> pa.Table:
    """Rows in one order (a copy moves rows window by window, so in time order)."""
    keys = [n for n, f in zip(t.column_names, t.schema, strict=True)
            if not (pa.types.is_fixed_size_binary(f.type) or pa.types.is_list(f.type))]  # fmt: skip
    return t.sort_by([(k, "ascending") for k in keys])


def _settings(cfg: StoreConfig) -> Settings:
    return Settings(store=cfg)  # what the root command puts in ctx.obj


@pytest.mark.integration
def test_copy_duckdb_to_clickhouse_checks_counts_and_sums(
    tmp_path: Path, config_for: Callable[..., StoreConfig]
) -> None:
    path = tmp_path / "s.duckdb"
    with DuckDBStore(path) as s:
        for table in TABLES:
            s.write(table, random_table(table, 300, seed=7, span_ms=3 * DAY_MS))
        s.write("flows", pa.concat_tables(synthetic_flows(5_000, 5_000, seed=1)))
        untimed = random_table("od_series", 2).set_column(0, "time", pa.nulls(2, TS))
        s.write("od_series", untimed)
    cfg = config_for("clickhouse")
    obj = _settings(cfg)
    res = runner.invoke(app, ["migrate", "--json"], obj=obj)
    assert res.exit_code == 0, res.output
    [server] = json.loads(res.stdout)["servers"].values()
    assert server["version"] == 1 and "flows" in server["created"]
    args = ["copy", "--from", f"duckdb:{path}", "--to", "clickhouse", "--window-hours", "20"]
    res = runner.invoke(app, [*args, "--json"], obj=obj)
    assert res.exit_code == 0, res.output
    tables = json.loads(res.stdout)["tables"]
    assert tables["flows"] == {"rows": 5_300, "checked": True}
    assert tables["od_series"] == {"rows": 302, "checked": True}
    ch = open_store(cfg)
    with DuckDBStore(path) as s:
        for table in TABLES:
            assert _sorted(ch.read(table)).equals(_sorted(s.read(table))), table  # same rows
    ch.close()
    res = runner.invoke(app, ["copy", "--from", f"duckdb:{path}", "--to", "clickhouse",
                              "--table", "alerts"], obj=obj)  # fmt: skip
    assert res.exit_code == 0, res.output  # a second copy checks what it added
    assert "counts and sums match" in res.stdout
    res = runner.invoke(app, ["copy", "--from", "duckdb", "--to", "clickhouse"], obj=obj)
    assert res.exit_code != 0 and "expected duckdb:PATH" in str(res.exception)


def test_copy_totals_catch_a_lost_or_changed_row() -> None:
    data = random_table("flows", 50, seed=3)
    want = arrow_totals("flows", data)
    assert differences(want, arrow_totals("flows", data)) == []
    assert any(d.startswith("rows") for d in differences(want, arrow_totals("flows", data[1:])))
    changed = data.set_column(0, "time_start", pa.array([1] * 50, pa.int64()).cast(TS))
    assert any("time_start" in d for d in differences(want, arrow_totals("flows", changed)))
    addr = data.set_column(3, "src_addr", pa.array([bytes(16)] * 50, pa.binary(16)))
    assert any("src_addr" in d for d in differences(want, arrow_totals("flows", addr)))


def test_migrate_on_duckdb_is_done_on_open(tmp_path: Path) -> None:
    cfg = StoreConfig(backend="duckdb", data_dir=tmp_path)
    res = runner.invoke(app, ["migrate"], obj=_settings(cfg))
    assert res.exit_code == 0, res.output
    assert "schema up to date" in res.stdout
    assert (tmp_path / "shadowcast.duckdb").is_file()
