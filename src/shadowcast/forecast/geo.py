"""Geography of OD series: static per-series inputs for the global models.

For each key ``"src->dst"`` (an application suffix ``"/app"`` is ignored) and each end
(``src_``, ``dst_``):

* ``*_site`` (str): the node or site name;
* ``*_region`` (str): the site's region from the sites file (``profile.sites_file``) where
  one is given, else the time-zone band of its longitude (``"UTC+1"``);
* ``*_lon``, ``*_lat`` (float, degrees): from the topology's coordinates (SNDlib, Topology
  Zoo, node-link JSON; an SNDlib demand file carries them too), NaN where unknown;
* ``*_utc_offset_h`` (float): the local time offset, **taken from the longitude**
  (``round(lon / 15)`` hours: solar time zones, no daylight saving, no political borders:
  a documented approximation; NaN where the coordinates are unknown);

and ``distance_km``, the great-circle distance between the ends (NaN where unknown).

Keys that are not OD pairs (no ``->``) get empty names and NaN numbers. The models read
numeric arrays as they are and strings as categorical codes (:mod:`shadowcast.forecast.gbm`);
the offsets also give each end's local time of day and week as calendar features.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
import numpy.typing as npt

from shadowcast.records import F64, SeriesFrame

EARTH_KM = 6371.0088
#: The meta keys :func:`geo_meta` fills (the "geography" input group).
GEO_KEYS = (
    "src_site",
    "dst_site",
    "src_region",
    "dst_region",
    "src_lon",
    "src_lat",
    "dst_lon",
    "dst_lat",
    "src_utc_offset_h",
    "dst_utc_offset_h",
    "distance_km",
)
OFFSET_KEYS = ("src_utc_offset_h", "dst_utc_offset_h")


def od_ends(key: str) -> tuple[str, str] | None:
    """``"A->B"`` or ``"A->B/app"`` -> ``("A", "B")``; None for a key that is not an OD pair."""
    od = key.split("/", 1)[0]
    s, sep, d = od.partition("->")
    return (s, d) if sep and s and d else None


def utc_offset_h(lon: F64) -> F64:
    """Solar time-zone offset in hours from a longitude in degrees (NaN stays NaN)."""
    return np.asarray(np.round(np.asarray(lon, dtype=np.float64) / 15.0), dtype=np.float64)


def great_circle_km(lon1: F64, lat1: F64, lon2: F64, lat2: F64) -> F64:
    """Haversine distance in km, element-wise (NaN where an end is unknown)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dp, dl = p2 - p1, np.radians(np.asarray(lon2) - np.asarray(lon1))
    a = np.sin(dp / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return np.asarray(2 * EARTH_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0))), dtype=np.float64)


def _region(site: str, lon: float, regions: Mapping[str, str]) -> str:
    if site in regions and regions[site]:
        return regions[site]
    if not np.isfinite(lon):
        return "unknown"
    off = int(round(lon / 15.0))
    return f"UTC{off:+d}"


def geo_meta(
    keys: Sequence[str],
    coords: Mapping[str, tuple[float, float]],
    regions: Mapping[str, str] | None = None,
) -> dict[str, npt.NDArray[np.generic]]:
    """Per-series geography (see the module docstring): ``{name: array[len(keys)]}``.

    ``coords`` maps a site to ``(lon, lat)`` (the ``Topology.coords`` convention);
    ``regions`` maps a site to its region name (a sites file's ``region``)."""
    regions = regions or {}
    n = len(keys)
    names = {"src": [""] * n, "dst": [""] * n}
    regs = {"src": [""] * n, "dst": [""] * n}
    num = {f"{e}_{c}": np.full(n, np.nan) for e in ("src", "dst") for c in ("lon", "lat")}
    for j, k in enumerate(keys):
        ends = od_ends(k)
        if ends is None:
            continue
        for side, site in zip(("src", "dst"), ends, strict=True):
            names[side][j] = site
            lon, lat = coords.get(site, (np.nan, np.nan))
            num[f"{side}_lon"][j], num[f"{side}_lat"][j] = float(lon), float(lat)
            regs[side][j] = _region(site, float(lon), regions)
    out: dict[str, npt.NDArray[np.generic]] = {}
    for side in ("src", "dst"):
        out[f"{side}_site"] = np.asarray(names[side], dtype=object)
        out[f"{side}_region"] = np.asarray(regs[side], dtype=object)
        out[f"{side}_lon"], out[f"{side}_lat"] = num[f"{side}_lon"], num[f"{side}_lat"]
        out[f"{side}_utc_offset_h"] = utc_offset_h(num[f"{side}_lon"])
    out["distance_km"] = great_circle_km(
        num["src_lon"], num["src_lat"], num["dst_lon"], num["dst_lat"]
    )
    return out


def with_meta(frame: SeriesFrame, meta: Mapping[str, npt.NDArray[np.generic]]) -> SeriesFrame:
    """``frame`` with ``meta`` added to (and overriding) its per-series attributes."""
    return replace(frame, meta={**frame.meta, **meta}) if meta else frame


def with_geo(
    frame: SeriesFrame,
    coords: Mapping[str, tuple[float, float]],
    regions: Mapping[str, str] | None = None,
) -> SeriesFrame:
    """``frame`` with :func:`geo_meta` of its keys (unchanged when no key is an OD pair)."""
    if not any(od_ends(k) for k in frame.keys):
        return frame
    return with_meta(frame, geo_meta(frame.keys, coords, regions))
