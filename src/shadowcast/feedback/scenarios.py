"""Changes injected into the synthetic backbone, for ``shadowcast eval feedback``.

Each scenario takes the seeded synthetic series and changes it from an onset step on:

* ``level-shift``: one application (video) at one site: every OD pair from or to the site
  carries 60 % more of it from the onset;
* ``new-application``: an application kind that carried nothing (``other``) appears at the
  onset on every OD pair, at 15 % of the pair's traffic, and grows linearly to 60 % over
  the following day;
* ``pattern-change``: a holiday: the onset day (a weekday, from midnight) follows the
  weekend profile (each application's weekend factor,
  :data:`~shadowcast.datasets.synthetic.WEEKEND`);
* ``link-failure``: both directions of the busiest link whose loss disconnects no pair fail
  at the onset; the IGP routes around them (ECMP on what is left): the demand does not
  move, the link loads do (``routing_after``);
* ``sampling-change``: one site's exporter halves its sampling rate without the collector
  knowing: everything measured entering the backbone there reads half of what it carried.

Values are ``by_kind[kind][t, od]`` Mbit/s over the OD pairs in the service's order
(:func:`~shadowcast.rollup.rollup.od_universe`). ``affected`` says which series the change
touches (the stacked class x OD series, class-major over ``classes``, or the links), so
that the evaluation scores those.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from shadowcast.datasets.synthetic import WEEKEND, synthetic_dataset
from shadowcast.errors import ConfigError, TopologyError
from shadowcast.network.routing import routing_matrix
from shadowcast.records import F32, F64, Topology
from shadowcast.rollup.rollup import od_universe

SCENARIOS: tuple[str, ...] = (
    "level-shift",
    "new-application",
    "pattern-change",
    "link-failure",
    "sampling-change",
)
NEW_KIND = "other"
SHIFT_KIND = "video"
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Scenario:
    """The injected series, its onset (step index) and what it touches.

    ``by_kind`` is what the collector measures (a sampling change already applied);
    ``routing_after`` (link failure) is the IGP routing from the onset."""

    name: str
    topology: Topology
    od_pairs: tuple[tuple[str, str], ...]
    times_s: npt.NDArray[np.int64]
    step_s: int
    by_kind: Mapping[str, F32]
    classes: tuple[str, ...]
    class_of: Mapping[str, str]
    onset: int
    kind: str  # "od" or "link": which series the change shows in
    affected: Mask
    description: str
    routing_after: sp.csr_matrix | None = None

    @property
    def steps(self) -> int:
        return int(self.times_s.size)

    def stacked(self, t: int) -> F64:
        """The stacked class x OD values measured at step ``t`` (class-major)."""
        out = np.zeros((len(self.classes), len(self.od_pairs)))
        index = {c: i for i, c in enumerate(self.classes)}
        for k, v in self.by_kind.items():
            out[index[self.class_of[k]]] += v[t]
        return out.reshape(-1)


def _stacked_mask(classes: Sequence[str], cls: Sequence[str], od_mask: Mask) -> Mask:
    return np.concatenate([od_mask if c in cls else np.zeros_like(od_mask) for c in classes])


def build_scenario(
    name: str,
    *,
    days: float = 4.0,
    onset_day: float = 3.0,
    onset_hour: float = 10.0,
    seed: int = 0,
    taxonomy: Mapping[str, str],
) -> Scenario:
    """The synthetic backbone over ``days`` with ``name`` injected (module docstring); the
    onset is ``onset_day`` days plus ``onset_hour`` hours in (a holiday starts at the
    first midnight from ``onset_day`` days in). ``taxonomy`` maps each kind to its routing class."""
    if name not in SCENARIOS:
        raise ConfigError(f"--scenario: {name!r} is not one of {', '.join(SCENARIOS)}, all")
    syn = synthetic_dataset(weeks=days / 7.0, seed=seed)
    topo, dem = syn.topology, syn.demands
    step = int(dem.step)
    pairs = od_universe(topo)
    where = {od: k for k, od in enumerate(dem.od_pairs)}
    order = np.array([where[od] for od in pairs], dtype=np.int64)
    total = np.asarray(dem.values[:, order], dtype=np.float32)
    by_kind: dict[str, F32] = {k: np.asarray(v[:, order]) for k, v in syn.by_app.items()}
    by_kind[NEW_KIND] = np.zeros_like(total)
    cls = {k: str(taxonomy.get(k, "low")) for k in by_kind}
    classes = tuple(sorted(set(cls.values())))
    T = total.shape[0]
    onset = int(round((onset_day * 86400 + onset_hour * 3600) / step))
    if name == "pattern-change":  # a holiday starts at midnight: the next one, if in range
        day = 86400 // step
        onset = -(-int(round(onset_day * day)) // day) * day
        onset = onset if onset < T else int(onset_day) * day
    if not 0 < onset < T:
        raise ConfigError(f"the onset (step {onset}) lies outside the {T} steps")
    site = _busiest_site(pairs, total)
    touches = np.array([a == site or b == site for a, b in pairs])
    routing_after = None
    kind = "od"
    if name == "level-shift":
        by_kind[SHIFT_KIND][onset:, touches] *= np.float32(1.6)
        affected = _stacked_mask(classes, [cls[SHIFT_KIND]], touches)
        text = f"{SHIFT_KIND} from or to {site} +60 %"
    elif name == "new-application":
        ramp = np.clip(np.arange(T - onset) / (86400 / step), 0.0, 1.0)
        share = (0.15 + 0.45 * ramp).astype(np.float32)
        by_kind[NEW_KIND][onset:] = total[onset:] * share[:, None]
        affected = _stacked_mask(classes, [cls[NEW_KIND]], np.ones(len(pairs), dtype=bool))
        text = f"a new application ({NEW_KIND}, class {cls[NEW_KIND]}): 15 % growing to 60 %"
    elif name == "pattern-change":
        end = min(T, onset + 86400 // step)
        for k, arr in by_kind.items():
            if k in WEEKEND:
                arr[onset:end] *= np.float32(WEEKEND[k])
        affected = np.ones(len(classes) * len(pairs), dtype=bool)
        text = "a holiday: a weekday on the weekend profile"
    elif name == "link-failure":
        failed = _busiest_pair(topo, pairs, total)
        kind = "link"
        before = routing_matrix(topo, pairs)
        routing_after = failed_routing(topo, pairs, failed)
        diff = np.abs(before - routing_after) @ total[onset].astype(np.float64)
        diff = np.asarray(diff).reshape(-1)
        affected = diff > 1e-6 * max(float(diff.max(initial=0.0)), 1e-12)
        text = "link failure: " + ", ".join(topo.link_names()[i] for i in failed)
    else:  # sampling-change
        src_site = np.array([a == site for a, _ in pairs])
        for arr in by_kind.values():
            arr[onset:, src_site] *= np.float32(0.5)
        affected = _stacked_mask(classes, classes, src_site)
        text = f"exporter at {site} samples half as often (unnoticed)"
    times = dem.times.astype("datetime64[s]").astype(np.int64)
    return Scenario(
        name, topo, pairs, times, step, by_kind, classes, cls, onset, kind,
        np.asarray(affected, dtype=bool), text, routing_after,
    )  # fmt: skip


def _busiest_site(pairs: Sequence[tuple[str, str]], values: F32) -> str:
    total = values.sum(axis=0, dtype=np.float64)
    by_node: dict[str, float] = {}
    for (a, b), v in zip(pairs, total, strict=True):
        by_node[a] = by_node.get(a, 0.0) + float(v)
        by_node[b] = by_node.get(b, 0.0) + float(v)
    ranked = sorted(by_node, key=lambda n: (-by_node[n], n))
    return ranked[min(2, len(ranked) - 1)]  # the third busiest: a site, not the hub


def _busiest_pair(topo: Topology, pairs: Sequence[tuple[str, str]], values: F32) -> tuple[int, ...]:
    """Both directions of the most loaded link whose failure leaves every pair a path."""
    R = routing_matrix(topo, pairs)
    load = np.asarray(R @ values.mean(axis=0, dtype=np.float64)).reshape(-1)
    for e in map(int, np.argsort(-load, kind="stable")):
        lk = topo.links[e]
        twins = tuple(i for i, o in enumerate(topo.links) if {o.src, o.dst} == {lk.src, lk.dst})
        try:
            failed_routing(topo, pairs, twins)
        except TopologyError:  # it would disconnect a pair: try the next one
            continue
        return twins
    raise ConfigError("no link can fail without disconnecting the topology")


def failed_routing(
    topo: Topology, pairs: Sequence[tuple[str, str]], failed: Sequence[int]
) -> sp.csr_matrix:
    """ECMP routing ``[n_links, n_od]`` with the links ``failed`` down (zero rows)."""
    down = set(failed)
    keep = [i for i in range(len(topo.links)) if i not in down]
    sub = Topology(topo.name, topo.nodes, tuple(topo.links[i] for i in keep), topo.coords)
    m = routing_matrix(sub, pairs).tocoo()
    rows = np.asarray(keep, dtype=np.int64)[m.row]
    return sp.csr_matrix((m.data, (rows, m.col)), shape=(len(topo.links), len(pairs)))
