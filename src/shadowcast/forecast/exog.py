"""Exogenous inputs for the forecasters: shadow-path measurements and link capacity.

Each function returns ``{name: array[T, n]}`` aligned with a ``SeriesFrame``'s ``times`` and
``keys`` (OD pairs ``"src->dst"``), ready for ``SeriesFrame(exog=...)`` or for
``model.update(rows, exog=...)``. Row ``t`` is what was measured in the bucket
``[times[t], times[t] + step)``, the bucket whose demand is ``values[t]``, so a forecast made
at row ``t`` uses only what was known by then. NaN = nothing measured.

* :func:`shadow_exog`: the store's ``shadow`` table (one row per tunnel and probe run),
  mean per bucket and OD pair of ``rtt_ms``, ``loss``, ``abw_mbps``, ``jitter_ms`` (NaN
  probes ignored; several tunnels of one OD pair pooled). A row's OD pair is its tunnel name
  when that is a key, else the ends of its ``path``: routers ``"A>B>D"`` (probes,
  :mod:`shadowcast.shadow.results`) or link names ``"A->B,B->D"`` (simulated,
  :mod:`shadowcast.shadow.simulate`) both give ``"A->D"``.
* :func:`bottleneck_capacity`: static, per OD pair (for ``SeriesFrame.meta``): the demand
  at which the first link on its routed paths would fill, ``min_e capacity_e / R[e, k]``
  (``R`` from :func:`shadowcast.network.routing.routing_matrix`, so ECMP splits count), Mbit/s.
* :func:`capacity_exog`: the same over time from the ``link_series`` table (reported
  capacity, topology's where none) and the headroom ``min_e (capacity_e - load_e) / R[e, k]``.
"""

from __future__ import annotations

import logging
from collections.abc import Container, Sequence
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import scipy.sparse as sp

from shadowcast.errors import ForecastError
from shadowcast.network.routing import routing_matrix
from shadowcast.records import F64, Topology
from shadowcast.store.base import Store

I64 = npt.NDArray[np.int64]
B = npt.NDArray[np.bool_]
log = logging.getLogger(__name__)

SHADOW_COLUMNS: tuple[str, ...] = ("rtt_ms", "loss", "abw_mbps", "jitter_ms")


def od_of(tunnel: str, path: str, keys: Container[str] = ()) -> str | None:
    """The OD key ``"src->dst"`` a shadow row measures, or None when it cannot tell."""
    if tunnel in keys:
        return tunnel
    if "->" in path:  # simulated: "A->B,B->D" (a link name may end in "#key")
        hops = [h.split("#", 1)[0] for h in path.split(",") if "->" in h]
        if hops:
            return f"{hops[0].split('->', 1)[0]}->{hops[-1].split('->', 1)[1]}"
        return None
    routers = [r for r in path.split(">") if r]
    if len(routers) >= 2:
        return f"{routers[0]}->{routers[-1]}"
    return None


def _grid(times: npt.NDArray[np.datetime64], step: int) -> tuple[int, int, int]:
    """(first bucket start in ms, bucket length in ms, number of buckets)."""
    if step <= 0:
        raise ForecastError(f"exog: step must be positive, got {step}")
    t = np.asarray(times, dtype="datetime64[ms]").astype(np.int64)
    if t.size == 0:
        raise ForecastError("exog: need at least one time")
    return int(t[0]), int(step) * 1000, int(t.size)


def _window(t0_ms: int, step_ms: int, T: int) -> tuple[datetime, datetime]:
    return (
        datetime.fromtimestamp(t0_ms / 1000, UTC),
        datetime.fromtimestamp((t0_ms + T * step_ms) / 1000, UTC),
    )


def _bucket_means(flat: I64, values: F64, size: int) -> F64:
    """Mean of the finite ``values`` per flat cell index (NaN where none)."""
    ok = np.isfinite(values)
    s = np.bincount(flat[ok], weights=values[ok], minlength=size)
    c = np.bincount(flat[ok], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, s / np.maximum(c, 1), np.nan)


