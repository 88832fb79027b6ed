"""The simulated network: conservation, shaping delays and losses, overload accounting."""

from __future__ import annotations

import numpy as np
import pytest

from shadowcast.network.sim import Reserve, ShapeRule, SimNetwork
from shadowcast.network.state import PathShare, RoutingState
from shadowcast.records import Link, Topology

# a -> b directly (10 Mbit/s) or a -> c -> b (100 Mbit/s each way)
TOPO = Topology(
    "tri",
    ("a", "b", "c"),
    (
        Link("a", "b", 10e6),
        Link("a", "c", 100e6),
        Link("c", "b", 100e6),
        Link("b", "a", 10e6),
        Link("c", "a", 100e6),
        Link("b", "c", 100e6),
    ),
)
OD = (("a", "b"),)


def net(max_delay_s: int = 4 * 3600) -> SimNetwork:
    kinds = ("bulk", "voip")
    return SimNetwork(
        TOPO, OD, kinds, 60, class_of={"bulk": "low", "voip": "high"}, max_delay_s=max_delay_s
    )


def test_overload_and_excess_are_measured() -> None:
    n = net()
    st = n.step(0, {"bulk": np.array([12.0]), "voip": np.array([3.0])})
    # ECMP: the one-hop path a->b carries everything: 15 on 10 Mbit/s
    assert st.utilisation[0] == pytest.approx(1.5)
    assert st.excess_mbit == pytest.approx(5.0 * 60)
    assert n.totals.overload_link_minutes_100 == pytest.approx(1.0)
    assert n.totals.lost_mbit == 0.0


def test_path_switch_removes_the_overload() -> None:
    n = net()
    n.routing.install([PathShare("low", 0, (1, 2), 1.0)])  # bulk over a->c->b
    st = n.step(0, {"bulk": np.array([12.0]), "voip": np.array([3.0])})
    assert st.utilisation[0] == pytest.approx(0.3)
    assert st.utilisation[1] == pytest.approx(0.12)
    assert n.totals.overload_link_minutes_100 == 0.0


def test_shaping_delays_then_delivers_everything_in_order() -> None:
    n = net(max_delay_s=3600)
    n.shaping = [ShapeRule("low", 0, 5.0, until_s=120)]  # two steps of shaping
    offered = [12.0, 12.0, 0.0, 0.0, 0.0]
    carried = []
    for i, v in enumerate(offered):
        st = n.step(i * 60, {"bulk": np.array([v]), "voip": np.array([0.0])})
        carried.append(float(st.carried["bulk"][0]))
    assert carried[:2] == pytest.approx([5.0, 5.0])
    # after the limit ends the backlog (7 + 7 Mbit/s over a minute each) goes out at once
    assert carried[2] == pytest.approx(14.0)
    total_offered = sum(offered) * 60
    assert sum(carried) * 60 == pytest.approx(total_offered)
    # first-come first-served: of step 2's 19 Mbit/s wanting to go, 5 of the 7 held
    # earlier went; 2 old and all 12 new waited: 7 + 12 were delayed at least once
    assert n.totals.delayed_mbit == pytest.approx(19.0 * 60)
    assert n.totals.lost_mbit == 0.0
    assert n.queued_mbit == pytest.approx(0.0)


def test_shaping_drops_what_waits_too_long() -> None:
    n = net(max_delay_s=120)  # two steps
    n.shaping = [ShapeRule("low", 0, 0.0, until_s=10**9)]
    for i in range(6):
        n.step(i * 60, {"bulk": np.array([1.0]), "voip": np.array([0.0])})
    # each minute's 60 Mbit waits two steps then is dropped: 4 minutes' worth lost so far
    assert n.totals.lost_mbit == pytest.approx(4 * 60.0)
    assert n.queued_mbit == pytest.approx(2 * 60.0)
    offered = 6 * 60.0
    assert n.totals.lost_mbit + n.queued_mbit == pytest.approx(offered)


def test_reserved_class_is_served_first() -> None:
    n = net()
    n.reservations = [Reserve("high", (0,), 4.0, until_s=10**9)]
    n.step(0, {"bulk": np.array([12.0]), "voip": np.array([3.0])})
    assert n.totals.excess_reserved_mbit == 0.0  # voip (3) fits in its reservation
    n.reservations = [Reserve("high", (0,), 12.0, until_s=10**9)]
    n.step(60, {"bulk": np.array([0.0]), "voip": np.array([12.0])})
    assert n.totals.excess_reserved_mbit == pytest.approx(2.0 * 60)


def test_state_snapshot_round_trip() -> None:
    n = net()
    snap = n.snapshot()
    n.routing.install([PathShare("low", 0, (1, 2), 1.0)])
    n.shaping = [ShapeRule("low", 0, 1.0, 100)]
    n.restore(snap)
    assert n.shaping == [] and n.routing.planned_classes() == []


def test_routing_state_keeps_igp_for_unplanned_pairs() -> None:
    od = (("a", "b"), ("a", "c"))
    rs = RoutingState(TOPO, od)
    rs.install([PathShare("low", 0, (1, 2), 1.0)])  # only a->b planned
    m = rs.matrix("low").toarray()
    assert m[:, 1].tolist() == rs.base.toarray()[:, 1].tolist()
    assert m[1, 0] == 1.0 and m[0, 0] == 0.0
