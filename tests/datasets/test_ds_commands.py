"""``shadowcast data info|synth`` (the typer app, driven in-process)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from shadowcast.datasets import (
    load_demands,
    load_topology,
    step_totals,
    synthetic_dataset,
    write_csv,
)
from shadowcast.datasets.commands import app
from shadowcast.datasets.config import DatasetsConfig, SyntheticConfig
from shadowcast.datasets.source import load_dataset
from shadowcast.datasets.topology import write_node_link
from shadowcast.errors import ConfigError, DemandError

GEANT_TM = (
    "traffic_matrices/sndlib/"
    "directed-geant-uhlig-15min-over-4months-ALL_20050504-1500-20050506-2345.tar.gz"
)


def test_info_json_on_geant(data_dir: Path) -> None:
    res = CliRunner().invoke(
        app,
        [
            "info",
            "--topology",
            str(data_dir / "topologies/sndlib/geant.xml"),
            "--capacities",
            str(data_dir / "topologies/figret/Data/GEANT/GEANT.json"),
            "--demands",
            str(data_dir / GEANT_TM),
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout.strip().splitlines()[-1])
    assert obj["steps"] == 228 and obj["od_pairs"] == 454 and obj["step_s"] == 900
    assert obj["topology_nodes"] == 22 and obj["topology_links"] == 72
    assert obj["topology_capacity_min_bps"] == 155e6
    _, sums = step_totals(data_dir / GEANT_TM)
    assert abs(obj["total_mbit"] - sums.sum()) < 1e-6 * sums.sum()


def test_synth_roundtrip(tmp_path: Path) -> None:
    csv, topo_json = tmp_path / "d.csv", tmp_path / "t.json"
    res = CliRunner().invoke(
        app,
        ["synth", "--out", str(csv), "--topology-out", str(topo_json), "--weeks", "0.05"]
        + ["--step", "900", "--seed", "4", "--json"],
    )
    assert res.exit_code == 0, res.output
    obj = json.loads(res.stdout.strip().splitlines()[-1])
    assert abs(sum(v for k, v in obj.items() if k.startswith("share_")) - 1) < 1e-9
    ds = synthetic_dataset(weeks=0.05, step_s=900, seed=4)
    topo = load_topology(topo_json)
    assert topo.nodes == ds.topology.nodes and topo.links == ds.topology.links
    assert topo.coords == ds.topology.coords
    back = load_demands(csv, topology=topo)
    assert back.od_pairs == ds.demands.od_pairs and back.step == 900
    np.testing.assert_array_equal(back.values, ds.demands.values)
    assert obj["steps"] == ds.demands.steps == 34


def test_info_bad_file_raises_named_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("time,src,dst,value\n2024-01-01T00:00:00Z,A,B,oops\n")
    res = CliRunner().invoke(app, ["info", "--demands", str(bad), "--json"])
    assert isinstance(res.exception, DemandError)
    assert "bad.csv:2: field 'value' = 'oops'" in str(res.exception)


def test_load_dataset_from_config(tmp_path: Path) -> None:
    cfg = DatasetsConfig(synthetic=SyntheticConfig(weeks=0.02, step_s=900, seed=2))
    topo, dem, by_app = load_dataset(cfg)
    assert by_app is not None and dem.steps == 13 and topo.name == "Geant2001"
    write_node_link(topo, tmp_path / "t.json")
    write_csv(dem, tmp_path / "d.csv")
    topo2, dem2, none = load_dataset(
        DatasetsConfig(topology=tmp_path / "t.json", demands=tmp_path / "d.csv")
    )
    assert none is None and topo2.links == topo.links
    np.testing.assert_array_equal(dem2.values, dem.values)
    with pytest.raises(ConfigError, match="go together"):
        load_dataset(DatasetsConfig(topology=tmp_path / "t.json"))
    with pytest.raises(ValidationError, match="synthetic.weeks|weeks"):
        DatasetsConfig.model_validate({"synthetic": {"weeks": "many"}})
    with pytest.raises(ValidationError, match="extra"):
        DatasetsConfig.model_validate({"demand": "x.csv"})
