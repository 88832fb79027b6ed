"""Read-side summaries of behaviour series: top lists and one application's profile."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute

from shadowcast.profile.series import SeriesBuilder
from shadowcast.profile.sketch import Sketches

pc: Any = pyarrow.compute

BY: dict[str, tuple[str, ...]] = {
    "app": ("app", "category"),
    "category": ("category",),
    "site-pair": ("src", "dst"),
    "region-pair": ("src_region", "dst_region"),
    "edge-pair": ("src", "dst"),  # on kind="edge" series
}


def _window_s(series: pa.Table) -> float:
    if series.num_rows == 0:
        return 0.0
    t = pc.cast(series.column("time"), pa.int64())
    grain = int(series.column("grain_s")[0].as_py())
    return (int(pc.max(t).as_py()) - int(pc.min(t).as_py())) / 1000.0 + grain


def top(
    series: pa.Table,
    by: str,
    builder: SeriesBuilder,
    limit: int = 20,
    taxonomy: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Biggest groups by bytes over the whole ``series`` window."""
    if by not in BY:
        raise ValueError(f"--by must be one of {sorted(BY)}")
    kind = "edge" if by == "edge-pair" else "app"
    s = series.filter(pc.equal(series.column("kind"), kind))
    if s.num_rows == 0:
        return []
    window = _window_s(s)
    keys = list(BY[by])
    # merge to per-(key, time) rows first, so the peak is the peak of the group's total
    per_time = s.group_by([*keys, "time"], use_threads=False).aggregate(
        [("bytes", "sum"), ("bytes_var", "sum")]
    )
    grain = int(s.column("grain_s")[0].as_py())
    g = per_time.group_by(keys, use_threads=False).aggregate(
        [("bytes_sum", "sum"), ("bytes_sum", "max"), ("bytes_var_sum", "sum")]
    )
    extra = s.group_by(keys, use_threads=False).aggregate(
        [("transfers", "sum"), ("unclassified_bytes", "sum"), ("bps_peak", "max")]
    )
    g = g.join(extra, keys)
    g = g.sort_by([("bytes_sum_sum", "descending")]).slice(0, limit)
    out = []
    for row in g.to_pylist():
        b = int(row["bytes_sum_sum"])
        item = {k: row[k] for k in keys}
        if "category" in item and taxonomy is not None:
            item["latency_sensitivity"] = taxonomy.get(str(item["category"]), "low")
        item.update(
            bytes=b,
            bps_avg=b * 8.0 / window if window else 0.0,
            bps_err=builder.z * float(np.sqrt(row["bytes_var_sum_sum"])) * 8.0 / window
            if window
            else 0.0,
            bps_peak_bucket=row["bytes_sum_max"] * 8.0 / grain,
            bps_peak=max(row["bps_peak_max"], row["bytes_sum_max"] * 8.0 / grain),
            transfers=int(row["transfers_sum"]),
            transfers_per_min=int(row["transfers_sum"]) / (window / 60.0) if window else 0.0,
            unclassified_share=int(row["unclassified_bytes_sum"]) / b if b else 0.0,
        )
        out.append(item)
    return out


def app_summary(
    series: pa.Table, app: str, builder: SeriesBuilder, taxonomy: Mapping[str, str]
) -> dict[str, Any]:
    """Behaviour of one application over the window: rates, sizes, frequency, paths."""
    s = series.filter(
        pc.and_(pc.equal(series.column("kind"), "app"), pc.equal(series.column("app"), app))
    )
    if s.num_rows == 0:
        return {"app": app, "found": False}
    window = _window_s(s)
    grain = int(s.column("grain_s")[0].as_py())
    b = int(pc.sum(s.column("bytes")).as_py())
    var = float(pc.sum(s.column("bytes_var")).as_py())
    per_time = (
        s.group_by(["time"], use_threads=False)
        .aggregate(
            [("bytes", "sum"), ("bytes_var", "sum"), ("bps_peak", "max"), ("transfers", "sum")]
        )
        .sort_by("time")
    )
    times = pc.cast(per_time.column("time"), pa.int64()).to_numpy()
    tb = np.asarray(per_time.column("bytes_sum").to_numpy(), dtype=np.float64)
    # one sketch for the whole window: merge every row's sketch
    sk = builder.sketch.merge(
        Sketches.from_arrow(s.column("size_idx"), s.column("size_cnt")),
        np.zeros(s.num_rows, dtype=np.int64),
        1,
    )
    cats = pc.unique(s.column("category")).to_pylist()
    category = str(cats[0]) if len(cats) == 1 else ",".join(sorted(map(str, cats)))
    pairs = s.group_by(["src", "dst"], use_threads=False).aggregate([("bytes", "sum")])
    pairs = pairs.sort_by([("bytes_sum", "descending")]).slice(0, 10).to_pylist()
    transfers = int(pc.sum(s.column("transfers")).as_py())
    return {
        "app": app,
        "found": True,
        "category": category,
        "latency_sensitivity": taxonomy.get(category, "low"),
        "window_s": window,
        "grain_s": grain,
        "bytes": b,
        "bps_current": float(tb[-1] * 8.0 / grain),
        "bps_avg": b * 8.0 / window,
        "bps_err": builder.z * float(np.sqrt(var)) * 8.0 / window,
        "bps_peak": float(pc.max(per_time.column("bps_peak_max")).as_py()),
        "transfers": transfers,
        "transfers_per_min": transfers / (window / 60.0),
        "transfer_bytes_p50": float(builder.sketch.quantile(sk, 0.5)[0]),
        "transfer_bytes_p90": float(builder.sketch.quantile(sk, 0.9)[0]),
        "transfer_bytes_p99": float(builder.sketch.quantile(sk, 0.99)[0]),
        "site_pairs": [
            {"src": p["src"], "dst": p["dst"], "bytes": int(p["bytes_sum"])} for p in pairs
        ],
        "series": [
            {"time": int(t), "bytes": int(x), "bps": float(x * 8.0 / grain)}
            for t, x in zip(times.tolist(), tb.tolist(), strict=True)
        ],
    }
