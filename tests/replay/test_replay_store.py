from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def test_plan_and_forecast_read_the_replay_store(tmp_path: Path) -> None:
    env_dir = tmp_path / "var"
    env = {"SHADOWCAST_DATA_DIR": str(env_dir), "PATH": "/usr/bin:/bin"}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "shadowcast.cli", *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    rep = cli("replay", "--direct", "--weeks", "0.4", "--json", "--no-plot")
    assert rep.returncode == 0, rep.stderr[-2000:]
    topo = Path(__file__).resolve().parents[2] / "src/shadowcast/datasets/data/Geant2001.graphml"
    store = str(env_dir / "replay.duckdb")
    import duckdb

    with duckdb.connect(store, read_only=True) as con:
        row = con.execute("SELECT count(*) FROM drift_events").fetchone()
    # the report counts the service's drift events (false drifts on a plain backbone)
    assert row is not None and json.loads(rep.stdout)["feedback"]["drifts"] == row[0]
    plan = cli("plan", "--topology", str(topo), "--store", store, "--json")
    assert plan.returncode == 0, plan.stderr[-2000:]
    out = json.loads(plan.stdout)
    assert out["checker"] == "accepted" and out["plan"]["topology"] == "Geant2001"
    # `shadowcast forecast` finds the replay's store and topology by itself, maps the OD
    # forecasts onto every link, dates runout, and stores its cycle for `plan --store`
    fc = cli("forecast", "--model", "seasonal_naive", "--write", "--json")
    # 3: links at risk (the synthetic backbone runs hot; cron and Nagios read this)
    assert fc.returncode in (0, 3), fc.stderr[-2000:]
    assert (fc.returncode == 3) == bool(json.loads(fc.stdout)["links_at_risk"])
    doc = json.loads(fc.stdout)
    assert doc["source"] == store and doc["model"] == "seasonal_naive"
    from shadowcast.datasets import load_topology

    assert len(doc["links"]) == len(doc["runout"]) == len(load_topology(topo).links)
    p = [max(row["15m"]["p_exceed"], row["1h"]["p_exceed"]) for row in doc["links"]]
    assert p == sorted(p, reverse=True) and all(0.0 <= x <= 1.0 for x in p)
    assert doc["written_rows"] > 0
    plan2 = cli("plan", "--topology", str(topo), "--store", store, "--json")
    assert plan2.returncode == 0, plan2.stderr[-2000:]
    score = cli("forecast", "score", "--json")
    assert score.returncode == 0, score.stderr[-2000:]
    rows = json.loads(score.stdout)["rows"]
    assert {r["horizon_s"] for r in rows} == {900, 3600} and all(r["scored"] > 0 for r in rows)
    missing = cli("plan", "--topology", str(topo), "--store", str(tmp_path / "none.duckdb"))
    assert missing.returncode == 2 and "no such file" in " ".join(missing.stderr.split())
