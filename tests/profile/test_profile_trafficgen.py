"""The lab training-traffic generator: the plan (pure) and a tiny real run (root, tools)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from netnames import lab_prefix
from shadowcast.errors import DataError
from shadowcast.lab.genkinds import KINDS
from shadowcast.lab.trafficgen import check_tools, generate, plan_sessions
from shadowcast.profile.classifier import CLASSES


def test_every_kind_labels_a_known_class() -> None:
    assert {k.label for k in KINDS.values()} == set(CLASSES)


def test_plan_is_seeded_and_balanced() -> None:
    a = plan_sessions(26, seed=5)
    assert a == plan_sessions(26, seed=5)
    assert a != plan_sessions(26, seed=6)
    b = plan_sessions(36, seed=5)
    assert set(Counter(s.label for s in b).values()) == {6}  # labels in turn
    per_label = Counter(k.label for k in KINDS.values())
    for kind, n in Counter(s.kind for s in b).items():  # then the kinds of each label in turn
        assert n == 6 // per_label[KINDS[kind].label], kind
    assert all(s.label == KINDS[s.kind].label for s in a)
    assert len({s.name for s in a}) == len(a) and all(s.name.startswith("r5-") for s in a)
    for s in a:
        assert 1.0 <= s.down_mbps <= 100.0 and 0.1 * s.down_mbps <= s.up_mbps <= s.down_mbps
    capped = plan_sessions(26, seed=5, max_duration_s=4.0)
    assert max(s.duration_s for s in capped) == 4.0


def test_plan_refuses_unknown_kinds() -> None:
    with pytest.raises(DataError, match="unknown traffic kind"):
        plan_sessions(3, kinds=["video-vod", "telepathy"])


TINY = ("sip-call", "game-udp", "bulk-iperf3", "dns-lookups", "ssh-typing", "bulk-http")


@pytest.mark.integration
@pytest.mark.slow
def test_tiny_run_labels_flows_by_generator(tmp_path: Path) -> None:
    pytest.importorskip("nfstream")
    cant = check_tools(TINY)
    if cant:
        pytest.skip(f"generator cannot run here: {cant}")
    import pyarrow.parquet as pq

    plan = plan_sessions(len(TINY), seed=3, kinds=TINY, max_duration_s=4.0)
    res = generate(tmp_path / "t.parquet", plan, slots=3, budget_s=120, prefix=lab_prefix("g"))
    assert res["skipped"] == {} and res["sessions"] == len(TINY)
    t = pq.read_table(tmp_path / "t.parquet")
    by_session = {s.name: s for s in plan}
    sessions = np.asarray(t.column("session").to_pylist(), dtype=object)
    assert set(sessions.tolist()) == set(by_session)  # every session gave flows
    for name, label, kind in zip(sessions, t.column("label").to_pylist(),
                                 t.column("kind").to_pylist(), strict=True):  # fmt: skip
        assert label == by_session[name].label and kind == by_session[name].kind
    proto = np.asarray(t.column("proto").to_numpy())
    kinds = np.asarray(t.column("kind").to_pylist(), dtype=object)
    assert (proto[kinds == "sip-call"] == 17).all() and (proto[kinds == "bulk-iperf3"] == 6).all()
    sip = t.filter(pa.array(kinds == "sip-call"))
    # one RTP flow both ways at 20 ms (~50 packets/s each way) for ~4 s
    assert max(sip.column("packets").to_pylist()) >= 250
    assert 1 not in set(proto.tolist())  # port-unreachables of a finished side are dropped
