"""Behavioural classifier: features, reproducible training, the shipped model, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from profile_flowgen import make_flows

from shadowcast.errors import ConfigError
from shadowcast.profile.classifier import CLASSES, FEATURES, BehaviourModel, features


def _labelled(n: int = 600) -> tuple[object, np.ndarray]:
    t = make_flows(n, seed=5)
    labels = np.array(CLASSES, dtype=object)[np.arange(n) % len(CLASSES)]
    return t, labels


def test_features_shape_and_hidden_ports() -> None:
    t = make_flows(50)
    x = features(t)
    assert x.shape == (50, len(FEATURES))
    assert not np.isnan(x[:, FEATURES.index("ports_class")]).any()
    assert np.isnan(features(t, hide_ports=True)[:, FEATURES.index("ports_class")]).all()
    assert np.isnan(x[:, FEATURES.index("dir_ratio")]).all()  # flow exports lack it


def test_training_is_reproducible(tmp_path: Path) -> None:
    t, y = _labelled()
    a = BehaviourModel.train(t, y, seed=3, num_rounds=10)  # type: ignore[arg-type]
    b = BehaviourModel.train(t, y, seed=3, num_rounds=10)  # type: ignore[arg-type]
    a.save(tmp_path / "a.txt")
    b.save(tmp_path / "b.txt")
    assert (tmp_path / "a.txt").read_text() == (tmp_path / "b.txt").read_text()
    back = BehaviourModel.load(tmp_path / "a.txt")
    p1 = a.predict_proba(t)  # type: ignore[arg-type]
    p2 = back.predict_proba(t)  # type: ignore[arg-type]
    assert np.allclose(p1, p2)


def test_shipped_model_predicts_categories() -> None:
    m = BehaviourModel.load()
    pred = m.predict(make_flows(200, seed=9))
    assert set(pred.category.tolist()) <= set(CLASSES)
    assert ((pred.confidence > 0) & (pred.confidence <= 1)).all()
    assert not m.use_ports


def test_bad_model_file(tmp_path: Path) -> None:
    f = tmp_path / "m.txt"
    f.write_text("tree\nnonsense")
    with pytest.raises(ConfigError, match="missing header"):
        BehaviourModel.load(f)
    f.write_text('# shadowcast-behaviour {"classes": ["web"], "use_ports": false}\ngarbage')
    with pytest.raises(ConfigError, match="corrupt"):
        BehaviourModel.load(f)
    with pytest.raises(ConfigError, match="cannot read"):
        BehaviourModel.load(tmp_path / "absent.txt")


def test_retrain_on_operator_labelled_flows(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    from typer.testing import CliRunner

    from shadowcast.profile.commands import app

    t, y = _labelled(300)
    table = t.append_column("label", pa.array(list(y)))  # type: ignore[attr-defined]
    pq.write_table(table, tmp_path / "mine.parquet")
    out = tmp_path / "mine.txt"
    res = CliRunner().invoke(
        app,
        ["train", "--pcaps", str(tmp_path), "--flows", str(tmp_path / "mine.parquet"),
         "--out", str(out), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert BehaviourModel.load(out).classes == CLASSES


HELDOUT = Path(__file__).parent / "testdata" / "heldout_lab_flows.parquet"


def test_shipped_model_on_heldout_lab_sessions() -> None:
    """26 lab sessions the shipped model never saw (see testdata/README.md): floors on the
    macro-F1 with packet features, as plain two-way records and as one-way records."""
    import pyarrow as pa

    from shadowcast.profile.classifier import one_way
    from shadowcast.profile.training import load_lab, macro_f1

    held = load_lab(HELDOUT)
    assert set(held.files.tolist()).isdisjoint(load_lab().files.tolist())  # really held out
    whole = held.view_mask("flow")
    t, y = held.flows.filter(pa.array(whole)), held.labels[whole]
    assert set(y.tolist()) == set(CLASSES)
    m = BehaviourModel.load()
    assert macro_f1(y, m.predict(t).category) >= 0.85
    assert macro_f1(y, m.predict(t, hide_rich=True).category) >= 0.75
    ow, rows = one_way(t)
    assert macro_f1(y[rows], m.predict(ow, hide_rich=True).category) >= 0.6
