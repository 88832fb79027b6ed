"""The typed ``Plan`` and the checker every plan passes before an actuator sees it.

A plan holds, per traffic class and OD pair, the split over candidate paths (each with
the planned-quantile demand it was sized for), reservations for latency-sensitive
classes, shaping limits for low-sensitivity classes, the changes against the split in
force (each with a human reason) and the predicted utilisation it leads to.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from pydantic import TypeAdapter, ValidationError

from shadowcast.errors import PlanError
from shadowcast.parsing import load_json, one_line, read_input
from shadowcast.records import Topology

SPLIT_TOL = 1e-6
CAPACITY_TOL = 1e-6


@dataclass(frozen=True, slots=True)
class PathSplit:
    """Share ``fraction`` of class ``cls`` traffic ``src->dst`` on the path ``links``."""

    cls: str
    src: str
    dst: str
    links: tuple[int, ...]
    nodes: tuple[str, ...]
    fraction: float
    demand_mbps: float  # the planned-quantile demand of (cls, src, dst)
    latency_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Change:
    """A split change against the state in force, with the reason an operator reads."""

    cls: str
    src: str
    dst: str
    nodes: tuple[str, ...]
    before: float
    after: float
    reason: str


@dataclass(frozen=True, slots=True)
class Reservation:
    """Bandwidth held for class ``cls`` on every link of ``nodes`` (a path)."""

    cls: str
    src: str
    dst: str
    nodes: tuple[str, ...]
    links: tuple[int, ...]
    mbps: float
    quantile: str
    reason: str


@dataclass(frozen=True, slots=True)
class Shaping:
    """Limit class ``cls`` on ``link`` to ``limit_mbps`` for ``duration_s`` seconds."""

    cls: str
    link: str
    limit_mbps: float
    duration_s: int
    reason: str


@dataclass(frozen=True, slots=True)
class LinkOutlook:
    """Predicted utilisation of one link under the plan (and under the current state)."""

    link: str
    planned: float
    current: float
    p_overload: float


@dataclass(frozen=True, slots=True)
class Plan:
    """One planning cycle's output; ``splits`` is the complete state, ``changes`` the diff."""

    plan_id: str
    topology: str
    issued: str  # ISO-8601 UTC
    horizon_s: int
    method: str
    splits: tuple[PathSplit, ...]
    changes: tuple[Change, ...] = ()
    reservations: tuple[Reservation, ...] = ()
    shaping: tuple[Shaping, ...] = ()
    outlook: tuple[LinkOutlook, ...] = ()
    mlu_planned: float = 0.0
    mlu_current: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, sort_keys=False)

    def to_yaml(self) -> str:
        return str(yaml.safe_dump(json.loads(self.to_json()), sort_keys=False))

    def explain(self) -> str:
        """A short plain-text explanation: outlook, then every change, reservation, limit."""
        lines = [
            f"plan {self.plan_id} for {self.topology} ({self.method}), horizon "
            f"{self.horizon_s // 60} min: max utilisation {self.mlu_current:.0%} -> "
            f"{self.mlu_planned:.0%}"
        ]
        lines += [f"  change: {r}" for r in dict.fromkeys(c.reason for c in self.changes)]
        lines += [f"  reserve: {r.reason}" for r in self.reservations]
        lines += [f"  shape: {s.reason}" for s in self.shaping]
        lines += [f"  note: {n}" for n in self.notes]
        if len(lines) == 1:
            lines.append("  no change: the state in force is within bounds")
        return "\n".join(lines)

    @classmethod
    def from_dict(cls, d: Any) -> Plan:
        """Rebuild a plan from ``to_dict``/JSON output; PlanError names the first bad field."""
        try:
            return _plan_adapter().validate_python(d)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = one_line(".".join(str(p) for p in err["loc"]), 120) or "plan"
            raise PlanError(f"not a plan: {loc}: {err['msg']}") from exc

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """A plan saved with ``to_json`` (``plan --save``); PlanError names the file."""
        doc = load_json(read_input(path, PlanError, "plan"), path, PlanError)
        try:
            return cls.from_dict(doc)
        except PlanError as exc:
            raise PlanError(f"{path}: {exc}") from exc


