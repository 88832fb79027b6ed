"""A simulated network in which actions change link loads (a fluid model, one step at a time).

Offered demand per traffic kind (an application category, or ``""`` for all traffic) and
OD pair is routed by the routing in force (:class:`RoutingState`: ECMP until a plan sets path
splits), per routing class (``class_of[kind]``). What the actuator decided applies:

* **path switches** change the routing of a class;
* **shaping** caps a class on a link: while the class's load on the link exceeds the limit,
  every OD pair of the class crossing the link is held back in proportion to its share on
  the link. Held traffic waits in a FIFO per (kind, OD) and is offered again on the next
  step (oldest first): delayed, not lost. Traffic that has waited longer than
  ``max_delay_s`` is dropped by the shaper and counted as **lost**;
* **reservations** guarantee a class's share: when a link is overloaded, reserved traffic
  is served first, so excess lands on the other classes (``excess_reserved_mbit`` counts
  reserved traffic a link still could not carry).

Traffic above a link's capacity is **not carried**: a step whose load exceeds a link's
capacity counts as overload (``overload_link_minutes_100``: link-minutes at more than 100 %
of capacity) and the load above capacity is counted as **excess** (Mbit the link could not
carry in that step; a real network drops or queues it and senders retransmit). Excess is
not re-offered later, so the no-action baseline and the acting run see the same demand.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shadowcast.network.state import RoutingState
from shadowcast.records import F64, Topology


@dataclass(frozen=True, slots=True)
class ShapeRule:
    """Limit routing class ``cls`` on link ``link`` (index) to ``limit_mbps`` until ``until_s``."""

    cls: str
    link: int
    limit_mbps: float
    until_s: int


@dataclass(frozen=True, slots=True)
class Reserve:
    """``mbps`` held for class ``cls`` on every link of ``links`` until ``until_s``."""

    cls: str
    links: tuple[int, ...]
    mbps: float
    until_s: int


@dataclass(frozen=True, slots=True)
class SimStep:
    """What one step carried: per kind and OD (Mbit/s), per link, and what it cost."""

    time_s: int
    carried: Mapping[str, F64]  # kind -> [n_od] Mbit/s delivered this step
    load_mbps: F64  # [n_links] offered to each link (carried traffic)
    utilisation: F64  # [n_links]
    held_mbit: float  # newly held back by shapers this step
    lost_mbit: float  # dropped by shapers (waited longer than max_delay_s)
    excess_mbit: float  # above capacity, summed over links


@dataclass
class SimTotals:
    """Running totals since the network was built (the replay's report)."""

    steps: int = 0
    overload_link_minutes_100: float = 0.0
    overload_link_minutes_90: float = 0.0
    excess_mbit: float = 0.0
    excess_reserved_mbit: float = 0.0
    delayed_mbit: float = 0.0
    lost_mbit: float = 0.0
    offered_mbit: float = 0.0
    carried_mbit: float = 0.0
    max_utilisation: float = 0.0
    overloaded_links: set[int] = field(default_factory=set)

    def as_dict(self, queued_mbit: float) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "overload_link_minutes_100": round(self.overload_link_minutes_100, 3),
            "overload_link_minutes_90": round(self.overload_link_minutes_90, 3),
            "excess_mbit": round(self.excess_mbit, 3),
            "excess_reserved_mbit": round(self.excess_reserved_mbit, 3),
            "delayed_mbit": round(self.delayed_mbit, 3),
            "lost_mbit": round(self.lost_mbit, 3),
            "queued_mbit_at_end": round(queued_mbit, 3),
            "offered_mbit": round(self.offered_mbit, 3),
            "max_utilisation": round(self.max_utilisation, 4),
            "links_overloaded": len(self.overloaded_links),
        }


