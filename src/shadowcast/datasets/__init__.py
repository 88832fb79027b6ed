"""Datasets: topologies, demand series (real and synthetic).

* :func:`load_topology` — SNDlib XML, Topology Zoo GraphML, networkx node-link JSON.
* :func:`load_demands` — SNDlib dynamic matrices (folder / ``.tar.gz`` / file), long CSV;
  :func:`demand_coords` — the node coordinates an SNDlib demand set carries.
* :func:`synthetic_dataset` — a seeded synthetic week on a vendored Topology Zoo graph.
* :func:`step_totals` — per-step sums read straight from SNDlib files (for checks).

The names are imported on first use (pandas and scipy stay unloaded until a reader runs,
so ``shadowcast.datasets.config`` is cheap to import with the settings).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shadowcast.datasets.config import DEFAULT_CAPACITY_BPS
    from shadowcast.datasets.csvdemand import write_csv
    from shadowcast.datasets.demands import demand_coords, load_demands, totals
    from shadowcast.datasets.sndlib import step_totals
    from shadowcast.datasets.synthetic import SyntheticDataset, synthetic_dataset
    from shadowcast.datasets.topology import load_topology

_WHERE = {
    "DEFAULT_CAPACITY_BPS": "config",
    "SyntheticDataset": "synthetic",
    "demand_coords": "demands",
    "load_demands": "demands",
    "load_topology": "topology",
    "step_totals": "sndlib",
    "synthetic_dataset": "synthetic",
    "totals": "demands",
    "write_csv": "csvdemand",
}

__all__ = [
    "DEFAULT_CAPACITY_BPS",
    "SyntheticDataset",
    "demand_coords",
    "load_demands",
    "load_topology",
    "step_totals",
    "synthetic_dataset",
    "totals",
    "write_csv",
]


def __getattr__(name: str) -> Any:
    mod = _WHERE.get(name)
    if mod is None:
        raise AttributeError(f"module 'shadowcast.datasets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"shadowcast.datasets.{mod}"), name)
    globals()[name] = value
    return value
