"""Datasets: topologies, demand series (real and synthetic).

* :func:`load_topology` — SNDlib XML, Topology Zoo GraphML, networkx node-link JSON.
* :func:`load_demands` — SNDlib dynamic matrices (folder / ``.tar.gz`` / file), long CSV.
* :func:`synthetic_dataset` — a seeded synthetic week on a vendored Topology Zoo graph.
* :func:`step_totals` — per-step sums read straight from SNDlib files (for checks).
"""

from __future__ import annotations

from shadowcast.datasets._common import DEFAULT_CAPACITY_BPS
from shadowcast.datasets.csvdemand import write_csv
from shadowcast.datasets.demands import load_demands, totals
from shadowcast.datasets.sndlib import step_totals
from shadowcast.datasets.synthetic import SyntheticDataset, synthetic_dataset
from shadowcast.datasets.topology import load_topology

__all__ = [
    "DEFAULT_CAPACITY_BPS",
    "SyntheticDataset",
    "load_demands",
    "load_topology",
    "step_totals",
    "synthetic_dataset",
    "totals",
    "write_csv",
]
