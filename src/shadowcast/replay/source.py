"""Traffic sources for a replay: per step, the demand each traffic kind offers per OD pair.

* the seeded synthetic backbone (five application kinds, see docs/datasets.md);
* a real matrix series (SNDlib XML, a folder or tar.gz of them, or CSV ``time,src,dst,value``):
  totals only, one kind ``aggregate`` (the matrices say nothing of applications, so the
  replay does not invent any: that traffic is routed, never shaped).

The replay exports each step's traffic as flow records: one record per (OD pair, kind)
from the ingress router's own exporter address, with a plausible 5-tuple and the
application name of the kind, so that the collector and the profiler see what they would
see from a backbone's routers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from shadowcast.records import F32, DemandSeries, Topology

AGGREGATE = "aggregate"

# Each kind's exported application name (resolved by the shipped application map) and a
# plausible (protocol, destination port).
KIND_APPS: Mapping[str, tuple[str, int, int]] = {
    "video": ("NetFlix", 6, 443),
    "web": ("HTTP", 6, 80),
    "bulk": ("RSYNC", 6, 873),
    "voip": ("Zoom", 17, 8801),
    "interactive": ("SSH", 6, 22),
    AGGREGATE: (AGGREGATE, 6, 443),
}


@dataclass(frozen=True)
class TrafficSource:
    """``by_kind[kind][t, od]`` Mbit/s over ``demands``' times and OD pairs."""

    topology: Topology
    demands: DemandSeries  # the total per OD pair (what the matrices say)
    by_kind: Mapping[str, F32]
    name: str

    @property
    def kinds(self) -> tuple[str, ...]:
        return tuple(sorted(self.by_kind))

    @property
    def steps(self) -> int:
        return self.demands.steps

    @property
    def step_s(self) -> int:
        return self.demands.step

    def time_s(self, t: int) -> int:
        return int(self.demands.times[t].astype("datetime64[s]").astype(np.int64))

    def offered(self, t: int) -> dict[str, npt.NDArray[np.float64]]:
        return {k: np.asarray(v[t], dtype=np.float64) for k, v in self.by_kind.items()}

    def scaled(self, factor: float) -> TrafficSource:
        """The same traffic on a topology whose capacities are multiplied by ``factor``."""
        from shadowcast.records import Link

        links = tuple(
            Link(lk.src, lk.dst, lk.capacity * factor, lk.key) for lk in self.topology.links
        )
        topo = Topology(self.topology.name, self.topology.nodes, links, self.topology.coords)
        return TrafficSource(topo, self.demands, self.by_kind, self.name)


def load_source(
    topology: Path | None,
    demands: Path | None,
    capacities: Path | None,
    weeks: float,
    seed: int,
) -> TrafficSource:
    """A real topology and matrix series when given, else the seeded synthetic backbone."""
    from shadowcast import datasets
    from shadowcast.errors import ConfigError

    if (topology is None) != (demands is None):
        raise ConfigError("--topology and --demands go together (or neither: synthetic)")
    if topology is not None and demands is not None:
        topo = datasets.load_topology(topology, capacities_from=capacities)
        dem = datasets.load_demands(demands, topology=topo)
        return TrafficSource(topo, dem, {AGGREGATE: dem.values}, f"{topo.name} ({demands.name})")
    from shadowcast.datasets.synthetic import synthetic_dataset

    syn = synthetic_dataset(weeks=weeks, seed=seed)
    return TrafficSource(
        syn.topology, syn.demands, dict(syn.by_app), f"synthetic {syn.topology.name}"
    )


def capacity_scale(text: str, source: TrafficSource) -> float:
    """``--capacity-scale``: ``auto`` (:func:`auto_capacity_scale`) or a positive factor;
    anything else is a ConfigError naming the option."""
    scale = parse_capacity_scale(text)
    return float(auto_capacity_scale(source)) if scale is None else scale


def parse_capacity_scale(text: str) -> float | None:
    """``--capacity-scale`` text as a positive factor, or None for ``auto`` (which the
    caller resolves against its traffic); anything else is a ConfigError naming the
    option. ``replay``, ``eval alerts`` and ``eval te`` all parse it here."""
    from shadowcast.errors import ConfigError

    if text.strip().lower() == "auto":
        return None
    try:
        scale = float(text)
    except ValueError:
        raise ConfigError(f"--capacity-scale: {text!r} is not a number or auto") from None
    if not 0 < scale < float("inf"):
        raise ConfigError(f"--capacity-scale must be a positive finite factor, got {text}")
    return scale


def auto_capacity_scale(source: TrafficSource, k_paths: int = 4, max_steps: int = 400) -> float:
    """The factor ``eval te --capacity-scale auto`` uses: capacities scaled so that the
    optimal routing's 95th-percentile max utilisation over the replay is 0.9 (for matrices
    whose links dwarf their demand; evaluated on at most ``max_steps`` evenly spaced steps
    with traffic)."""
    from shadowcast.plan.optimise import solve_min_mlu
    from shadowcast.plan.paths import candidate_paths

    values = source.demands.values.astype(np.float64)
    active = np.flatnonzero(values.sum(axis=1) > 0)
    if active.size == 0:
        return 1.0
    pick = active[np.linspace(0, active.size - 1, min(max_steps, active.size)).astype(int)]
    paths = candidate_paths(source.topology, source.demands.od_pairs, k_paths)
    cap = source.topology.capacities / 1e6
    mlu = np.array([solve_min_mlu(paths, cap, values[t]).mlu for t in pick])
    top = float(np.percentile(mlu, 95))
    return top / 0.9 if top > 0 else 1.0
