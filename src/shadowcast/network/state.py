"""The routing in force, per traffic class: IGP ECMP until a plan sets path splits.

Both sides of the loop keep one: the service (what it believes it installed, to map
forecasts onto links) and the simulated network (what traffic really follows). A plan's
``splits`` are the complete state of the classes it names (every OD pair of the class),
so applying it replaces those classes' routing whole; other classes keep theirs.

``matrix(cls)`` is the sparse ``[n_links, n_od]`` share of each OD pair's demand of the class
on each link (columns sum, over the links of a path, to the path's share).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import scipy.sparse as sp

from shadowcast.errors import PlanError
from shadowcast.network.routing import routing_matrix
from shadowcast.records import F64, Topology


@dataclass(frozen=True, slots=True)
class PathShare:
    """``fraction`` of class ``cls`` traffic of OD ``od`` (index) on the links ``links``."""

    cls: str
    od: int
    links: tuple[int, ...]
    fraction: float


class SplitLike(Protocol):
    """What a plan's path split carries (``plan.base.PathSplit``)."""

    @property
    def cls(self) -> str: ...
    @property
    def src(self) -> str: ...
    @property
    def dst(self) -> str: ...
    @property
    def links(self) -> tuple[int, ...]: ...
    @property
    def fraction(self) -> float: ...


class RoutingState:
    """ECMP for every class until ``install`` gives it path splits."""

    def __init__(
        self,
        topology: Topology,
        od_pairs: Sequence[tuple[str, str]],
        weight: str = "hops",
        base: sp.csr_matrix | None = None,
    ) -> None:
        self.n_links = len(topology.links)
        self.od_pairs = tuple(od_pairs)
        self.od_index = {od: k for k, od in enumerate(self.od_pairs)}
        self.base = (
            base if base is not None else routing_matrix(topology, self.od_pairs, weight).tocsr()
        )
        self._by_class: dict[str, sp.csr_matrix] = {}
        self.version = 0  # bumped on every change (callers cache derived matrices)

    def matrix(self, cls: str) -> sp.csr_matrix:
        """``[n_links, n_od]`` routing of class ``cls`` (ECMP if no plan set it)."""
        return self._by_class.get(cls, self.base)

    def planned_classes(self) -> list[str]:
        return sorted(self._by_class)

    def install(self, shares: Iterable[PathShare]) -> list[str]:
        """Replace the routing of every class named in ``shares`` (complete per class:
        an OD pair of such a class that has no share keeps its ECMP column). Returns the
        classes replaced. Raises PlanError for an unknown OD index or link."""
        rows: dict[str, list[int]] = {}
        cols: dict[str, list[int]] = {}
        vals: dict[str, list[float]] = {}
        covered: dict[str, set[int]] = {}
        for s in shares:
            if not 0 <= s.od < len(self.od_pairs):
                raise PlanError(f"path share for OD index {s.od}: no such OD pair")
            if any(not 0 <= e < self.n_links for e in s.links):
                raise PlanError(f"path share for {self.od_pairs[s.od]}: link outside topology")
            rows.setdefault(s.cls, []).extend(s.links)
            cols.setdefault(s.cls, []).extend([s.od] * len(s.links))
            vals.setdefault(s.cls, []).extend([s.fraction] * len(s.links))
            covered.setdefault(s.cls, set()).add(s.od)
        base_csc = self.base.tocsc()
        for cls in rows:
            m = sp.csr_matrix(
                (vals[cls], (rows[cls], cols[cls])), shape=(self.n_links, len(self.od_pairs))
            )
            missing = np.setdiff1d(np.arange(len(self.od_pairs)), sorted(covered[cls]))
            if missing.size:  # OD pairs the plan did not route keep IGP routing
                keep = sp.diags(np.isin(np.arange(len(self.od_pairs)), missing).astype(float))
                m = m + (base_csc @ keep).tocsr()
            self._by_class[cls] = m.tocsr()
        self.version += 1
        return sorted(rows)

    def reset(self, classes: Iterable[str] | None = None) -> None:
        """Back to ECMP (every class, or only ``classes``)."""
        if classes is None:
            self._by_class.clear()
        else:
            for c in classes:
                self._by_class.pop(c, None)
        self.version += 1

    def snapshot(self) -> dict[str, sp.csr_matrix]:
        return dict(self._by_class)

    def restore(self, snap: Mapping[str, sp.csr_matrix]) -> None:
        self._by_class = dict(snap)
        self.version += 1

    def loads(self, demand: Mapping[str, F64]) -> F64:
        """Per-link load ``[n_links]`` (or ``[T, n_links]``) of per-class OD demand."""
        total: F64 | None = None
        for cls, d in demand.items():
            arr = np.asarray(d, dtype=np.float64)
            part = np.asarray(self.matrix(cls) @ arr.T).T
            total = part if total is None else total + part
        if total is None:
            return np.zeros(self.n_links)
        return np.asarray(total, dtype=np.float64)


def shares_of_plan(
    splits: Iterable[SplitLike], od_index: Mapping[tuple[str, str], int]
) -> list[PathShare]:
    """A plan's path splits as path shares on OD indices; raises PlanError for an OD pair
    that is not in ``od_index``."""
    out: list[PathShare] = []
    for s in splits:
        k = od_index.get((s.src, s.dst))
        if k is None:
            raise PlanError(f"plan routes {s.src}->{s.dst}, which is not an OD pair here")
        out.append(PathShare(s.cls, k, tuple(int(e) for e in s.links), float(s.fraction)))
    return out
