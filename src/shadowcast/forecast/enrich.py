"""The inputs every path gives the forecasters besides the series themselves.

One place decides what a frame carries, so that ``shadowcast forecast``, ``eval
forecast``, the service's forecast cycle and ``eval te``'s predictive model see the same:

* static per-series meta (:func:`static_inputs`): geography
  (:mod:`shadowcast.forecast.geo`: sites, regions, coordinates, distance, local time
  offsets) and the bottleneck capacity of the series' routed path (``bottleneck_mbps``,
  with a topology);
* time-varying exogenous inputs from a store (:func:`store_inputs`): shadow-path
  measurements, bottleneck capacity and headroom from ``link_series``;
* the same capacity inputs for a demand file (:func:`demand_inputs`), where no link series
  were measured: the link loads are the demands routed over the topology.

Which exogenous inputs are read is ``forecast.exog`` (default: all of them).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from shadowcast.forecast.exog import (
    bottleneck_capacity,
    capacity_exog,
    routed_capacity_exog,
    shadow_exog,
)
from shadowcast.forecast.geo import geo_meta, od_ends
from shadowcast.records import F64, SeriesFrame, Topology
from shadowcast.store.base import Store

log = logging.getLogger(__name__)
CAPACITY = ("capacity_mbps", "headroom_mbps")


def static_inputs(
    keys: Sequence[str],
    *,
    topology: Topology | None = None,
    coords: Mapping[str, tuple[float, float]] | None = None,
    regions: Mapping[str, str] | None = None,
) -> dict[str, npt.NDArray[np.generic]]:
    """Per-series meta for ``keys``: geography from ``coords`` (else the topology's) and,
    with a topology, ``bottleneck_mbps``. {} when no key is an OD pair."""
    if not any(od_ends(k) for k in keys):
        return {}
    where = dict(topology.coords) if topology is not None else {}
    where.update(coords or {})
    meta = geo_meta(keys, where, regions)
    if topology is not None:
        ods = [od_ends(k) for k in keys]
        plain = ["->".join(e) if e else k for k, e in zip(keys, ods, strict=True)]
        meta["bottleneck_mbps"] = bottleneck_capacity(topology, plain)
    return meta


def _add(frame: SeriesFrame, meta: Mapping[str, Any], exog: Mapping[str, F64]) -> SeriesFrame:
    ex = {k: v for k, v in exog.items() if np.isfinite(v).any()}  # nothing measured: left out
    if ex:
        log.info("exogenous inputs", extra={"exog": sorted(ex)})
    return replace(frame, meta={**frame.meta, **meta}, exog={**frame.exog, **ex})


def demand_inputs(
    frame: SeriesFrame,
    *,
    topology: Topology | None = None,
    coords: Mapping[str, tuple[float, float]] | None = None,
    regions: Mapping[str, str] | None = None,
    exog: Sequence[str] = CAPACITY,
) -> SeriesFrame:
    """A demand file's frame with its static inputs and, with a topology, the capacity
    inputs of ``exog`` from the routed demands (:func:`routed_capacity_exog`)."""
    meta = static_inputs(frame.keys, topology=topology, coords=coords, regions=regions)
    ex: dict[str, F64] = {}
    wanted = [c for c in CAPACITY if c in exog]
    if topology is not None and wanted:
        cap = routed_capacity_exog(topology, frame.keys, frame.values)
        ex = {k: v for k, v in cap.items() if k in wanted}
    return _add(frame, meta, ex)


def store_inputs(
    store: Store,
    frame: SeriesFrame,
    *,
    topology: Topology | None = None,
    regions: Mapping[str, str] | None = None,
    exog: Sequence[str] = (),
) -> SeriesFrame:
    """A store's frame with its static inputs and the ``exog`` inputs the store has
    measurements for (shadow paths; capacity and headroom from ``link_series`` with a
    topology)."""
    meta = static_inputs(frame.keys, topology=topology, regions=regions)
    shadow = [c for c in exog if c not in CAPACITY]
    ex = shadow_exog(store, frame.keys, frame.times, frame.step, shadow) if shadow else {}
    if topology is not None and len(shadow) < len(exog):
        cap = capacity_exog(store, topology, frame.keys, frame.times, frame.step)
        ex.update({k: v for k, v in cap.items() if k in exog})
    return _add(frame, meta, ex)


def site_regions(sites_file: str | Path | None) -> dict[str, str]:
    """Site -> region from a sites file (``profile.sites_file``; {} without one)."""
    if not sites_file:
        return {}
    from shadowcast.profile.where import Locator  # the sites file's one reader

    spec = Locator.from_files(Path(sites_file), None).spec
    return {name: site.region for name, site in spec.sites.items()}
