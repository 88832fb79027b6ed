"""Held-out evaluation: folds keep groups whole, reports, one-way records, lab flow files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from profile_flowgen import make_flows

from shadowcast.errors import DataError
from shadowcast.profile.base import Prediction
from shadowcast.profile.classifier import CLASSES, BehaviourModel, one_way
from shadowcast.profile.training import (
    Labelled,
    class_report,
    combine,
    cross_validate,
    group_folds,
    load_lab,
)


def _groups(n_groups: int = 40, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Groups of 1..30 flows, each group mostly one class, a few mixed."""
    rng = np.random.default_rng(seed)
    groups, labels = [], []
    for g in range(n_groups):
        size = int(rng.integers(1, 30))
        main = CLASSES[g % len(CLASSES)]
        for _ in range(size):
            groups.append(f"g{g}")
            labels.append(main if rng.random() < 0.9 else CLASSES[int(rng.integers(0, 6))])
    return np.array(groups, dtype=object), np.array(labels, dtype=object)


def test_group_folds_never_split_a_group() -> None:
    groups, labels = _groups()
    folds = group_folds(groups, labels, k=5, seed=1)
    for g in set(groups.tolist()):
        assert len(set(folds[groups == g].tolist())) == 1, g
    assert set(folds.tolist()) == set(range(5))
    # 40 groups, 6 classes: every class has >= 5 groups, so every fold holds every class
    for f in range(5):
        majors = {labels[groups == g][0] for g in set(groups[folds == f].tolist())}
        assert len(majors) >= 5
    assert (group_folds(groups, labels, k=5, seed=1) == folds).all()  # deterministic


def test_group_folds_needs_enough_groups() -> None:
    with pytest.raises(DataError, match="cannot fill"):
        group_folds(np.array(["a", "b"], dtype=object), np.array(["web", "web"], dtype=object))


class _Recorder:
    """A stand-in model that remembers which groups it was trained on and refuses to
    predict a flow of one of them: a leak across folds fails the test."""

    classes = CLASSES

    def __init__(self, trained: set[str]) -> None:
        self.trained = trained

    def predict(self, table: pa.Table, hide_rich: bool = False) -> Prediction:
        seen = set(table.column("exporter").to_pylist()) & self.trained
        assert not seen, f"groups {seen} were in training and in the held-out fold"
        n = table.num_rows
        return Prediction(np.full(n, "web", dtype=object), np.ones(n, np.float32))


def test_cross_validation_holds_out_whole_sessions() -> None:
    groups, labels = _groups(30)
    flows = make_flows(len(groups), seed=4)
    # the group rides along in a column the stand-in model can read
    flows = flows.set_column(flows.schema.get_field_index("exporter"), "exporter",
                             pa.array(groups.tolist(), pa.string()))  # fmt: skip
    calls: list[set[str]] = []

    def train(t: pa.Table, y: np.ndarray, g: np.ndarray) -> _Recorder:
        assert set(t.column("exporter").to_pylist()) == set(g.tolist())
        calls.append(set(g.tolist()))
        return _Recorder(calls[-1])

    cv = cross_validate(Labelled(flows, labels, groups), train, k=4, seed=2)
    assert len(calls) == 4
    assert (cv.full == "web").all() and (cv.plain == "web").all()
    for f in range(4):  # every group is trained on in exactly k-1 folds
        held = set(groups[cv.folds == f].tolist())
        assert held.isdisjoint(calls[f]) and held | calls[f] == set(groups.tolist())


def test_class_report() -> None:
    y = np.array(["web", "web", "voip", "voip", "bulk"], dtype=object)
    p = np.array(["web", "voip", "voip", "voip", "web"], dtype=object)
    r = class_report(y, p)
    assert r["web"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2.0}
    assert r["voip"]["precision"] == pytest.approx(2 / 3) and r["voip"]["recall"] == 1.0
    assert r["bulk"]["f1"] == 0.0


def _biflows() -> pa.Table:
    t = make_flows(3, seed=1)
    return (
        t.append_column("up_bytes", pa.array([100, 0, 7], pa.uint64()))
        .append_column("up_packets", pa.array([2, 0, 1], pa.uint64()))
        .append_column("up_duration_ms", pa.array([500, 0, 0], pa.int64()))
        .append_column("down_bytes", pa.array([3000, 80, 9], pa.uint64()))
        .append_column("down_packets", pa.array([3, 1, 1], pa.uint64()))
        .append_column("down_duration_ms", pa.array([400, 0, 0], pa.int64()))
    )


def test_one_way_records() -> None:
    t = _biflows()
    ow, rows = one_way(t)
    assert rows.tolist() == [0, 2, 0, 1, 2]  # the empty "up" of flow 1 is left out
    assert ow.column("bytes").to_pylist() == [100, 7, 3000, 80, 9]
    assert ow.column("packets").to_pylist() == [2, 1, 3, 1, 1]
    assert ow.column("dst_port").to_pylist()[2] == t.column("src_port")[0].as_py()
    dur = np.asarray(ow.column("time_end").to_numpy()) - np.asarray(ow.column("time_start"))
    assert dur.tolist() == [500, 0, 400, 0, 0]
    assert one_way(make_flows(4))[1].size == 0  # plain flow records: nothing to split


def test_lab_file_round_trip(tmp_path: Path) -> None:
    from shadowcast.profile.pcap import PCAP_SCHEMA

    n = 12
    base = make_flows(n, seed=2)
    cols = {}
    for f in PCAP_SCHEMA:
        cols[f.name] = base.column(f.name) if f.name in base.column_names else pa.nulls(n, f.type)
    t = pa.table(cols, schema=PCAP_SCHEMA)
    t = t.append_column("label", pa.array(["web", "voip"] * 6))
    t = t.append_column("session", pa.array([f"r1-{i % 3}" for i in range(n)]))
    pq.write_table(t, tmp_path / "lab.parquet")
    lab = load_lab(tmp_path / "lab.parquet")
    assert lab.labels.tolist() == ["web", "voip"] * 6
    assert set(lab.files.tolist()) == {"r1-0", "r1-1", "r1-2"}
    assert lab.source_mask("lab").all()
    both = combine(Labelled(lab.flows, lab.labels, np.array(["x.pcap"] * n, dtype=object)), lab)
    assert both.source_mask("ndpi").sum() == n and both.source_mask("lab").sum() == n
    with pytest.raises(DataError, match="more than one part"):
        combine(lab, lab)
    pq.write_table(t.drop_columns(["session"]), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="missing columns \\['session'\\]"):
        load_lab(tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="cannot read lab flows"):
        load_lab(tmp_path / "absent.parquet")


def test_training_uses_one_way_copies_and_group_weights() -> None:
    t = _biflows()
    big = pa.concat_tables([t] * 20)
    y = np.array(CLASSES * 10, dtype=object)
    g = np.array([f"s{i % 7}" for i in range(60)], dtype=object)
    a = BehaviourModel.train(big, y, seed=1, num_rounds=5, groups=g)
    b = BehaviourModel.train(big, y, seed=1, num_rounds=5, groups=g, one_way_copies=False)
    # the one-way copies are in the training data: different trees
    assert a.booster.model_to_string() != b.booster.model_to_string()  # type: ignore[attr-defined]
