"""The ``profile`` CLI over a real capture: ingest, top, show, train (JSON output)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from shadowcast.profile.commands import app

PCAPS = ("netflix.pcap", "zoom.pcap", "bittorrent.pcap", "steam.pcapng", "dns.pcap")


@pytest.fixture()
def pcap_dir(data_dir: Path) -> Path:
    pytest.importorskip("nfstream")
    return data_dir / "pcaps" / "ndpi" / "pcap"


def _json(result: object) -> dict[str, object]:
    out = result.stdout  # type: ignore[attr-defined]
    assert result.exit_code == 0, out  # type: ignore[attr-defined]
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1
    return json.loads(lines[0])  # type: ignore[no-any-return]


def test_ingest_top_show(tmp_path: Path, pcap_dir: Path) -> None:
    r = CliRunner()
    d = ["--store", str(tmp_path / "p.duckdb")]
    ing = _json(r.invoke(app, ["ingest", str(pcap_dir / "netflix.pcap"), *d, "--json"]))
    assert ing["flow_bytes"] == ing["series_bytes"] and ing["flows"] == 61
    top = _json(r.invoke(app, ["top", "--by", "category", "--last", "1h", *d, "--json"]))
    cats = {row["category"]: row for row in top["rows"]}  # type: ignore[union-attr]
    assert cats["video"]["latency_sensitivity"] == "medium"
    assert sum(row["bytes"] for row in top["rows"]) == ing["series_bytes"]  # type: ignore[union-attr]
    show = _json(r.invoke(app, ["show", "NetFlix", "--last", "1h", *d, "--json"]))
    assert show["found"] and show["category"] == "video"
    assert show["bps_peak"] >= show["bps_avg"] > 0  # type: ignore[operator]
    assert show["transfer_bytes_p50"] <= show["transfer_bytes_p99"]  # type: ignore[operator]
    site = _json(r.invoke(app, ["top", "--by", "site-pair", *d, "--json"]))
    assert site["rows"]
    bad = r.invoke(app, ["top", "--by", "colour", *d])
    assert bad.exit_code != 0


def test_bad_config_is_a_clear_error(tmp_path: Path) -> None:
    from shadowcast.cli import app as root

    cfg = tmp_path / "s.yaml"
    cfg.write_text("profile:\n  peak_s: 7\n")
    res = CliRunner().invoke(root, ["-c", str(cfg), "profile", "top", "--json"])
    assert res.exit_code == 2
    assert "profile.peak_s" in res.output and len(res.output.strip().splitlines()) == 1


def test_train_command(tmp_path: Path, pcap_dir: Path) -> None:
    sub = tmp_path / "pcaps"
    sub.mkdir()
    for name in PCAPS:
        (sub / name).symlink_to(pcap_dir / name)
    out = tmp_path / "model.txt"
    res = _json(
        CliRunner().invoke(
            app,
            ["train", "--pcaps", str(sub), "--out", str(out), "--holdout", "0.4", "--json"],
        )
    )
    assert out.exists() and res["flows"] > 50
    assert 0.0 <= res["holdout_macro_f1"] <= 1.0  # type: ignore[operator]
    from shadowcast.profile.classifier import BehaviourModel

    BehaviourModel.load(out)
