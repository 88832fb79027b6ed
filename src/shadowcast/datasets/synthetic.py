"""A SYNTHETIC demand data set, for when no real data is given (``make demo``).

Nothing here is measured traffic. On a real topology (by default the vendored Topology Zoo
``Geant2001`` graph, CC BY 4.0, see ``data/NOTICE``) it generates OD demand in Mbit/s:

* **gravity model**: node mass = capacity attached to the node x a seeded log-normal
  factor; demand(s, d) is proportional to mass(s) x mass(d);
* **application mix** over :data:`APPS` (names from ``records.CATEGORIES``): each OD pair draws
  its own shares around :data:`SHARES`, and each application has its own daily profile
  (:data:`PROFILES`, local time from the source node's longitude) and weekend factor —
  video peaks in the evening, bulk at night, web and voip in business hours, gaming late;
* **weekly cycle** (weekend factors), **growth** (compound, ``growth_per_week``) and
  **noise**: a slow AR(1) per OD pair (shared by its applications) times white noise per
  application;
* **calibration**: the level is set so that, with shortest-path (hop count, ECMP) routing, the
  ``hot_links``-th busiest link peaks at ``peak_utilisation`` of its capacity over the series
  (then x ``scale``): a few links run hot (the busiest above capacity at the weekly peak, near
  the end of the series as traffic grows) and raise capacity alerts; most stay well below.

Seeded and deterministic: the same arguments give bit-identical arrays.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter

from shadowcast.datasets.topology import load_topology
from shadowcast.records import CATEGORIES, F32, F64, DemandSeries, Topology

APPS: tuple[str, ...] = ("video", "bulk", "interactive", "voip", "web")
assert set(APPS) <= set(CATEGORIES)

#: Mean share of each application in the traffic of an OD pair.
SHARES: Mapping[str, float] = {
    "video": 0.45,
    "web": 0.22,
    "bulk": 0.17,
    "voip": 0.08,
    "interactive": 0.08,
}

# Relative rate by local hour 0..23 (each profile is rescaled to mean 1).
PROFILES: Mapping[str, tuple[float, ...]] = {
    # evening peak 20-22h, low in the small hours
    "video": (
        0.55, 0.35, 0.22, 0.16, 0.14, 0.16, 0.25, 0.40, 0.55, 0.62, 0.68, 0.75,
        0.85, 0.85, 0.85, 0.90, 1.00, 1.20, 1.50, 1.85, 2.15, 2.25, 1.90, 1.10,
    ),
    # backups and replication at night, little during the day
    "bulk": (
        1.90, 2.20, 2.40, 2.40, 2.20, 1.80, 1.20, 0.70, 0.50, 0.45, 0.45, 0.45,
        0.50, 0.50, 0.50, 0.50, 0.55, 0.60, 0.65, 0.70, 0.80, 1.00, 1.30, 1.60,
    ),
    # gaming: afternoon rise, late-evening peak
    "interactive": (
        1.10, 0.70, 0.40, 0.25, 0.18, 0.15, 0.15, 0.20, 0.30, 0.40, 0.50, 0.60,
        0.70, 0.75, 0.85, 1.00, 1.20, 1.45, 1.70, 1.95, 2.20, 2.30, 2.10, 1.65,
    ),
    # conferencing: business hours with a lunch dip
    "voip": (
        0.10, 0.08, 0.07, 0.07, 0.08, 0.12, 0.30, 0.90, 1.90, 2.50, 2.60, 2.30,
        1.60, 2.00, 2.40, 2.30, 1.90, 1.20, 0.60, 0.40, 0.30, 0.25, 0.18, 0.12,
    ),
    # web: business hours plus an evening shoulder
    "web": (
        0.40, 0.28, 0.20, 0.17, 0.17, 0.22, 0.40, 0.75, 1.15, 1.40, 1.50, 1.50,
        1.45, 1.50, 1.50, 1.45, 1.35, 1.25, 1.20, 1.25, 1.25, 1.10, 0.85, 0.60,
    ),
}  # fmt: skip

#: Weekend (Saturday, Sunday) level relative to a weekday.
WEEKEND: Mapping[str, float] = {
    "video": 1.15,
    "bulk": 0.85,
    "interactive": 1.30,
    "voip": 0.30,
    "web": 0.65,
}

DEFAULT_START = np.datetime64("2024-01-01T00:00:00", "s")  # a Monday
_WEEK_S = 7 * 86400


@dataclass(frozen=True, slots=True)
class SyntheticDataset:
    """Synthetic topology + demands; ``by_app[name]`` has the shape of ``demands.values``
    and the applications sum to the total."""

    topology: Topology
    demands: DemandSeries
    by_app: Mapping[str, F32]


def default_topology() -> Topology:
    """The vendored Topology Zoo Geant2001 graph (27 nodes, 76 directed links, with speeds)."""
    ref = resources.files("shadowcast.datasets") / "data" / "Geant2001.graphml"
    with resources.as_file(ref) as path:
        return load_topology(Path(path))


def _profile(app: str, local_s: F64) -> F64:
    """Daily x weekly factor at local times ``local_s`` (seconds since a Monday 00:00)."""
    prof = np.asarray(PROFILES[app], dtype=np.float64)
    prof = prof / prof.mean()
    hour = (local_s / 3600.0) % 24.0
    # Periodic linear interpolation between the hourly values (hour 24 = hour 0).
    daily = np.interp(hour, np.arange(25, dtype=np.float64), np.append(prof, prof[0]))
    weekday = (local_s // 86400) % 7
    weekly = np.where(weekday >= 5, WEEKEND[app], 1.0)
    out: F64 = daily * weekly
    return out


def _masses(topology: Topology, rng: np.random.Generator) -> F64:
    index = topology.node_index()
    attached = np.zeros(len(topology.nodes))
    for lk in topology.links:
        attached[index[lk.src]] += lk.capacity
    jitter = rng.lognormal(0.0, 0.5, size=len(topology.nodes))
    m: F64 = attached / attached.max() * jitter
    return m


def synthetic_dataset(
    weeks: float = 1,
    step_s: int = 300,
    seed: int = 0,
    topology: Topology | None = None,
    scale: float = 1.0,
    start: np.datetime64 | str = DEFAULT_START,
    *,
    growth_per_week: float = 0.04,
    noise: float = 0.06,
    peak_utilisation: float = 0.95,
    hot_links: int = 3,
) -> SyntheticDataset:
    """Generate a synthetic data set (see the module docstring). Sizes: ``weeks`` x 7 days at
    ``step_s``; all ordered pairs of distinct nodes; values float32 Mbit/s."""
    from shadowcast.network.routing import link_loads, routing_matrix

    if step_s <= 0 or weeks <= 0:
        raise ValueError("weeks and step_s must be > 0")
    topo = topology if topology is not None else default_topology()
    rng = np.random.default_rng(seed)
    nodes = sorted(topo.nodes)
    od = [(s, d) for s in nodes for d in nodes if s != d]
    n_od = len(od)
    steps = int(round(weeks * _WEEK_S / step_s))
    t0 = np.asarray(start, dtype="datetime64[s]")[()]
    times: npt.NDArray[np.datetime64] = np.asarray(
        t0 + np.arange(steps, dtype=np.int64) * np.timedelta64(step_s, "s"), dtype="datetime64[s]"
    )

    index = {n: i for i, n in enumerate(nodes)}
    mass = _masses(topo, rng)[[topo.node_index()[n] for n in nodes]]
    src = np.array([index[s] for s, _ in od])
    dst = np.array([index[d] for _, d in od])
    gravity = mass[src] * mass[dst]
    gravity /= gravity.sum()

    share = np.array([SHARES[a] for a in APPS])[None, :] * rng.lognormal(0, 0.35, (n_od, len(APPS)))
    share /= share.sum(axis=1, keepdims=True)

    # Local time of the source node (solar offset from its longitude; UTC where unknown).
    offset_s = np.array([topo.coords.get(s, (0.0, 0.0))[0] / 15.0 * 3600.0 for s, _ in od])
    monday = (t0 - np.datetime64("1970-01-05T00:00:00", "s")).astype(np.int64) % _WEEK_S
    elapsed = np.arange(steps, dtype=np.float64) * step_s
    local_s = (monday + elapsed)[:, None] + offset_s[None, :]
    growth = np.power(1.0 + growth_per_week, elapsed / _WEEK_S)[:, None]

    # Slow AR(1) noise in log space per OD (about an hour of memory), white noise per app.
    phi = float(np.exp(-step_s / 3600.0))
    eps = rng.normal(0.0, noise * np.sqrt(1 - phi**2), (steps, n_od))
    slow = np.exp(lfilter([1.0], [1.0, -phi], eps, axis=0))
    base = gravity[None, :] * growth * slow

    raw = {}
    for k, app in enumerate(APPS):
        white = rng.lognormal(0.0, noise, (steps, n_od))
        raw[app] = base * share[None, :, k] * _profile(app, local_s) * white
    total = np.sum([raw[a] for a in APPS], axis=0)

    routing = routing_matrix(topo, od)
    util = link_loads(routing, total) / (topo.capacities[None, :] / 1e6)
    peaks = np.sort(util.max(axis=0))[::-1]
    level = peak_utilisation / float(peaks[min(hot_links, len(peaks)) - 1]) * scale

    by_app = {a: (raw[a] * level).astype(np.float32) for a in APPS}
    values: F32 = np.zeros((steps, n_od), dtype=np.float32)
    for a in APPS:
        values += by_app[a]
    demands = DemandSeries(
        times=times,
        od_pairs=tuple(od),
        values=values,
        step=int(step_s),
        nodes=topo.nodes,
        source=f"synthetic(seed={seed}, weeks={weeks}, step_s={step_s}, topology={topo.name})",
    )
    return SyntheticDataset(topology=topo, demands=demands, by_app=by_app)
