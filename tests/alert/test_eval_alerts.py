"""``shadowcast eval alerts`` with the probability policy: p tuned on one series, frozen
while a held-out one (``--test``) is judged."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from shadowcast.datasets import write_csv
from shadowcast.records import DemandSeries

NODES = ("A", "B", "C", "D")
EDGES = [("A", "B"), ("B", "C"), ("C", "D"), ("D", "A")]
PAIRS = (("A", "B"), ("B", "C"), ("C", "D"), ("D", "A"), ("A", "C"))


def _series(seed: int, start: str) -> DemandSeries:
    """A day at 5 min: every pair swells for an hour or so every few hours, over 90 % of
    its 10 Mbit/s link on some swells."""
    rng = np.random.default_rng(seed)
    t = np.arange(288)
    phase = rng.uniform(0, 2 * np.pi, len(PAIRS))
    wave = np.sin(2 * np.pi * t[:, None] / 48 + phase) ** 8  # a swell every 4 hours
    v = 3.0 + 6.2 * wave * rng.uniform(0.9, 1.15, (len(t), len(PAIRS)))
    v[:, -1] = 0.5  # A->C: light, on two links
    times = np.datetime64(start, "s") + t * np.timedelta64(300, "s")
    return DemandSeries(times, PAIRS, v.astype(np.float32), 300, NODES)


def _files(tmp: Path) -> tuple[Path, Path, Path, Path]:
    topo = tmp / "ring.json"
    links = [
        {"source": a, "target": b, "capacity": 10e6} for x, y in EDGES for a, b in ((x, y), (y, x))
    ]
    topo.write_text(
        json.dumps({"directed": True, "multigraph": False, "graph": {},
                    "nodes": [{"id": n} for n in NODES], "links": links})
    )  # fmt: skip
    train = write_csv(_series(1, "2024-03-04T00:00:00"), tmp / "train.csv")
    test = write_csv(_series(2, "2024-03-05T00:00:00"), tmp / "test.csv")
    cfg = tmp / "s.yaml"
    cfg.write_text(
        "replay:\n  warmup: 6h\n  model: persistence\n"
        "alert:\n  policy: probability\n  tune_every: 2h\n  tune_min_alerts: 1\n"
    )
    return topo, train, test, cfg


def test_eval_alerts_tunes_p_then_judges_the_held_out_series_with_it_frozen(
    tmp_path: Path,
) -> None:
    from shadowcast.cli import app

    topo, train, test, cfg = _files(tmp_path)
    args = ["-c", str(cfg), "eval", "alerts", "--topology", str(topo), "--demands", str(train),
            "--test", str(test), "--json"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    train_doc = doc["train"]
    assert doc["policy"] == train_doc["policy"] == "probability"
    assert train_doc["steps"] == doc["steps"] == 288
    assert train_doc["episodes"] > 0 and doc["episodes"] > 0
    # the choice made on the training series is the p in force, unchanged, on the test one
    assert train_doc["p_tuned"] and doc["p"] == train_doc["p_tuned"]
    assert "p_tuned" not in doc  # no tuner while testing
    for cls, curve in train_doc["curves"].items():
        assert cls in doc["p"]
        assert [pt["p"] for pt in curve] == sorted(pt["p"] for pt in curve)
        assert all(pt["episodes"] == curve[0]["episodes"] for pt in curve)
    for key in ("alerts", "true_alerts", "precision", "recall", "lead_minutes_median"):
        assert key in doc


def test_eval_alerts_test_needs_demands_and_the_probability_policy(tmp_path: Path) -> None:
    from shadowcast.cli import app

    topo, train, test, _ = _files(tmp_path)
    res = CliRunner().invoke(app, ["eval", "alerts", "--test", str(test), "--json"])
    assert res.exit_code != 0 and "--test needs --demands" in res.output
    res = CliRunner().invoke(app, ["eval", "alerts", "--policy", "magic", "--json"])
    assert res.exit_code != 0 and "--policy: 'magic'" in res.output
