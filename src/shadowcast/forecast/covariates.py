"""Covariates for the neural model: calendar, geography, capacity and shadow inputs.

Numeric columns per row ``(o, i)`` (NaN = unknown; the model standardises them and
reads NaN as the mean, with an is-known flag per exogenous input):

* with ``absolute_time`` only (off by default, see below): ``calendar`` (unless excluded),
  the time of day (two Fourier pairs), week (one pair) and a weekend flag at the first
  step ahead, in UTC; and the local time of each end (a pair for the day, a pair for the
  week, a weekend flag) from the ``*_utc_offset_h`` meta (:mod:`shadowcast.forecast.geo`);
* every numeric per-series meta array as it is (coordinates, distance, bottleneck);
* per exogenous input: its value at the origin, its change over the last hour, whether it
  is known, and for a rate in Mbit/s ``log1p(value / level)``.

String meta arrays (sites, regions) come back as integer codes, one column each, for the
model's embeddings (``cards[k]`` codes in column ``k``; code 0 = unknown).

Why absolute time is off: with days, not months, of history a network memorises the
training days through it (Abilene, validation part of the training data: 1 h NMAE ratio
to persistence 0.83 without, 1.07-1.14 with it, over three seeds). The daily and weekly
cycles reach the network through the values a day and a week before each target
(:mod:`shadowcast.forecast.windows`), which carry the local time of each series implicitly.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from shadowcast.forecast.gbm import calendar_terms
from shadowcast.forecast.geo import OFFSET_KEYS
from shadowcast.records import F64

I64 = npt.NDArray[np.int64]


class Covariates:
    """Built at fit from the model's meta and exogenous inputs (its fitted keys)."""

    def __init__(self, model: Any, n: int, absolute_time: bool = False) -> None:
        self.step = int(model.step)
        self.calendar = absolute_time and "calendar" not in model.exclude
        meta = {k: np.asarray(v) for k, v in model.meta.items() if np.shape(v) == (n,)}
        self.offsets = [
            meta[k].astype(np.float64) for k in OFFSET_KEYS if k in meta and absolute_time
        ]
        nums = [meta[k].astype(np.float64) for k in sorted(meta) if meta[k].dtype.kind in "fiub"]
        self.static = np.stack(nums, axis=1) if nums else np.zeros((n, 0))
        codes: list[I64] = []
        self.cards: list[int] = []
        for k in sorted(meta):
            if meta[k].dtype.kind in "fiub":
                continue
            vals = meta[k].astype(str)
            uniq, inv = np.unique(vals, return_inverse=True)
            inv = inv.astype(np.int64) + 1
            inv[vals == ""] = 0
            codes.append(inv)
            self.cards.append(len(uniq))
        self.codes = np.stack(codes, axis=1) if codes else np.zeros((n, 0), dtype=np.int64)
        self.exog = tuple(model.exog_names)
        self._model = model

    def rows(self, t: npt.NDArray[np.integer], o: I64, i: I64, s: F64) -> tuple[F64, I64]:
        """``(numeric [R, F], codes [R, K])`` for origins ``o`` of series ``i``; ``t`` is the
        UNIX time of the first step ahead, ``s`` the series' level at the origin."""
        cols: list[F64] = []
        if self.calendar:
            cols.extend(calendar_terms(t, (1, 2)))
        for off in self.offsets:
            cols.extend(calendar_terms(np.asarray(t, np.float64) + np.round(off[i] * 3600.0), (1,)))
        if self.static.shape[1]:
            cols.extend(self.static[i].T)
        back = o - max(1, 3600 // self.step)
        for name in self.exog:
            x = self._model._xbuf[name]
            now = x[o, i]
            cols.append(now)
            cols.append(np.where(back >= 0, now - x[np.maximum(back, 0), i], np.nan))
            cols.append(np.isfinite(now).astype(np.float64))
            if name.endswith("_mbps"):
                cols.append(np.log1p(np.maximum(now / s, 0.0)))
        num = np.stack(cols, axis=1) if cols else np.zeros((o.size, 0))
        return num, self.codes[i]