def _rows_in_grid(tab: pa.Table, t0_ms: int, step_ms: int, T: int) -> tuple[I64, B]:
    """Bucket index of every row, and the mask of those inside the grid."""
    t = tab.column("time").cast(pa.int64()).to_numpy(zero_copy_only=False)
    b = np.floor_divide(t - t0_ms, step_ms).astype(np.int64)
    return b, (b >= 0) & (b < T)


def column_codes(column: pa.ChunkedArray) -> tuple[I64, list[str]]:
    """A string column as integer codes into its distinct values (nulls as ""): one Python
    string per distinct value, never one per row."""
    enc = column.cast(pa.string()).fill_null("").combine_chunks().dictionary_encode()
    return enc.indices.to_numpy(zero_copy_only=False).astype(np.int64), enc.dictionary.to_pylist()


def _od_columns(tab: pa.Table, keys: Sequence[str]) -> I64:
    """Position in ``keys`` of each shadow row's OD pair (-1: none); one lookup per
    distinct (tunnel, path), not per row."""
    pos = {k: i for i, k in enumerate(keys)}
    ti, tnames = column_codes(tab.column("tunnel"))
    pi, pnames = column_codes(tab.column("path"))
    combo = ti * max(1, len(pnames)) + pi
    uniq, inv = np.unique(combo, return_inverse=True)
    lut = np.empty(uniq.size, dtype=np.int64)
    for j, c in enumerate(uniq.tolist()):
        t, p = divmod(c, max(1, len(pnames)))
        od = od_of(tnames[t], pnames[p], pos.keys())
        lut[j] = -1 if od is None else pos.get(od, -1)
    return np.asarray(lut[inv.ravel()], dtype=np.int64)


def shadow_exog(
    store: Store,
    keys: Sequence[str],
    times: npt.NDArray[np.datetime64],
    step: int,
    columns: Sequence[str] = SHADOW_COLUMNS,
) -> dict[str, F64]:
    """Shadow-path measurements per bucket and OD pair: ``{column: [T, len(keys)]}``."""
    bad = [c for c in columns if c not in SHADOW_COLUMNS + ("owd_ms",)]
    if bad:
        raise ForecastError(f"exog: unknown shadow column(s) {bad}; choose from rtt_ms, "
                            "owd_ms, jitter_ms, loss, abw_mbps")  # fmt: skip
    t0, sms, T = _grid(times, step)
    n = len(keys)
    tab = store.read("shadow", *_window(t0, sms, T))
    out = {c: np.full((T, n), np.nan) for c in columns}
    if tab.num_rows == 0 or n == 0:
        return out
    col = _od_columns(tab, keys)
    b, inside = _rows_in_grid(tab, t0, sms, T)
    keep = inside & (col >= 0)
    if (col < 0).any():
        log.debug("shadow rows with no OD key skipped", extra={"rows": int((col < 0).sum())})
    flat = b[keep] * n + col[keep]
    for c in columns:
        v = tab.column(c).to_numpy(zero_copy_only=False).astype(np.float64)[keep]
        out[c] = _bucket_means(flat, v, T * n).reshape(T, n)
    return out


def _od_pairs(keys: Sequence[str], topology: Topology) -> tuple[list[tuple[str, str]], I64]:
    """Routable OD pairs among ``keys`` and their positions."""
    nodes = set(topology.nodes)
    pairs: list[tuple[str, str]] = []
    idx: list[int] = []
    for j, k in enumerate(keys):
        s, sep, d = k.partition("->")
        if sep and s in nodes and d in nodes and s != d:
            pairs.append((s, d))
            idx.append(j)
    return pairs, np.asarray(idx, dtype=np.int64)


def _path_min(per_link: F64, R: sp.coo_matrix, n: int, cols: I64) -> F64:
    """``min_e per_link[:, e] / R[e, k]`` over the links of each OD ``k`` -> ``[T, n]``."""
    out = np.full((per_link.shape[0], n), np.inf)
    e, k, share = R.row, R.col, R.data
    ok = share > 1e-12
    e, k, share = e[ok], cols[k[ok]], share[ok]
    order = np.argsort(k, kind="stable")  # group the (link, OD) entries by OD
    e, k, share = e[order], k[order], share[order]
    if k.size:
        starts = np.flatnonzero(np.r_[True, k[1:] != k[:-1]])
        vals = per_link[:, e] / share[None, :]
        vals = np.where(np.isnan(vals), np.inf, vals)
        out[:, k[starts]] = np.minimum.reduceat(vals, starts, axis=1)
    return np.where(np.isfinite(out), out, np.nan)


