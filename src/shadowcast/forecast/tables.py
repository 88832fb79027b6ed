"""The forecast stage's store rows: link forecasts each step, and OD forecast cycles (what
``shadowcast plan --store`` reads back with :func:`stored_od_forecast`)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa

from shadowcast.errors import StoreError
from shadowcast.records import F64, Forecast
from shadowcast.store.arrow import dict_array
from shadowcast.store.base import Store
from shadowcast.store.schema import TS


def od_forecast_table(
    issued: np.datetime64, step: int, subjects: Sequence[str], model: str, fc: Forecast
) -> pa.Table:
    """Every step of one OD forecast (the latest cycle: what ``shadowcast plan`` reads)."""
    n, h = fc.mean.shape
    levels = sorted(fc.lower) or [0.0]
    k = len(levels)
    issued_ms = int(issued.astype("datetime64[ms]").astype(np.int64))
    hs = np.arange(1, h + 1, dtype=np.int64) * step  # seconds ahead, per column
    # row order: level, subject, step
    horizon_s = np.tile(np.repeat(hs[None, :], n, axis=0).reshape(-1), k)
    mean = np.tile(fc.mean.reshape(-1), k)
    lower = np.concatenate([fc.lower.get(lv, fc.mean).reshape(-1) for lv in levels])
    upper = np.concatenate([fc.upper.get(lv, fc.mean).reshape(-1) for lv in levels])
    rows = n * h * k
    return pa.table(
        {
            "issued": pa.array(np.full(rows, issued_ms), type=pa.int64()).cast(TS),
            "target": pa.array(issued_ms + horizon_s * 1000, type=pa.int64()).cast(TS),
            "horizon_s": pa.array(horizon_s),
            "kind": pa.array(["od"] * rows),
            "subject": dict_array(np.tile(np.repeat(np.arange(n), h), k), subjects),
            "model": pa.array([model] * rows),
            "mean": pa.array(mean),
            "level": pa.array(np.repeat(np.asarray(levels, dtype=np.float64), n * h)),
            "lower": pa.array(lower),
            "upper": pa.array(upper),
        }
    )


def stored_od_forecast(store: Store) -> tuple[np.datetime64, int, list[str], Forecast]:
    """The latest OD forecast cycle in ``store``: (issued, step_s, subjects, forecast)."""
    tab = store.read("forecasts", where={"kind": "od"})
    if tab.num_rows == 0:
        raise StoreError("no OD forecasts in the store: run `shadowcast replay` first")
    issued_ms = tab.column("issued").cast(pa.int64()).to_numpy()
    last = issued_ms == issued_ms.max()
    # several cycles may share the issue time (a replay's and `shadowcast forecast
    # --write`'s): the one written last wins
    models = np.asarray(tab.column("model").to_pylist(), dtype=object)
    newest = models[np.flatnonzero(last)[-1]]
    tab = tab.filter(pa.array(last & (models == newest)))
    subj = np.array(tab.column("subject").to_pylist(), dtype=object)
    names = sorted(set(subj.tolist()))
    pos = {s: i for i, s in enumerate(names)}
    hsec = tab.column("horizon_s").to_numpy()
    step = int(hsec.min())
    col = hsec // step - 1
    row = np.array([pos[s] for s in subj])
    lv = tab.column("level").to_numpy()
    h = int(col.max()) + 1
    mean = np.zeros((len(names), h))
    lower: dict[float, F64] = {}
    upper: dict[float, F64] = {}
    for level in sorted(set(lv.tolist())):
        sel = lv == level
        mean[row[sel], col[sel]] = tab.column("mean").to_numpy()[sel]
        if level > 0:
            lo, hi = np.zeros_like(mean), np.zeros_like(mean)
            lo[row[sel], col[sel]] = tab.column("lower").to_numpy()[sel]
            hi[row[sel], col[sel]] = tab.column("upper").to_numpy()[sel]
            lower[float(level)], upper[float(level)] = lo, hi
    model = str(tab.column("model")[0].as_py())
    issued = np.datetime64(int(issued_ms.max()), "ms").astype("datetime64[s]")
    return issued, step, names, Forecast(mean=mean, lower=lower, upper=upper, model=model)


def link_forecast_rows(
    issued_s: int,
    step_s: int,
    horizons: Sequence[int],
    link_names: Sequence[str],
    mean: F64,
    upper: dict[float, F64],
    lower: dict[float, F64],
    model: str,
) -> pa.Table:
    """Link forecasts ``mean[n_links, H]`` (Mbit/s) at the given horizons (steps ahead),
    one row per link, horizon and level (level 0 when there are no bounds). A horizon of
    ``h`` steps targets the end of the ``h``-th step after ``issued_s``."""
    levels = sorted(upper) or [0.0]
    n = len(link_names)
    hs = [h for h in horizons if 1 <= h <= mean.shape[1]]
    parts_mean, parts_lo, parts_up, parts_lv, parts_h, parts_subj = [], [], [], [], [], []
    for h in hs:
        for lv in levels:
            parts_mean.append(mean[:, h - 1])
            parts_up.append(upper[lv][:, h - 1] if lv in upper else mean[:, h - 1])
            parts_lo.append(lower[lv][:, h - 1] if lv in lower else mean[:, h - 1])
            parts_lv.append(np.full(n, lv))
            parts_h.append(np.full(n, h * step_s, dtype=np.int64))
            parts_subj.append(np.arange(n))
    rows = n * len(hs) * len(levels)
    issued_ms = np.full(rows, issued_s * 1000, dtype=np.int64)
    hsec = np.concatenate(parts_h) if parts_h else np.zeros(0, dtype=np.int64)
    return pa.table(
        {
            "issued": pa.array(issued_ms, pa.int64()).cast(TS),
            "target": pa.array(issued_ms + hsec * 1000, pa.int64()).cast(TS),
            "horizon_s": pa.array(hsec),
            "kind": pa.array(["link"] * rows),
            "subject": dict_array(
                np.concatenate(parts_subj) if parts_subj else np.zeros(0, np.int32), link_names
            ),
            "model": pa.array([model] * rows),
            "mean": pa.array(np.concatenate(parts_mean) if parts_mean else np.zeros(0)),
            "level": pa.array(np.concatenate(parts_lv) if parts_lv else np.zeros(0)),
            "lower": pa.array(np.concatenate(parts_lo) if parts_lo else np.zeros(0)),
            "upper": pa.array(np.concatenate(parts_up) if parts_up else np.zeros(0)),
        }
    )
