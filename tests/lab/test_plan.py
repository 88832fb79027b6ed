"""Lab planning (pure: no root, no namespaces)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import networkx as nx
import pytest

from shadowcast.errors import TopologyError
from shadowcast.lab import build
from shadowcast.lab.build import plan_lab
from shadowcast.records import Link, Topology


def ring(n: int = 6) -> Topology:
    names = tuple(f"n{i}" for i in range(n))
    links = []
    for i in range(n):
        a, b = names[i], names[(i + 1) % n]
        links += [Link(a, b, 10e9), Link(b, a, 40e9)]
    return Topology("ring", names, tuple(links))


def test_plan_is_consistent_hop_by_hop() -> None:
    plan = plan_lab(ring(), scale=1000, edges=["n0", "n2", "n3"], prefix="sct-")
    assert len(plan.links) == 6 and set(plan.edges) == {"n0", "n2", "n3"}
    lk, dev = plan.link_between("n0", "n1")
    assert (lk.rate_ab_bps, lk.rate_ba_bps) == (10e6, 40e6) and dev == lk.dev_a
    # destination-based forwarding: from any router, following next hops gives its path
    for key, path in plan.paths.items():
        src, dst = key.split(">")
        here = src
        walked = [here]
        while here != dst:
            here = plan.paths[f"{here}>{dst}"][1]
            walked.append(here)
        assert walked == path
        assert len(path) - 1 == nx.shortest_path_length(nx.cycle_graph(6), int(src[1:]),
                                                         int(dst[1:]))  # fmt: skip
    addrs = [a for lk in plan.links for a in (lk.addr_a, lk.addr_b)]
    addrs += [a for e in plan.edges.values() for a in (e.addr_host, e.addr_router)]
    assert len(set(addrs)) == len(addrs)
    assert plan.owner_of(plan.edges["n2"].addr_router) == "n2"
    assert all(len(d) <= 15 for lk in plan.links for d in (lk.dev_a, lk.dev_b))
    assert plan.digest() == plan_lab(ring(), edges=["n0", "n2", "n3"], prefix="sct-").digest()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"edges": ["zz"]}, "not in topology"), ({"prefix": "toolongprefix-"}, "longer than")],
)
def test_plan_errors_name_the_problem(kwargs: dict, match: str) -> None:
    with pytest.raises(TopologyError, match=match):
        plan_lab(ring(), **kwargs)


def test_disconnected_topology_is_refused() -> None:
    topo = Topology("two", ("a", "b", "c"), (Link("a", "b", 1e9), Link("b", "a", 1e9)))
    with pytest.raises(TopologyError, match="no path"):
        plan_lab(topo, edges=["a", "c"])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"[1, 2", r"state.json:1:6: malformed JSON"),
        (b"[" * 100_000, "nested too deeply"),
        (
            b'{"plan": {"prefix": 1}}',
            r"damaged lab state \(prefix: .*\); run `shadowcast lab down`",
        ),
        (b'{"digest": "x"}', r"damaged lab state \(plan: Input should be"),
    ],
)
def test_a_damaged_state_file_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: bytes, match: str
) -> None:
    monkeypatch.setattr(build, "STATE_DIR", tmp_path)
    (tmp_path / "zz-state.json").write_bytes(text)
    with pytest.raises(TopologyError, match=match):
        build.load_plan("zz-")


def test_the_state_file_round_trips(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "STATE_DIR", tmp_path)
    plan = plan_lab(ring(), scale=1000, edges=["n0", "n3"], prefix="zz-")
    state = tmp_path / "zz-state.json"
    state.write_text(json.dumps({"digest": plan.digest(), "plan": asdict(plan)}))
    assert build.load_plan("zz-") == plan
    state.write_text("[1, 2")  # deciding whether to rebuild: a damaged file means "rebuild"
    assert build._read_state(state) == {}
