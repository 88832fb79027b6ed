"""Rolling accuracy of every scored forecast, per series, summed into any grouping on demand.

For each (kind, model, horizon label) the ledger hands over, per target step, the forecast
of every series (mean, bounds per level), what persistence said at the origin and the
realised value. Per series, exponentially weighted sums (half-life ``halflife_steps``) are
kept of:

* ``|e|`` (absolute error), ``e`` (signed error, for the bias), ``|y|`` (absolute actual),
  ``|e_persist|`` (persistence's absolute error on the same points);
* per level ``L``: inside the interval (coverage), under the upper bound, and the interval
  score ``(u - l) + 2/a (l - y)[y < l] + 2/a (y - u)[y > u]`` with ``a = 1 - L/100``
  (Gneiting & Raftery 2007: width plus a penalty for every miss).

``metrics(by=...)`` sums them over series groups (``None``: everything; ``"decile"``: the
series' current volume decile; or a named grouping given at construction: class, OD pair,
link, site) and gives per group::

    nmae           = sum |e| / sum |y|
    mase           = sum |e| / sum |e_persist|     (< 1: better than persistence)
    bias           = sum e / sum |y|               (e = actual - forecast: > 0 falls short)
    coverage_L     = share of actuals inside the L % interval
    interval_score_L = sum IS_L / sum |y|          (scale-free: lower is better)

Everything is vectorised over series (``np.bincount`` per grouping).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from shadowcast.records import F64

I64 = npt.NDArray[np.int64]
DECILES = 10


@dataclass
class _Sums:
    """EW sums per series for one (kind, model, horizon)."""

    n: int
    levels: tuple[float, ...]
    w: F64 = field(init=False)
    abs_err: F64 = field(init=False)
    err: F64 = field(init=False)
    abs_actual: F64 = field(init=False)
    abs_persist: F64 = field(init=False)
    inside: dict[float, F64] = field(init=False)
    under: dict[float, F64] = field(init=False)
    score: dict[float, F64] = field(init=False)
    scored: int = 0

    def __post_init__(self) -> None:
        z = np.zeros(self.n)
        self.w, self.abs_err, self.err = z.copy(), z.copy(), z.copy()
        self.abs_actual, self.abs_persist = z.copy(), z.copy()
        self.inside = {lv: z.copy() for lv in self.levels}
        self.under = {lv: z.copy() for lv in self.levels}
        self.score = {lv: z.copy() for lv in self.levels}

    def arrays(self) -> dict[str, F64]:
        out = {
            "w": self.w,
            "abs_err": self.abs_err,
            "err": self.err,
            "abs_actual": self.abs_actual,
            "abs_persist": self.abs_persist,
        }
        for lv in self.levels:
            out[f"inside_{lv:g}"] = self.inside[lv]
            out[f"under_{lv:g}"] = self.under[lv]
            out[f"score_{lv:g}"] = self.score[lv]
        return out


def interval_score(y: F64, lo: F64, hi: F64, level: float, mean: F64 | None = None) -> F64:
    """Gneiting-Raftery interval score of ``[lo, hi]`` at ``level`` % for actuals ``y``.
    Where ``lo`` is not finite (an upper bound only, as for links) the width counts from
    ``mean`` and only misses above are penalised."""
    a = 1.0 - level / 100.0
    two_sided = np.isfinite(lo)
    base = lo if mean is None else np.where(two_sided, lo, mean)
    below = np.where(two_sided, np.clip(np.nan_to_num(lo) - y, 0.0, None), 0.0)
    above = np.clip(y - hi, 0.0, None)
    return np.asarray((hi - base) + (2.0 / a) * (below + above), dtype=np.float64)


class RollingAccuracy:
    """EW accuracy sums per series and (kind, model, horizon); see the module docstring."""

    def __init__(
        self,
        sizes: Mapping[str, int],
        levels: Sequence[float],
        *,
        halflife_steps: float = 288.0,
        groupings: Mapping[str, Mapping[str, tuple[I64, Sequence[str]]]] | None = None,
    ) -> None:
        self.sizes = dict(sizes)  # kind -> number of series
        self.levels = tuple(float(x) for x in levels)
        self.decay = float(0.5 ** (1.0 / max(halflife_steps, 1.0)))
        # kind -> grouping name -> (group code per series, group names)
        self.groupings = {k: dict(v) for k, v in (groupings or {}).items()}
        self.sums: dict[tuple[str, str, str], _Sums] = {}
        self.volume: dict[str, F64] = {k: np.zeros(n) for k, n in self.sizes.items()}

    def update(
        self,
        kind: str,
        model: str,
        label: str,
        actual: F64,
        mean: F64,
        persist: F64,
        lower: Mapping[float, F64],
        upper: Mapping[float, F64],
    ) -> None:
        """One target step's forecasts of every series of ``kind`` against ``actual``."""
        n = self.sizes.get(kind)
        if n is None or actual.shape != (n,):
            return
        s = self.sums.get((kind, model, label))
        if s is None:
            s = self.sums[(kind, model, label)] = _Sums(n, self.levels)
        ok = np.isfinite(actual) & np.isfinite(mean)
        y = np.where(ok, actual, 0.0)
        e = np.where(ok, y - mean, 0.0)
        d = self.decay
        w = ok.astype(np.float64)
        s.w *= d
        s.w += w
        for arr, new in (
            (s.abs_err, np.abs(e)),
            (s.err, e),
            (s.abs_actual, np.abs(y)),
            (s.abs_persist, np.where(ok, np.abs(np.nan_to_num(persist) - y), 0.0)),
        ):
            arr *= d
            arr += new
        for lv in self.levels:
            hi = upper.get(lv)
            if hi is None:
                continue
            lo = lower.get(lv, np.full(n, -np.inf))
            s.inside[lv] *= d
            s.inside[lv] += w * ((y >= lo) & (y <= hi))
            s.under[lv] *= d
            s.under[lv] += w * (y <= hi)
            s.score[lv] *= d
            s.score[lv] += np.where(ok, interval_score(y, lo, hi, lv, mean), 0.0)
        vol = self.volume[kind]
        vol *= d
        vol += (1.0 - d) * np.abs(y)
        s.scored += 1

    def deciles(self, kind: str) -> I64:
        """Each series' volume decile (0: the smallest tenth) from its recent actuals."""
        vol = self.volume.get(kind)
        if vol is None or vol.size == 0:
            return np.zeros(0, dtype=np.int64)
        rank = np.argsort(np.argsort(vol, kind="stable"), kind="stable")
        return np.asarray(rank * DECILES // max(vol.size, 1), dtype=np.int64)

    def _codes(self, kind: str, by: str | None) -> tuple[I64, list[str]]:
        n = self.sizes[kind]
        if by is None:
            return np.zeros(n, dtype=np.int64), ["all"]
        if by == "decile":
            return self.deciles(kind), [f"d{i + 1}" for i in range(DECILES)]
        got = self.groupings.get(kind, {}).get(by)
        if got is None:
            known = ["decile", *sorted(self.groupings.get(kind, {}))]
            raise KeyError(f"no grouping {by!r} for {kind!r} (known: {', '.join(known)})")
        return np.asarray(got[0], dtype=np.int64), list(got[1])

    def metrics(
        self,
        kind: str,
        by: str | None = None,
        model: str | None = None,
        label: str | None = None,
    ) -> list[dict[str, Any]]:
        """Rows ``{kind, model, horizon, group, n, nmae, mase, bias, coverage_L,
        upper_coverage_L, interval_score_L}`` per (model, horizon) and group."""
        rows: list[dict[str, Any]] = []
        if kind not in self.sizes:
            return rows
        codes, names = self._codes(kind, by)
        for (k, m, lb), s in sorted(self.sums.items()):
            if k != kind or model not in (None, m) or label not in (None, lb):
                continue
            sums = {
                name: np.bincount(codes, weights=arr, minlength=len(names)).astype(np.float64)
                for name, arr in s.arrays().items()
            }
            for g, gname in enumerate(names):
                rows.append({"kind": k, "model": m, "horizon": lb, "group": gname,
                             **_figures(sums, g, self.levels)})  # fmt: skip
        return rows


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else float("nan")


def _figures(sums: Mapping[str, F64], g: int, levels: Sequence[float]) -> dict[str, Any]:
    w, act = float(sums["w"][g]), float(sums["abs_actual"][g])
    out: dict[str, Any] = {
        "weight": round(w, 3),
        "nmae": _ratio(float(sums["abs_err"][g]), act),
        "mase": _ratio(float(sums["abs_err"][g]), float(sums["abs_persist"][g])),
        "bias": _ratio(float(sums["err"][g]), act),
    }
    for lv in levels:
        out[f"coverage_{lv:g}"] = _ratio(float(sums[f"inside_{lv:g}"][g]), w)
        out[f"upper_coverage_{lv:g}"] = _ratio(float(sums[f"under_{lv:g}"][g]), w)
        out[f"interval_score_{lv:g}"] = _ratio(float(sums[f"score_{lv:g}"][g]), act)
    return out
