"""Resolve a :class:`DatasetsConfig` into a topology and a demand series."""

from __future__ import annotations

from collections.abc import Mapping

from shadowcast.datasets.config import DatasetsConfig
from shadowcast.datasets.demands import load_demands
from shadowcast.datasets.synthetic import synthetic_dataset
from shadowcast.datasets.topology import load_topology
from shadowcast.errors import ConfigError
from shadowcast.records import F32, DemandSeries, Topology


def load_dataset(
    cfg: DatasetsConfig,
) -> tuple[Topology, DemandSeries, Mapping[str, F32] | None]:
    """Files when ``topology`` and ``demands`` are set, else the synthetic data set.

    Returns ``(topology, demands, by_app)``; ``by_app`` is None for real data.
    """
    if (cfg.topology is None) != (cfg.demands is None):
        raise ConfigError("datasets.topology and datasets.demands go together (or neither)")
    if cfg.topology is not None and cfg.demands is not None:
        topo = load_topology(
            cfg.topology,
            capacities_from=cfg.capacities_from,
            default_capacity_bps=cfg.default_capacity_bps,
        )
        return topo, load_demands(cfg.demands, topology=topo, fill_gaps=cfg.fill_gaps), None
    syn = cfg.synthetic
    base = (
        load_topology(syn.topology, default_capacity_bps=cfg.default_capacity_bps)
        if syn.topology is not None
        else None
    )
    ds = synthetic_dataset(
        weeks=syn.weeks,
        step_s=syn.step_s,
        seed=syn.seed,
        topology=base,
        scale=syn.scale,
        growth_per_week=syn.growth_per_week,
        noise=syn.noise,
        peak_utilisation=syn.peak_utilisation,
        hot_links=syn.hot_links,
    )
    return ds.topology, ds.demands, ds.by_app
