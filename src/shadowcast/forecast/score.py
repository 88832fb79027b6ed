"""Feedback: score the forecasts kept in the store against what was measured since.

Every stored forecast row (``forecasts``: issued, target, horizon, subject, model, mean,
level, lower, upper) whose target time has a measurement (``link_series`` for links,
all-traffic ``od_series`` for OD pairs) is scored; rows whose target has not arrived yet are
counted as pending. Per (model, horizon): NMAE = sum |mean - actual| / sum |actual|, and per
interval level the share of actuals inside [lower, upper] and at or below ``upper`` (the
one-sided figure an alert on the upper bound relies on; nominal ``(100 + L) / 2`` %).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from shadowcast.errors import ConfigError, StoreError
from shadowcast.store.base import Store

KINDS = ("link", "od")


def _actuals(store: Store, kind: str) -> pa.Table:
    """``(subject, target, actual)`` measurements for ``kind``."""
    if kind == "link":
        t = store.read("link_series")
        subject = t.column("link").cast(pa.string())
        actual = t.column("load_mbps")
    else:
        t = store.read("od_series", where={"app": ""})
        subject = pc.binary_join_element_wise(  # type: ignore[attr-defined]
            t.column("src").cast(pa.string()), t.column("dst").cast(pa.string()), "->"
        )
        actual = t.column("mbps")
    return pa.table({"subject": subject, "target": t.column("time"), "actual": actual})


def score_stored(store: Store, kind: str = "link") -> dict[str, Any]:
    """Scores of the stored ``kind`` forecasts (see the module docstring)."""
    if kind not in KINDS:
        raise ConfigError(f"kind must be one of {KINDS}, got {kind!r}")
    fc = store.read("forecasts", where={"kind": kind})
    if fc.num_rows == 0:
        raise StoreError(
            f"no {kind} forecasts in the store: run `shadowcast replay` or "
            "`shadowcast forecast --write` first"
        )
    fc = fc.select(["target", "horizon_s", "subject", "model", "mean", "level", "lower", "upper"])
    fc = fc.set_column(2, "subject", fc.column("subject").cast(pa.string()))
    fc = fc.set_column(3, "model", fc.column("model").cast(pa.string()))
    joined = fc.join(_actuals(store, kind), ["subject", "target"], join_type="inner")
    rows: list[dict[str, Any]] = []
    model = np.asarray(joined.column("model").to_pylist(), dtype=object)
    hs = joined.column("horizon_s").to_numpy()
    lv = joined.column("level").to_numpy()
    mean = joined.column("mean").to_numpy()
    lo = joined.column("lower").to_numpy()
    hi = joined.column("upper").to_numpy()
    act = joined.column("actual").to_numpy()
    all_models = np.asarray(fc.column("model").to_pylist(), dtype=object)
    all_hs = fc.column("horizon_s").to_numpy()
    all_lv = fc.column("level").to_numpy()
    for m in sorted(set(all_models.tolist())):
        for h in sorted(set(all_hs[all_models == m].tolist())):
            mine = (all_models == m) & (all_hs == h)
            levels = sorted(set(all_lv[mine].tolist()))
            sel = (model == m) & (hs == h)
            # one row per forecast point: the first level's rows carry the point forecast
            first = sel & (lv == levels[0])
            total = int(mine.sum())
            denom = float(np.abs(act[first]).sum())
            row: dict[str, Any] = {
                "model": m,
                "horizon_s": int(h),
                "scored": int(first.sum()),
                "pending": total // max(1, len(levels)) - int(first.sum()),
                "nmae": float(np.abs(mean[first] - act[first]).sum() / denom)
                if denom > 0
                else None,
            }
            for level in levels:
                if level <= 0:
                    continue
                s = sel & (lv == level)
                inside = (act[s] >= lo[s] - 1e-9) & (act[s] <= hi[s] + 1e-9)
                row[f"coverage_{level:g}"] = float(inside.mean()) if s.any() else None
                row[f"upper_coverage_{level:g}"] = (
                    float((act[s] <= hi[s] + 1e-9).mean()) if s.any() else None
                )
            rows.append(row)
    return {"kind": kind, "rows": rows}
