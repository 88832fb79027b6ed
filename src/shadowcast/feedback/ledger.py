"""The forecast ledger: every issued forecast is kept until its target arrives, then scored.

For each horizon label (``15m`` -> 3 steps), every step's forecast of every series (the
stacked (class, OD) series, and the links) is held with the value seen at its origin (what
persistence would have said). When the target step is observed the entry is scored:
absolute error, absolute actual, persistence's absolute error, and per level whether the
actual fell inside the interval and whether it stayed under the upper bound. The running
totals give NMAE, its ratio to persistence and the coverage per (kind, model, horizon);
``rows()`` hands each step's scores to the store's ``accuracy`` table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from shadowcast.records import F64
from shadowcast.store.schema import ACCURACY_SCHEMA


@dataclass
class Score:
    """Running totals for one (kind, model, horizon)."""

    n: int = 0
    abs_err: float = 0.0
    abs_actual: float = 0.0
    abs_err_persist: float = 0.0
    covered: dict[float, int] = field(default_factory=dict)
    under: dict[float, int] = field(default_factory=dict)
    counted: dict[float, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        nmae = self.abs_err / self.abs_actual if self.abs_actual else float("nan")
        pers = self.abs_err_persist / self.abs_actual if self.abs_actual else float("nan")
        out: dict[str, Any] = {
            "n": self.n,
            "nmae": nmae,
            "nmae_persistence": pers,
            "ratio_to_persistence": nmae / pers if pers else float("nan"),
        }
        for lv in sorted(self.counted):
            c = self.counted[lv]
            out[f"coverage_{lv:g}"] = self.covered.get(lv, 0) / c if c else float("nan")
            out[f"upper_coverage_{lv:g}"] = self.under.get(lv, 0) / c if c else float("nan")
        return out


@dataclass(frozen=True, slots=True)
class _Entry:
    model: str
    mean: F64
    lower: Mapping[float, F64]
    upper: Mapping[float, F64]
    persist: F64


class Ledger:
    """Pending forecasts by (kind, horizon label, target step start)."""

    def __init__(self, horizons: Mapping[str, int], step_s: int, max_pending: int = 10_000):
        self.horizons = dict(horizons)
        self.step_s = int(step_s)
        self.max_pending = max_pending
        self._pending: dict[tuple[str, str, int], list[_Entry]] = {}
        self.scores: dict[tuple[str, str, str], Score] = {}
        self._rows: list[dict[str, Any]] = []
        self.dropped = 0

    def issue(
        self,
        kind: str,
        issued_s: int,
        model: str,
        mean: F64,
        lower: Mapping[float, F64],
        upper: Mapping[float, F64],
        persist: F64,
    ) -> None:
        """A forecast ``mean[n, H]`` issued at ``issued_s`` (column ``j`` = the step starting
        ``issued_s + j * step``); ``persist[n]`` is the value seen at the origin."""
        for label, h in self.horizons.items():
            if h > mean.shape[1]:
                continue
            target = issued_s + (h - 1) * self.step_s
            entry = _Entry(
                model,
                mean[:, h - 1].copy(),
                {lv: v[:, h - 1].copy() for lv, v in lower.items()},
                {lv: v[:, h - 1].copy() for lv, v in upper.items()},
                np.asarray(persist, dtype=np.float64).copy(),
            )
            self._pending.setdefault((kind, label, target), []).append(entry)
        if len(self._pending) > self.max_pending:  # targets that never came (gaps)
            oldest = sorted(self._pending, key=lambda k: k[2])[: len(self._pending) // 2]
            for k in oldest:
                self.dropped += len(self._pending.pop(k))

    def observe(self, kind: str, t_s: int, actual: F64) -> None:
        """The actual values of ``kind`` for the step starting at ``t_s``."""
        a = np.asarray(actual, dtype=np.float64)
        for label in self.horizons:
            for e in self._pending.pop((kind, label, t_s), []):
                if e.mean.shape != a.shape:
                    continue
                self._score(kind, label, t_s, e, a)

    def _score(self, kind: str, label: str, t_s: int, e: _Entry, a: F64) -> None:
        sc = self.scores.setdefault((kind, e.model, label), Score())
        err = float(np.abs(e.mean - a).sum())
        act = float(np.abs(a).sum())
        per = float(np.abs(e.persist - a).sum())
        sc.n += a.size
        sc.abs_err += err
        sc.abs_actual += act
        sc.abs_err_persist += per
        row: dict[str, Any] = {
            "time": t_s,
            "kind": kind,
            "model": e.model,
            "horizon_s": self.horizons[label] * self.step_s,
            "n": int(a.size),
            "abs_err": err,
            "abs_actual": act,
            "abs_err_persist": per,
        }
        for lv, up in e.upper.items():
            lo = e.lower.get(lv)
            inside = int(((a <= up) & (a >= lo)).sum()) if lo is not None else 0
            under = int((a <= up).sum())
            sc.counted[lv] = sc.counted.get(lv, 0) + int(a.size)
            sc.covered[lv] = sc.covered.get(lv, 0) + inside
            sc.under[lv] = sc.under.get(lv, 0) + under
            row[f"covered_{lv:g}"] = inside
            row[f"under_{lv:g}"] = under
        self._rows.append(row)

    def take_rows(self) -> list[dict[str, Any]]:
        rows, self._rows = self._rows, []
        return rows

    def summary(self, kinds: Sequence[str] | None = None) -> list[dict[str, Any]]:
        out = []
        for (kind, model, label), sc in sorted(self.scores.items()):
            if kinds is None or kind in kinds:
                out.append({"kind": kind, "model": model, "horizon": label, **sc.as_dict()})
        return out


def accuracy_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Ledger rows as the store's ``accuracy`` table: one row per score and level."""
    out: dict[str, list[Any]] = {f.name: [] for f in ACCURACY_SCHEMA}
    for r in rows:
        levels = sorted(float(k[8:]) for k in r if k.startswith("covered_")) or [0.0]
        for lv in levels:
            out["time"].append(int(r["time"]) * 1000)
            for key in ("kind", "model", "horizon_s", "n", "abs_err", "abs_actual"):
                out[key].append(r[key])
            out["abs_err_persist"].append(r["abs_err_persist"])
            out["level"].append(lv)
            out["covered"].append(r.get(f"covered_{lv:g}", r["n"]))
            out["under"].append(r.get(f"under_{lv:g}", r["n"]))
    cols = {
        f.name: pa.array(out[f.name], pa.int64()).cast(f.type)
        if f.name == "time"
        else pa.array(out[f.name], f.type)
        for f in ACCURACY_SCHEMA
    }
    return pa.table(cols, schema=ACCURACY_SCHEMA)
