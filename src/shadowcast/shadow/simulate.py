"""Simulated shadow probing: the lab's metrics derived from link loads, for replays.

For a path (link indices into ``topology.links``) and loads ``[T, n_links]`` in Mbit/s:

* ``abw`` = min over the path of (capacity - load), floored at 0;
* one-way delay = propagation (great-circle distance / 2e8 m/s, from ``coords``; 0.1 ms per
  hop when unknown) + per-link queueing, M/M/1 waiting time ``rho / (1 - rho) * L / C`` for
  packets of ``L`` = 1000 bytes, capped by a buffer of ``buffer_ms`` (a full FIFO);
* loss = 1 - prod(1 - max(0, 1 - 1/rho)) (the fluid overflow share of each overloaded link);
* jitter: M/M/1 waiting time has standard deviation about its mean, and RFC 3550 jitter
  of independent samples is ~ 2/sqrt(pi) * sigma / sqrt(2); summed in quadrature per link;
* rtt = 2 x propagation + forward queueing (the reverse direction is not modelled).

Rows are Arrow with ``store.schema.SHADOW_SCHEMA``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shadowcast.errors import DataError
from shadowcast.records import F64, Topology
from shadowcast.store.schema import SHADOW_SCHEMA

LIGHT_IN_FIBRE_M_S = 2e8
PACKET_BITS = 8000.0


def _haversine_m(a: tuple[float, float], b: tuple[float, float]) -> float:
    lon1, lat1, lon2, lat2 = map(math.radians, (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * 6_371_000.0 * math.asin(min(1.0, math.sqrt(h)))


def propagation_s(topology: Topology, path: Sequence[int]) -> float:
    total = 0.0
    for i in path:
        lk = topology.links[i]
        if lk.src in topology.coords and lk.dst in topology.coords:
            total += _haversine_m(topology.coords[lk.src], topology.coords[lk.dst])
        else:
            total += 0.0001 * LIGHT_IN_FIBRE_M_S
    return total / LIGHT_IN_FIBRE_M_S


def simulate_path(
    topology: Topology,
    path: Sequence[int],
    loads_mbps: F64,
    *,
    buffer_ms: float = 50.0,
) -> dict[str, F64]:
    """Metrics per time step for one path: abw_mbps, owd_ms, rtt_ms, jitter_ms, loss."""
    loads = np.asarray(loads_mbps, dtype=np.float64)
    if loads.ndim != 2 or loads.shape[1] != len(topology.links):
        raise DataError(f"link loads shape {loads.shape} != (T, {len(topology.links)} links)")
    if not path or any(not 0 <= i < len(topology.links) for i in path):
        raise DataError(f"path {list(path)} has link indices outside the topology")
    idx = np.asarray(path, dtype=np.int64)
    cap = topology.capacities[idx] / 1e6  # Mbit/s
    load = np.nan_to_num(loads[:, idx], nan=0.0).clip(min=0.0)
    abw = (cap - load).min(axis=1).clip(min=0.0)
    rho = load / cap
    service_s = PACKET_BITS / (cap * 1e6)
    with np.errstate(divide="ignore", invalid="ignore"):
        wait = np.where(rho < 1.0, rho / (1.0 - rho) * service_s, np.inf)
        loss_link = np.where(rho > 1.0, 1.0 - 1.0 / rho, 0.0)
    wait = np.minimum(wait, buffer_ms / 1e3)
    prop = propagation_s(topology, path)
    owd = prop + wait.sum(axis=1)
    jitter = np.sqrt((wait**2).sum(axis=1)) * (2.0 / math.sqrt(math.pi)) / math.sqrt(2.0)
    loss = 1.0 - np.prod(1.0 - loss_link, axis=1)
    return {
        "abw_mbps": abw,
        "owd_ms": owd * 1e3,
        "rtt_ms": (2.0 * prop + wait.sum(axis=1)) * 1e3,
        "jitter_ms": jitter * 1e3,
        "loss": loss,
    }


def link_metrics(topology: Topology, loads_mbps: F64, *, buffer_ms: float = 50.0) -> dict[str, F64]:
    """Per-link terms of the model for one step's loads ``[n_links]`` (the same as
    :func:`simulate_path`, which sums them along a path)."""
    load = np.nan_to_num(np.asarray(loads_mbps, dtype=np.float64), nan=0.0).clip(min=0.0)
    cap = topology.capacities / 1e6
    rho = np.divide(load, cap, out=np.full_like(load, np.inf), where=cap > 0)
    service_s = np.divide(PACKET_BITS, cap * 1e6, out=np.zeros_like(cap), where=cap > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        wait = np.where(rho < 1.0, rho / (1.0 - rho) * service_s, np.inf)
        loss = np.where(rho > 1.0, 1.0 - 1.0 / rho, 0.0)
    wait = np.minimum(wait, buffer_ms / 1e3)
    prop = np.array([propagation_s(topology, [e]) for e in range(len(topology.links))])
    return {"headroom": cap - load, "wait": wait, "loss": loss, "prop": prop}


def path_metrics(links: dict[str, F64], path: Sequence[int]) -> dict[str, float]:
    """One path's metrics from :func:`link_metrics`: abw_mbps, owd_ms, rtt_ms, jitter_ms, loss."""
    idx = np.asarray(path, dtype=np.int64)
    wait, prop = links["wait"][idx], float(links["prop"][idx].sum())
    jitter = math.sqrt(float((wait**2).sum())) * (2.0 / math.sqrt(math.pi)) / math.sqrt(2.0)
    return {
        "abw_mbps": float(max(0.0, links["headroom"][idx].min())),
        "owd_ms": (prop + float(wait.sum())) * 1e3,
        "rtt_ms": (2.0 * prop + float(wait.sum())) * 1e3,
        "jitter_ms": jitter * 1e3,
        "loss": float(1.0 - np.prod(1.0 - links["loss"][idx])),
    }


def shadow_rows(
    topology: Topology,
    paths: dict[str, Sequence[int]],
    times: npt.NDArray[np.datetime64],
    loads_mbps: F64,
) -> pa.Table:
    """SHADOW_SCHEMA rows for every named path (tunnel) and time step."""
    if len(times) != np.asarray(loads_mbps).shape[0]:
        raise DataError(f"{len(times)} times but {np.asarray(loads_mbps).shape[0]} load rows")
    names = topology.link_names()
    parts = []
    ts = pa.array(times.astype("datetime64[ms]"), type=pa.timestamp("ms")).cast(
        SHADOW_SCHEMA.field("time").type
    )
    for tunnel, path in paths.items():
        m = simulate_path(topology, path, loads_mbps)
        label = ",".join(names[i] for i in path)
        n = len(times)
        parts.append(
            pa.table(
                {
                    "time": ts,
                    "tunnel": pa.array([tunnel] * n, pa.string()),
                    "path": pa.array([label] * n, pa.string()),
                    "rtt_ms": m["rtt_ms"],
                    "owd_ms": m["owd_ms"],
                    "jitter_ms": m["jitter_ms"],
                    "loss": m["loss"],
                    "abw_mbps": m["abw_mbps"],
                },
                schema=SHADOW_SCHEMA,
            )
        )
    return pa.concat_tables(parts) if parts else SHADOW_SCHEMA.empty_table()
