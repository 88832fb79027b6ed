"""Traffic classes for planning, from stored per-application forecasts.

A stored forecast subject is ``src->dst`` (all traffic: class ``all``) or ``src->dst/app``
(per application, from ``shadowcast forecast --by-app``). An application's class is its
category in the profile taxonomy (the label itself when it is a category, else the
application map's category, ``unknown`` when it has none); the class's latency
sensitivity is the taxonomy's. Applications of one class are added up per OD pair: the
means add, and so do the interval bounds (the comonotone sum, an upper bound of the sum's
quantile: planning errs on the safe side).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from shadowcast.errors import PlanError
from shadowcast.plan.config import PlanConfig
from shadowcast.plan.planner import ClassForecast, class_quantile, quantile_demand, wants
from shadowcast.records import F64, Forecast

ALL = "all"


@dataclass(frozen=True, slots=True)
class ClassSummary:
    """How one class is planned (what ``shadowcast plan --json`` reports under
    ``classes``)."""

    name: str
    sensitivity: str
    quantile: str
    reserve: bool
    shape: bool
    od_pairs: int
    planned_mbps: float  # sum over OD pairs of the peak planned demand

    def to_dict(self) -> dict[str, Any]:
        return {
            "class": self.name,
            "sensitivity": self.sensitivity,
            "quantile": self.quantile,
            "reserve": self.reserve,
            "shape": self.shape,
            "od_pairs": self.od_pairs,
            "planned_mbps": round(self.planned_mbps, 3),
        }


def parse_subject(key: str) -> tuple[str, str, str]:
    """``"A->B/web"`` -> ``("A", "B", "web")``; ``"A->B"`` -> ``("A", "B", "")``."""
    src, sep, rest = key.partition("->")
    dst, _, app = rest.partition("/")
    if not sep or not src or not dst:
        raise PlanError(f"stored forecast subject {key!r} is not src->dst[/app]")
    return src, dst, app


def class_forecasts(
    keys: Sequence[str],
    forecast: Forecast,
    *,
    category_of: Callable[[str], str],
    taxonomy: Mapping[str, str],
) -> tuple[list[tuple[str, str]], list[ClassForecast]]:
    """``(od_pairs, one ClassForecast per class)`` from per-subject forecast rows; OD pairs
    sorted, a class without a forecast for an OD pair carries 0 there."""
    parsed = [parse_subject(k) for k in keys]
    ods = sorted({(s, d) for s, d, _ in parsed})
    at = {od: i for i, od in enumerate(ods)}
    apps = sorted({a for _, _, a in parsed})
    cls_of = {a: (category_of(a) if a else ALL) for a in apps}
    names = sorted(set(cls_of.values()))
    ci = {c: i for i, c in enumerate(names)}
    row_od = np.array([at[(s, d)] for s, d, _ in parsed], dtype=np.int64)
    row_cls = np.array([ci[cls_of[a]] for _, _, a in parsed], dtype=np.int64)
    h = forecast.mean.shape[1]

    def per_class(values: F64) -> F64:
        out = np.zeros((len(names), len(ods), h))
        np.add.at(out, (row_cls, row_od), np.asarray(values, dtype=np.float64))
        return out

    mean = per_class(forecast.mean)
    lower = {lv: per_class(v) for lv, v in forecast.lower.items()}
    upper = {lv: per_class(v) for lv, v in forecast.upper.items()}
    out = [
        ClassForecast(
            name,
            Forecast(
                mean=mean[c],
                lower={lv: v[c] for lv, v in lower.items()},
                upper={lv: v[c] for lv, v in upper.items()},
                model=forecast.model,
            ),
            sensitivity=str(taxonomy.get(name, "")) if name != ALL else "",
        )
        for c, name in enumerate(names)
    ]
    return ods, out


def summarise(forecasts: Sequence[ClassForecast], cfg: PlanConfig) -> list[ClassSummary]:
    """One line per class: sensitivity, quantile planned, reservation, shaping, volume."""
    out = []
    for f in forecasts:
        spec = class_quantile(f, cfg)
        peak = quantile_demand(f.forecast, spec).max(axis=1)
        out.append(
            ClassSummary(
                f.cls,
                f.latency,
                spec,
                wants(cfg.reserve, f),
                wants(cfg.shape, f),
                int((peak > 0).sum()),
                float(peak.sum()),
            )
        )
    return out