@functools.cache
def _plan_adapter() -> TypeAdapter[Plan]:
    return TypeAdapter(Plan)


def planned_link_load(plan: Plan, n_links: int) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Load (Mbit/s) per link when every split carries its planned-quantile demand."""
    load = np.zeros(n_links)
    for s in plan.splits:
        for e in s.links:
            if not 0 <= e < n_links:
                raise PlanError(f"split {s.cls} {s.src}->{s.dst} names link #{e}, not in topology")
            load[e] += s.fraction * s.demand_mbps
    return load


def check_plan(
    plan: Plan,
    topology: Topology,
    *,
    max_changes: int | None = None,
    allow_overload: bool = False,
) -> None:
    """Reject a plan that is malformed, over-subscribes a link, or changes too much.

    Checks: every fraction in [0, 1]; the splits of each (class, OD) sum to 1; no link
    loaded over its capacity at the planned quantile (unless ``allow_overload``, for
    what-if reports); reservations fit within capacity; the splits of at most
    ``max_changes`` (class, OD) pairs change.
    Raises PlanError naming the first violation.
    """
    sums: dict[tuple[str, str, str], float] = {}
    for s in plan.splits:
        if not (-SPLIT_TOL <= s.fraction <= 1 + SPLIT_TOL) or not np.isfinite(s.fraction):
            raise PlanError(f"split {s.cls} {s.src}->{s.dst}: fraction {s.fraction} not in [0,1]")
        if s.demand_mbps < 0 or not np.isfinite(s.demand_mbps):
            raise PlanError(f"split {s.cls} {s.src}->{s.dst}: bad demand {s.demand_mbps}")
        _check_path(s, topology)
        key = (s.cls, s.src, s.dst)
        sums[key] = sums.get(key, 0.0) + s.fraction
    for (c, a, b), total in sums.items():
        if abs(total - 1.0) > SPLIT_TOL:
            raise PlanError(f"splits of {c} {a}->{b} sum to {total:.6f}, not 1")
    caps = topology.capacities / 1e6
    load = planned_link_load(plan, len(topology.links))
    names = topology.link_names()
    if not allow_overload:
        over = np.flatnonzero(load > caps * (1 + CAPACITY_TOL) + 1e-9)
        if over.size:
            e = int(over[np.argmax(load[over] / np.maximum(caps[over], 1e-12))])
            raise PlanError(
                f"plan over-subscribes {names[e]}: {load[e]:.1f} Mbit/s planned on "
                f"{caps[e]:.1f} Mbit/s ({over.size} link(s) over capacity)"
            )
    reserved = np.zeros(len(topology.links))
    for r in plan.reservations:
        if not all(0 <= e < len(reserved) for e in r.links):
            raise PlanError(f"reservation {r.cls} {r.src}->{r.dst} names a link not in topology")
        reserved[list(r.links)] += r.mbps
    over_r = np.flatnonzero(reserved > caps * (1 + CAPACITY_TOL) + 1e-9)
    if over_r.size:
        e = int(over_r[0])
        raise PlanError(f"reservations on {names[e]} ({reserved[e]:.1f} Mbit/s) exceed capacity")
    n_changes = len({(c.cls, c.src, c.dst) for c in plan.changes})
    if max_changes is not None and n_changes > max_changes:
        raise PlanError(
            f"plan changes the splits of {n_changes} (class, OD) pairs; at most "
            f"{max_changes} allowed"
        )


def _check_path(s: PathSplit, topology: Topology) -> None:
    """The split's links must exist and chain from its source to its destination."""
    where = f"split {s.cls} {s.src}->{s.dst}"
    if not s.links:
        raise PlanError(f"{where}: empty path")
    at = s.src
    for e in s.links:
        if not 0 <= e < len(topology.links):
            raise PlanError(f"{where}: link #{e} is not in topology {topology.name!r}")
        lk = topology.links[e]
        if lk.src != at:
            raise PlanError(f"{where}: link {lk.src}->{lk.dst} does not continue from {at}")
        at = lk.dst
    if at != s.dst:
        raise PlanError(f"{where}: path ends at {at}, not {s.dst}")
