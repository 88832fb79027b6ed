"""Typed records that cross stage boundaries.

Bulk data travels as numpy arrays or Arrow tables inside small frozen dataclasses;
never one Python object per flow or per sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pyarrow as pa

# Application categories (the taxonomy) and their default latency sensitivity.
from shadowcast.taxonomy import CATEGORIES as CATEGORIES
from shadowcast.taxonomy import LATENCY_SENSITIVITY as LATENCY_SENSITIVITY

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
G = TypeVar("G", bound=np.generic)

# Flow records as they enter the store: one Arrow schema, written in batches.
FLOW_SCHEMA = pa.schema(
    [
        ("time_start", pa.timestamp("ms", tz="UTC")),
        ("time_end", pa.timestamp("ms", tz="UTC")),
        ("exporter", pa.string()),
        ("src_addr", pa.binary(16)),  # IPv6, or IPv4-mapped (::ffff:a.b.c.d)
        ("dst_addr", pa.binary(16)),
        ("src_port", pa.uint16()),
        ("dst_port", pa.uint16()),
        ("proto", pa.uint8()),
        ("tcp_flags", pa.uint8()),
        ("tos", pa.uint8()),
        ("src_as", pa.uint32()),
        ("dst_as", pa.uint32()),
        ("bytes", pa.uint64()),
        ("packets", pa.uint64()),
        ("sampling_rate", pa.uint32()),
        ("in_if", pa.uint32()),
        ("out_if", pa.uint32()),
        ("app", pa.string()),  # application name ("" when unknown)
        ("category", pa.string()),  # one of CATEGORIES ("" until profiled)
        ("app_source", pa.string()),  # which layer decided: exporter|ndpi|rules|model|""
        ("app_confidence", pa.float32()),
        ("src_site", pa.string()),
        ("dst_site", pa.string()),
    ]
)


@dataclass(frozen=True, slots=True)
class Link:
    """One directed link; ``capacity`` in bit/s."""

    src: str
    dst: str
    capacity: float
    key: str = ""


@dataclass(frozen=True, slots=True)
class Topology:
    """Directed multigraph of routers; parallel links kept, capacities in bit/s."""

    name: str
    nodes: tuple[str, ...]
    links: tuple[Link, ...]
    coords: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # (lon, lat)

    def node_index(self) -> dict[str, int]:
        return {n: i for i, n in enumerate(self.nodes)}

    @property
    def capacities(self) -> F64:
        return np.array([link.capacity for link in self.links], dtype=np.float64)

    def link_names(self) -> list[str]:
        return [f"{lk.src}->{lk.dst}" + (f"#{lk.key}" if lk.key else "") for lk in self.links]


@dataclass(frozen=True, slots=True)
class DemandSeries:
    """Timestamps × OD pairs of demand in Mbit/s (float32; a missing OD is 0, or NaN when
    loaded with ``missing="nan"``).

    ``times`` are UTC ``datetime64[s]``; ``step`` is the sampling interval in seconds.
    """

    times: npt.NDArray[np.datetime64]
    od_pairs: tuple[tuple[str, str], ...]
    values: F32
    step: int
    nodes: tuple[str, ...] = ()
    source: str = ""

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.times), len(self.od_pairs)):
            raise ValueError(
                f"values shape {self.values.shape} != ({len(self.times)}, {len(self.od_pairs)})"
            )

    @property
    def steps(self) -> int:
        return int(self.values.shape[0])

    def slice(self, start: int, stop: int | None = None) -> DemandSeries:
        return DemandSeries(
            times=self.times[start:stop],
            od_pairs=self.od_pairs,
            values=self.values[start:stop],
            step=self.step,
            nodes=self.nodes,
            source=self.source,
        )


@dataclass(frozen=True, slots=True)
class Forecast:
    """Forecast for ``n`` series over ``h`` steps: ``mean[n, h]`` and bounds per level.

    ``lower[level]``/``upper[level]`` have the shape of ``mean``; levels are percents (80, 95).
    """

    mean: F64
    lower: Mapping[float, F64] = field(default_factory=dict)
    upper: Mapping[float, F64] = field(default_factory=dict)
    model: str = ""

    @property
    def levels(self) -> Sequence[float]:
        return sorted(self.lower)


@dataclass(frozen=True, slots=True)
class Alert:
    """A capacity alert: ``subject`` (a link) predicted to reach ``value`` at ``at``."""

    name: str
    subject: str
    severity: str
    value: float
    threshold: float
    issued: np.datetime64
    at: np.datetime64
    lead_s: int
    message: str
    # routing labels for notifiers (application class driving the link, team)
    labels: Mapping[str, str] = field(default_factory=dict, compare=False)


@dataclass(frozen=True, slots=True)
class SeriesFrame:
    """Aligned time series for forecasting: ``values[t, i]`` for series ``keys[i]``.

    ``times`` are UTC ``datetime64[s]`` at a fixed ``step`` (seconds). NaN marks a gap.
    ``meta`` carries optional per-series attributes (category, distance_km, capacity, ...),
    each an array of length ``len(keys)``. ``exog`` carries optional time-varying exogenous
    inputs (shadow-path ``rtt_ms``, ``abw_mbps``, ...), each a float array shaped like
    ``values`` (row ``t`` is what was measured in the same bucket); NaN = unknown.
    """

    times: npt.NDArray[np.datetime64]
    keys: tuple[str, ...]
    values: F64
    step: int
    meta: Mapping[str, npt.NDArray[np.generic]] = field(default_factory=dict)
    exog: Mapping[str, F64] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.values.shape != (len(self.times), len(self.keys)):
            raise ValueError(
                f"values shape {self.values.shape} != ({len(self.times)}, {len(self.keys)})"
            )
        want = (len(self.times), len(self.keys))
        for key, arr in self.exog.items():
            a = np.asarray(arr)
            if a.shape != want or a.dtype.kind not in "fiu":
                raise ValueError(
                    f"exog[{key!r}]: expected a numeric array of shape {want} (times x keys), "
                    f"got {a.dtype} {a.shape}"
                )

    def rows(self, start: int | None, stop: int | None = None) -> SeriesFrame:
        """Time steps ``start:stop`` (Python slice semantics), meta and exog kept."""
        return SeriesFrame(
            times=self.times[start:stop],
            keys=self.keys,
            values=self.values[start:stop],
            step=self.step,
            meta=self.meta,
            exog={k: np.asarray(v)[start:stop] for k, v in self.exog.items()},
        )

    def columns(self, idx: slice | Sequence[int] | npt.NDArray[np.integer]) -> SeriesFrame:
        """The series at ``idx`` (a slice or positions), with their meta and exog."""
        pos = np.arange(len(self.keys))[idx]
        return SeriesFrame(
            times=self.times,
            keys=tuple(self.keys[int(i)] for i in pos),
            values=self.values[:, idx],
            step=self.step,
            meta={k: np.asarray(v)[idx] for k, v in self.meta.items()},
            exog={k: np.asarray(v)[:, idx] for k, v in self.exog.items()},
        )

    def align(self, keys: Sequence[str], fill: float = np.nan) -> SeriesFrame:
        """The frame on ``keys``, in that order: a key it lacks is ``fill`` at every step
        (exog NaN, numeric meta NaN, other meta ""); keys not in ``keys`` are dropped."""
        keys = tuple(keys)
        if keys == self.keys:
            return self
        have = {k: i for i, k in enumerate(self.keys)}
        src = np.array([have.get(k, -1) for k in keys], dtype=np.int64)
        ok = src >= 0

        def take(a: npt.NDArray[G], missing: object) -> npt.NDArray[G]:
            out: npt.NDArray[G] = np.full((a.shape[0], len(keys)), missing, dtype=a.dtype)
            out[:, ok] = a[:, src[ok]]
            return out

        meta: dict[str, npt.NDArray[np.generic]] = {}
        for k, v in self.meta.items():
            a = np.asarray(v)
            if a.shape != (len(self.keys),):  # not one value per series: kept as it is
                meta[k] = a
                continue
            numeric = a.dtype.kind in "fiub"
            a = a.astype(np.float64 if numeric else object)
            meta[k] = take(a[None, :], np.nan if numeric else "")[0]
        values = np.asarray(self.values, dtype=np.float64)
        return SeriesFrame(
            times=self.times,
            keys=keys,
            values=take(values, fill),
            step=self.step,
            meta=meta,
            exog={k: take(np.asarray(v, dtype=np.float64), np.nan) for k, v in self.exog.items()},
        )

    @classmethod
    def from_demands(cls, demands: DemandSeries) -> SeriesFrame:
        return cls(
            times=demands.times,
            keys=tuple(f"{s}->{d}" for s, d in demands.od_pairs),
            values=demands.values.astype(np.float64),
            step=demands.step,
        )