def bottleneck_capacity(topology: Topology, keys: Sequence[str], weight: str = "hops") -> F64:
    """Per OD key, in Mbit/s: the demand at which the first link of its routed paths fills
    (NaN for keys that are not routable OD pairs of ``topology``)."""
    pairs, cols = _od_pairs(keys, topology)
    if not pairs:
        return np.full(len(keys), np.nan)
    R = routing_matrix(topology, pairs, weight).tocoo()
    caps = topology.capacities[None, :] / 1e6
    return np.asarray(_path_min(caps, R, len(keys), cols)[0], dtype=np.float64)


def capacity_exog(
    store: Store,
    topology: Topology,
    keys: Sequence[str],
    times: npt.NDArray[np.datetime64],
    step: int,
    weight: str = "hops",
) -> dict[str, F64]:
    """Bottleneck capacity and headroom over time from ``link_series`` (Mbit/s, [T, n]).

    ``capacity_mbps``: the static :func:`bottleneck_capacity` with each link's reported
    capacity where the store has one for the bucket; ``headroom_mbps``: ``min_e (capacity_e -
    load_e) / R[e, k]``, the extra OD demand its paths take before a link fills (over the
    links with a reported load; NaN where none).
    """
    t0, sms, T = _grid(times, step)
    n = len(keys)
    names = topology.link_names()
    E = len(names)
    cap = np.broadcast_to(topology.capacities / 1e6, (T, E)).copy()
    load = np.full((T, E), np.nan)
    tab = store.read("link_series", *_window(t0, sms, T))
    if tab.num_rows:
        pos = {lk: i for i, lk in enumerate(names)}
        links = tab.column("link").to_pylist()
        li = np.array([pos.get(lk, -1) for lk in links], dtype=np.int64)
        b, inside = _rows_in_grid(tab, t0, sms, T)
        keep = inside & (li >= 0)
        flat = b[keep] * E + li[keep]
        for name, arr in (("capacity_mbps", cap), ("load_mbps", load)):
            v = tab.column(name).to_numpy(zero_copy_only=False).astype(np.float64)[keep]
            m = _bucket_means(flat, v, T * E).reshape(T, E)
            np.copyto(arr, m, where=np.isfinite(m))
    pairs, cols = _od_pairs(keys, topology)
    if not pairs:
        return {"capacity_mbps": np.full((T, n), np.nan), "headroom_mbps": np.full((T, n), np.nan)}
    R = routing_matrix(topology, pairs, weight).tocoo()
    return {
        "capacity_mbps": _path_min(cap, R, n, cols),
        "headroom_mbps": _path_min(cap - load, R, n, cols),
    }


def routed_capacity_exog(
    topology: Topology, keys: Sequence[str], values: F64, weight: str = "hops"
) -> dict[str, F64]:
    """Bottleneck capacity and headroom over time when no link series were measured: the
    link loads are the series themselves routed over ``topology`` (``R @ values``, the
    shortest-path routing with ECMP splits; an unknown value routes as none), so row ``t``
    uses only row ``t``'s demand. Same names and units as :func:`capacity_exog`."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64))
    T, n = v.shape
    pairs, cols = _od_pairs(keys, topology)
    if not pairs:
        return {"capacity_mbps": np.full((T, n), np.nan), "headroom_mbps": np.full((T, n), np.nan)}
    R = routing_matrix(topology, pairs, weight)
    load = np.asarray((R @ v[:, cols].T).T, dtype=np.float64)  # [T, E]
    cap = np.broadcast_to(topology.capacities / 1e6, load.shape)
    Rc = R.tocoo()
    return {
        "capacity_mbps": _path_min(np.ascontiguousarray(cap[:1]), Rc, n, cols).repeat(T, axis=0),
        "headroom_mbps": _path_min(cap - load, Rc, n, cols),
    }
