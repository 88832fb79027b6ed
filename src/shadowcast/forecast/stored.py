"""Read back the latest OD forecast cycle from the store (what ``shadowcast plan`` plans on).

``shadowcast forecast --write`` and the replay store every step of their OD forecasts in
the ``forecasts`` table (kind ``od``): subjects ``src->dst`` for all traffic, or
``src->dst/app`` per application (``--by-app``). The latest cycle is the newest issue
time; when several were written at that time (a replay's and ``forecast --write``'s), the
one written last wins, per kind of subject: all traffic, or per application.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from shadowcast.errors import DataError
from shadowcast.forecast.exog import column_codes
from shadowcast.records import F64, Forecast
from shadowcast.store.base import Store


@dataclass(frozen=True)
class StoredForecast:
    """One stored OD forecast cycle: ``forecast.mean[len(keys), h]`` at steps 1..h."""

    issued: np.datetime64
    step: int
    keys: tuple[str, ...]
    forecast: Forecast

    @property
    def per_app(self) -> bool:
        return any("/" in k for k in self.keys)


def read_od_forecast(store: Store, *, per_app: bool | None = None) -> StoredForecast:
    """The latest OD forecast cycle: per application (``per_app=True``), all traffic
    (False), or per application when the latest cycle has it, else all traffic (None)."""
    tab = store.read("forecasts", where={"kind": "od"})
    if tab.num_rows == 0:
        raise DataError(  # bad input (exit 2): there is nothing to plan from yet
            "no OD forecasts in the store: run `shadowcast forecast --write` or a replay first"
        )
    issued_ms = tab.column("issued").cast(pa.int64()).to_numpy()
    codes, subjects = column_codes(tab.column("subject"))
    app_subject = np.array(["/" in s for s in subjects] or [False])[codes]
    last = issued_ms == issued_ms.max()
    if per_app is None:
        per_app = bool((last & app_subject).any())
    sel = last & (app_subject == per_app)
    if not sel.any():
        what = "per-application" if per_app else "all-traffic"
        raise DataError(
            f"the latest stored OD forecast has no {what} series"
            + (": run `shadowcast forecast --by-app --write`" if per_app else "")
        )
    mcodes, models = column_codes(tab.column("model"))
    newest = mcodes[np.flatnonzero(sel)[-1]]  # the cycle written last at that time
    sel &= mcodes == newest
    rows = np.flatnonzero(sel)
    used, inv = np.unique(codes[rows], return_inverse=True)
    names = [subjects[int(c)] for c in used]
    order = np.argsort(np.asarray(names, dtype=object), kind="stable")
    rank = np.empty(len(names), dtype=np.int64)
    rank[order] = np.arange(len(names))
    row = rank[inv.ravel()]
    hsec = tab.column("horizon_s").to_numpy()[rows]
    step = int(hsec.min())
    col = hsec // step - 1
    lv = tab.column("level").to_numpy()[rows]
    h = int(col.max()) + 1
    mean = np.zeros((len(names), h))
    lower: dict[float, F64] = {}
    upper: dict[float, F64] = {}
    values = {c: tab.column(c).to_numpy()[rows] for c in ("mean", "lower", "upper")}
    for level in np.unique(lv).tolist():
        at = lv == level
        mean[row[at], col[at]] = values["mean"][at]
        if level > 0:
            lo, hi = np.zeros_like(mean), np.zeros_like(mean)
            lo[row[at], col[at]] = values["lower"][at]
            hi[row[at], col[at]] = values["upper"][at]
            lower[float(level)], upper[float(level)] = lo, hi
    issued = np.datetime64(int(issued_ms.max()), "ms").astype("datetime64[s]")
    fc = Forecast(mean=mean, lower=lower, upper=upper, model=str(models[int(newest)]))
    return StoredForecast(issued, step, tuple(names[int(i)] for i in order), fc)
