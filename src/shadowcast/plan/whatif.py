"""What-if: re-plan with links or a node removed and report what overloads.

A failed link name ``A->B`` (or ``A-B``) takes both directions down, as a cable cut does;
``A->B#key`` names one parallel link only. A failed node takes all its links down and its
own demand is lost (reported). Candidate paths are recomputed on the surviving graph.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import networkx as nx
import numpy as np

from shadowcast.errors import PlanError, TopologyError
from shadowcast.plan.base import Plan
from shadowcast.plan.config import PlanConfig
from shadowcast.plan.optimise import utilisation
from shadowcast.plan.paths import candidate_paths
from shadowcast.plan.planner import (
    ClassForecast,
    class_quantile,
    make_plan,
    quantile_demand,
    split_matrix,
)
from shadowcast.records import Forecast, Topology

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WhatIf:
    """Outcome of one failure scenario; utilisations are at the planned quantiles."""

    failed_links: tuple[str, ...]
    failed_nodes: tuple[str, ...]
    lost_mbps: float
    disconnected: tuple[str, ...]
    mlu_before: float
    mlu_after: float
    overloads: tuple[tuple[str, float], ...]  # (link, utilisation) >= target, worst first
    plan: Plan | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "failed_links": list(self.failed_links),
            "failed_nodes": list(self.failed_nodes),
            "lost_mbps": self.lost_mbps,
            "disconnected": list(self.disconnected),
            "mlu_before": self.mlu_before,
            "mlu_after": self.mlu_after,
            "overloads": [{"link": n, "utilisation": u} for n, u in self.overloads],
            "changes": len(self.plan.changes) if self.plan else 0,
            "shaping": [s.reason for s in self.plan.shaping] if self.plan else [],
            "notes": list(self.notes),
        }


def resolve_links(topology: Topology, names: Sequence[str]) -> list[int]:
    """Link indices for names like ``A->B``, ``A-B`` (both directions) or ``A->B#k``."""
    out: list[int] = []
    full = topology.link_names()
    for name in names:
        if name in full and "#" in name:
            out.append(full.index(name))
            continue
        sep = "->" if "->" in name else "-"
        a, _, b = name.partition(sep)
        hits = [
            e for e, lk in enumerate(topology.links) if {lk.src, lk.dst} == {a.strip(), b.strip()}
        ]
        if not hits:
            raise TopologyError(f"--fail {name!r}: no such link in {topology.name!r}")
        out += hits
    return sorted(set(out))


def what_if(
    topology: Topology,
    forecasts: Sequence[ClassForecast],
    od_pairs: Sequence[tuple[str, str]],
    *,
    fail_links: Sequence[str] = (),
    fail_nodes: Sequence[str] = (),
    config: PlanConfig | None = None,
    step_s: int = 300,
) -> WhatIf:
    """Plan with and without the failed elements; report overloads after re-planning."""
    # What-if asks what the network can do at best: no change cap, no hysteresis.
    cfg = (config or PlanConfig()).model_copy(
        update={"max_changes": 10**9, "hysteresis": 0.0, "act_above": 0.0, "move_above": 0.0}
    )
    for n in fail_nodes:
        if n not in topology.nodes:
            raise TopologyError(f"--fail-node {n!r}: no such node in {topology.name!r}")
    dead = set(resolve_links(topology, fail_links))
    dead |= {e for e, lk in enumerate(topology.links) if {lk.src, lk.dst} & set(fail_nodes)}
    keep = [e for e in range(len(topology.links)) if e not in dead]
    reduced = Topology(
        topology.name + "-whatif",
        tuple(n for n in topology.nodes if n not in fail_nodes),
        tuple(topology.links[e] for e in keep),
        {k: v for k, v in topology.coords.items() if k not in fail_nodes},
    )
    before = make_plan(
        forecasts, candidate_paths(topology, od_pairs, cfg.k_paths), topology, cfg, step_s=step_s
    )
    names = [f.cls for f in forecasts]
    specs = [class_quantile(f, cfg) for f in forecasts]
    peak = np.stack(
        [quantile_demand(f.forecast, s).max(axis=1) for f, s in zip(forecasts, specs, strict=True)]
    )
    survivors, lost, disconnected = [], 0.0, []
    g: nx.DiGraph = nx.DiGraph()
    g.add_nodes_from(reduced.nodes)
    g.add_edges_from((lk.src, lk.dst) for lk in reduced.links)
    for k, (s, d) in enumerate(od_pairs):
        if s in fail_nodes or d in fail_nodes or not nx.has_path(g, s, d):
            lost += float(peak[:, k].sum())
            if peak[:, k].sum() > 0:
                disconnected.append(f"{s}->{d}")
        else:
            survivors.append(k)
    if not survivors:
        raise PlanError("no OD pair survives the failure")
    sub = [replace(f, forecast=_rows(f.forecast, survivors)) for f in forecasts]
    ods = [od_pairs[k] for k in survivors]
    paths = candidate_paths(
        reduced, ods, cfg.k_paths, disjoint=cfg.disjoint, weight=cfg.path_weight
    )
    notes: list[str] = []
    try:
        plan: Plan | None = make_plan(sub, paths, reduced, cfg, step_s=step_s)
    except PlanError as exc:
        plan = None
        notes.append(f"re-planning failed: {exc}")
    cap = reduced.capacities / 1e6
    if plan is not None:
        sub_peak = peak[:, survivors]
        x = split_matrix(plan, paths, names)
        util = utilisation(paths, cap, sub_peak[None], x)[0]
    else:
        util = np.zeros(len(reduced.links))
    link_names = reduced.link_names()
    order = np.argsort(-util)
    overloads = tuple(
        (link_names[e], float(util[e])) for e in order if util[e] >= cfg.target_utilisation
    )
    return WhatIf(
        failed_links=tuple(topology.link_names()[e] for e in sorted(dead)),
        failed_nodes=tuple(fail_nodes),
        lost_mbps=lost,
        disconnected=tuple(disconnected),
        mlu_before=before.mlu_planned,
        mlu_after=float(util.max()) if util.size else 0.0,
        overloads=overloads,
        plan=plan,
        notes=tuple(notes),
    )


def _rows(fc: Forecast, idx: Sequence[int]) -> Forecast:
    i = np.asarray(idx, dtype=np.int64)
    return Forecast(
        mean=fc.mean[i],
        lower={k: v[i] for k, v in fc.lower.items()},
        upper={k: v[i] for k, v in fc.upper.items()},
        model=fc.model,
    )
