"""The rollup's store rows: ``od_series`` (measured demand) and ``link_series`` (its load
on each link under the routing in force)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from shadowcast.records import F64
from shadowcast.rollup.rollup import RollupBucket
from shadowcast.store.arrow import dict_array, ts_array


def od_rows(bucket: RollupBucket) -> pa.Table:
    """Every OD pair's total (``app`` ``""``) and each kind's non-zero share, Mbit/s."""
    n_od = len(bucket.od_pairs)
    srcs = sorted({s for s, _ in bucket.od_pairs} | {d for _, d in bucket.od_pairs})
    code = {n: i for i, n in enumerate(srcs)}
    s_codes = np.array([code[s] for s, _ in bucket.od_pairs], dtype=np.int32)
    d_codes = np.array([code[d] for _, d in bucket.od_pairs], dtype=np.int32)
    apps = ["", *bucket.kinds]
    vals = [bucket.total(), *list(bucket.mbps)]
    od_idx: list[np.ndarray] = []
    app_idx: list[np.ndarray] = []
    mbps: list[F64] = []
    for a, v in enumerate(vals):
        keep = np.arange(n_od) if a == 0 else np.flatnonzero(v)
        od_idx.append(keep)
        app_idx.append(np.full(len(keep), a, dtype=np.int32))
        mbps.append(np.asarray(v, dtype=np.float64)[keep])
    od = np.concatenate(od_idx)
    n = len(od)
    t = np.full(n, np.datetime64(bucket.start_s, "s"))
    return pa.table(
        {
            "time": ts_array(t),
            "src": dict_array(s_codes[od], srcs),
            "dst": dict_array(d_codes[od], srcs),
            "app": dict_array(np.concatenate(app_idx), apps),
            "mbps": pa.array(np.concatenate(mbps)),
        }
    )


def link_rows(start_s: int, names: Sequence[str], load: F64, capacity: F64) -> pa.Table:
    n = len(names)
    util = np.divide(load, capacity, out=np.zeros_like(load), where=capacity > 0)
    return pa.table(
        {
            "time": ts_array(np.full(n, np.datetime64(start_s, "s"))),
            "link": pa.array(list(names), pa.string()),
            "load_mbps": pa.array(np.asarray(load, dtype=np.float64)),
            "capacity_mbps": pa.array(np.asarray(capacity, dtype=np.float64)),
            "utilisation": pa.array(util),
        }
    )