class SimNetwork:
    """The network a replay's traffic crosses; its state is what the actuator changes."""

    def __init__(
        self,
        topology: Topology,
        od_pairs: Sequence[tuple[str, str]],
        kinds: Sequence[str],
        step_s: int,
        *,
        class_of: Mapping[str, str] | None = None,
        max_delay_s: int = 4 * 3600,
        routing: RoutingState | None = None,
    ) -> None:
        self.topology = topology
        self.od_pairs = tuple(od_pairs)
        self.kinds = tuple(kinds)
        self.step_s = int(step_s)
        self.class_of = {k: (class_of or {}).get(k, k) for k in self.kinds}
        self.capacity = topology.capacities / 1e6
        self.routing = routing or RoutingState(topology, self.od_pairs)
        self.max_age = max(1, int(max_delay_s) // self.step_s)
        n_od = len(self.od_pairs)
        # backlog[kind][a, od]: Mbit held for a + 1 steps so far (row 0 = held last step)
        self.backlog = {k: np.zeros((self.max_age, n_od)) for k in self.kinds}
        self.shaping: list[ShapeRule] = []
        self.reservations: list[Reserve] = []
        self.totals = SimTotals()

    # -- state the actuator changes --------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        return {
            "routing": self.routing.snapshot(),
            "shaping": list(self.shaping),
            "reservations": list(self.reservations),
        }

    def restore(self, snap: Mapping[str, Any]) -> None:
        self.routing.restore(snap["routing"])
        self.shaping = list(snap["shaping"])
        self.reservations = list(snap["reservations"])

    def checkpoint(self) -> SimNetwork:
        """A deep copy (for a replay that stops and resumes)."""
        return copy.deepcopy(self)

    @property
    def queued_mbit(self) -> float:
        return float(sum(b.sum() for b in self.backlog.values()))

    # -- one step --------------------------------------------------------------------------

    def step(self, now_s: int, offered: Mapping[str, F64]) -> SimStep:
        """Carry ``offered[kind][od]`` (Mbit/s over the step) for the step starting at
        ``now_s``; kinds not given offer nothing."""
        dt = float(self.step_s)
        self.shaping = [r for r in self.shaping if r.until_s > now_s]
        self.reservations = [r for r in self.reservations if r.until_s > now_s]
        n_od = len(self.od_pairs)
        zero = np.zeros(n_od)
        new = {k: np.asarray(offered.get(k, zero), dtype=np.float64) * dt for k in self.kinds}
        queued = {k: self.backlog[k].sum(axis=0) for k in self.kinds}
        rate = {k: (queued[k] + new[k]) / dt for k in self.kinds}  # Mbit/s wanting to go
        hold = self._hold_fractions(rate)
        carried: dict[str, F64] = {}
        held_new = lost = 0.0
        for k in self.kinds:
            held = (queued[k] + new[k]) * hold[k]
            remaining, first_held, dropped = self._fifo(self.backlog[k], new[k], held)
            self.backlog[k] = remaining
            held_new += float(first_held)
            lost += float(dropped)
            carried[k] = (queued[k] + new[k] - held) / dt
        load = self._load(carried)
        util = np.divide(load, self.capacity, out=np.zeros_like(load), where=self.capacity > 0)
        over = load - self.capacity
        excess = float(np.clip(over, 0, None).sum() * dt)
        t = self.totals
        t.steps += 1
        minutes = dt / 60.0
        t.overload_link_minutes_100 += float((util > 1.0).sum()) * minutes
        t.overload_link_minutes_90 += float((util >= 0.9).sum()) * minutes
        t.overloaded_links.update(int(e) for e in np.flatnonzero(util > 1.0))
        t.excess_mbit += excess
        t.excess_reserved_mbit += self._reserved_excess(carried) * dt
        t.delayed_mbit += held_new
        t.lost_mbit += lost
        t.offered_mbit += float(sum(v.sum() for v in new.values()))
        t.carried_mbit += float(sum(v.sum() for v in carried.values())) * dt
        t.max_utilisation = max(t.max_utilisation, float(util.max(initial=0.0)))
        return SimStep(now_s, carried, load, util, held_new, lost, excess)

    def _load(self, per_kind: Mapping[str, F64]) -> F64:
        by_class: dict[str, F64] = {}
        for k, v in per_kind.items():
            c = self.class_of[k]
            by_class[c] = by_class[c] + v if c in by_class else v.copy()
        return self.routing.loads(by_class)

    def _hold_fractions(self, rate: Mapping[str, F64]) -> dict[str, F64]:
        """Share of each (kind, OD) demand the active shapers hold back this step."""
        n_od = len(self.od_pairs)
        hold = {k: np.zeros(n_od) for k in self.kinds}
        for rule in self.shaping:
            members = [k for k in self.kinds if self.class_of[k] == rule.cls]
            if not members:
                continue
            row = np.asarray(self.routing.matrix(rule.cls)[rule.link].todense()).ravel()
            load = float(sum(row @ rate[k] for k in members))
            if load <= rule.limit_mbps or load <= 0:
                continue
            cut = 1.0 - rule.limit_mbps / load
            for k in members:
                np.maximum(hold[k], row * cut, out=hold[k])
        return hold

    def _fifo(self, queue: F64, new: F64, held: F64) -> tuple[F64, float, float]:
        """Serve oldest first: what stays held is the newest ``held`` Mbit per OD. Returns
        the new queue (aged one step), what of ``new`` was held, what aged out (lost)."""
        # slots newest -> oldest: new, queue[0], ..., queue[A-1]
        slots = np.vstack([new[None, :], queue])
        before = np.cumsum(slots, axis=0) - slots  # newer traffic ahead of each slot
        stay = np.clip(held[None, :] - before, 0.0, None)
        stay = np.minimum(stay, slots)
        aged = stay[:-1]  # new -> age row 0, queue[a] -> row a + 1
        dropped = float(stay[-1].sum())  # waited max_age steps already: the shaper drops it
        return aged, float(stay[0].sum()), dropped

    def _reserved_excess(self, carried: Mapping[str, F64]) -> float:
        if not self.reservations:
            return 0.0
        reserved = np.zeros(len(self.capacity))
        cls_load: dict[str, F64] = {}
        for r in self.reservations:
            if r.cls not in cls_load:
                members = {k: v for k, v in carried.items() if self.class_of[k] == r.cls}
                cls_load[r.cls] = self._load(members) if members else np.zeros_like(reserved)
            idx = list(r.links)
            reserved[idx] += r.mbps
        total_res = np.zeros_like(reserved)
        for load in cls_load.values():
            total_res += load
        served_first = np.minimum(reserved, total_res)
        return float(np.clip(served_first - self.capacity, 0, None).sum())
