"""The store benchmark runs and reports what the issue asks for (small size)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_store_prints_one_json_object(tmp_path: Path) -> None:
    res = subprocess.run(
        [sys.executable, str(REPO / "bench" / "store.py"), "--rows", "30000", "--batch",
         "10000", "--repeat", "1", "--dir", str(tmp_path), "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["rows"] == 30_000
    assert out["results_match"] is True
    for key in ("write_rows_per_s", "duckdb_agg_seconds", "pandas_agg_seconds"):
        assert out[key] > 0
    assert out["ratio_pandas_over_duckdb"] == pytest.approx(
        out["pandas_agg_seconds"] / out["duckdb_agg_seconds"], rel=0.1
    )
    for key in ("clickhouse", "clickhouse_cluster"):  # run, or skipped with a reason
        entry = out[key]
        assert entry.get("skipped") or (
            entry["results_match"] is True
            and entry["rows"] == 30_000
            and entry["write_rows_per_s"] > 0
        ), entry
    assert list(tmp_path.iterdir()) == []  # the temporary store is removed
