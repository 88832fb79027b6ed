"""From forecasts to a Plan: ``make_plan(forecasts, paths, topology) -> Plan``.

Each class is planned at its quantile (by latency sensitivity: high -> p95, medium -> p80,
low -> mean by default; a class's sensitivity is its ``ClassForecast.sensitivity``, else
the taxonomy's), at its peak over the forecast horizon. The LP splits traffic over
candidate paths (latency-sensitive classes only on paths within their bound), with a
churn penalty against the split in force. Churn is bounded (:mod:`shadowcast.plan.churn`):
only splits on a link predicted over ``move_above`` may move, and only to relieve one;
hysteresis keeps the state in force unless the gain is worth it; at most ``max_changes``
(class, OD) splits change per cycle. Classes in ``reserve`` get reservations; what still
exceeds the target after re-routing is shaped from the classes in ``shape``.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from shadowcast.errors import PlanError
from shadowcast.plan.base import LinkOutlook, Plan, Shaping
from shadowcast.plan.churn import cap_changes, rebalance
from shadowcast.plan.config import PlanConfig, parse_quantile
from shadowcast.plan.optimise import normalise_split, solve_min_mlu, utilisation
from shadowcast.plan.paths import PathSet
from shadowcast.plan.reasons import changes as plan_changes
from shadowcast.plan.reasons import overload_probability
from shadowcast.plan.reasons import splits as plan_splits
from shadowcast.records import F64, LATENCY_SENSITIVITY, Forecast, Topology

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClassForecast:
    """Forecast of one traffic class for every OD of the path set: ``mean[n_od, h]``;
    ``sensitivity`` (high/medium/low) overrides the taxonomy's for the class name."""

    cls: str
    forecast: Forecast
    sensitivity: str = ""

    @property
    def latency(self) -> str:
        """The class's latency sensitivity."""
        return self.sensitivity or sensitivity(self.cls)


def wants(option: Sequence[str], f: ClassForecast) -> bool:
    """Whether a ``plan.reserve``/``plan.shape`` list names the class or its sensitivity."""
    return f.cls in option or f.latency in option


def class_quantile(f: ClassForecast, cfg: PlanConfig) -> str:
    """The quantile a class is planned on (``plan.quantiles`` by sensitivity)."""
    return cfg.quantiles.get(f.latency, "mean")


def sensitivity(cls: str) -> str:
    """Latency sensitivity of a class: itself if high/medium/low, the taxonomy's for a
    category, and ``medium`` for anything else (e.g. aggregate OD traffic)."""
    if cls in ("high", "medium", "low"):
        return cls
    return LATENCY_SENSITIVITY.get(cls, "medium")


def sigma(forecast: Forecast) -> F64:
    """Per-entry standard deviation implied by the widest interval (normal approx.)."""
    if not forecast.upper:
        return np.zeros_like(forecast.mean)
    level = max(forecast.upper)
    z = NormalDist().inv_cdf(0.5 + level / 200.0)
    return np.maximum(np.asarray(forecast.upper[level]) - forecast.mean, 0.0) / z


def quantile_demand(forecast: Forecast, spec: str) -> F64:
    """Demand ``[n, h]`` at ``'mean'`` or ``'pNN'``: an exact bound when a level matches
    (p95 is the upper end of the 90 % interval), else a normal approximation."""
    q = parse_quantile(spec)
    if q is None:
        return np.maximum(np.asarray(forecast.mean, dtype=np.float64), 0.0)
    level = 2 * q - 100
    for lv, up in forecast.upper.items():
        if abs(float(lv) - level) < 1e-9:
            return np.maximum(np.asarray(up, dtype=np.float64), 0.0)
    z = NormalDist().inv_cdf(q / 100.0)
    return np.maximum(forecast.mean + z * sigma(forecast), 0.0)


def latency_mask(
    paths: PathSet, sensitivities: Sequence[str], config: PlanConfig
) -> npt.NDArray[np.bool_]:
    """``[C, n_paths]``: the paths each class (by sensitivity) may use under its bound."""
    best = np.minimum.reduceat(paths.latency_ms, paths.od_start[:-1])[paths.path_od]
    out = np.ones((len(sensitivities), paths.n_paths), dtype=bool)
    for c, sens in enumerate(sensitivities):
        stretch = config.latency_stretch.get(sensitivity(sens))
        if stretch is not None:
            out[c] = paths.latency_ms <= best * stretch + config.latency_slack_ms
    return out


def split_matrix(plan: Plan, paths: PathSet, classes: Sequence[str]) -> F64:
    """The plan's splits as ``[C, n_paths]`` over ``paths`` (matched by link tuple); a
    (class, OD) the plan does not cover, or whose path is not a candidate, stays on its
    shortest path. Use it to pass the plan in force as ``current``."""
    where = {p: i for i, p in enumerate(paths.paths)}
    ci = {n: c for c, n in enumerate(classes)}
    x = np.zeros((len(classes), paths.n_paths))
    for s in plan.splits:
        if s.cls in ci and s.links in where:
            x[ci[s.cls], where[s.links]] += s.fraction
    return normalise_split(paths, x)


def make_plan(
    forecasts: Sequence[ClassForecast],
    paths: PathSet,
    topology: Topology,
    config: PlanConfig | None = None,
    *,
    current: F64 | None = None,
    issued: np.datetime64 | None = None,
    step_s: int = 300,
    failed_links: Sequence[int] = (),
) -> Plan:
    """Plan the next horizon. ``current[C, n_paths]`` is the split in force (default:
    shortest path); ``failed_links`` are link indices treated as down (what-if)."""
    cfg = config or PlanConfig()
    if not forecasts:
        raise PlanError("no forecasts to plan from")
    names = [f.cls for f in forecasts]
    n_od = len(paths.od_pairs)
    for f in forecasts:
        if f.forecast.mean.ndim != 2 or f.forecast.mean.shape[0] != n_od:
            raise PlanError(
                f"forecast for {f.cls!r} has shape {f.forecast.mean.shape}, "
                f"expected ({n_od}, horizon)"
            )
    specs = [class_quantile(f, cfg) for f in forecasts]
    qd = np.stack([quantile_demand(f.forecast, s) for f, s in zip(forecasts, specs, strict=True)])
    peak = qd.max(axis=2)  # [C, od]
    horizon = int(qd.shape[2])
    cap = topology.capacities / 1e6
    cap[list(failed_links)] = 0.0
    allowed = latency_mask(paths, [f.latency for f in forecasts], cfg)
    cur = np.tile(paths.shortest_split(), (len(names), 1)) if current is None else current
    cur = normalise_split(paths, cur)
    if failed_links:  # traffic on a failed path must move: the split in force is not an option
        alive = paths.without_links(failed_links)
        cur = normalise_split(paths, np.where(alive[None, :], cur, 0.0))
    allowed[:, ~paths.without_links(failed_links)] = False

    util_cur = utilisation(paths, cap, peak[None], cur)[0]
    notes: list[str] = []
    fixed = np.ones_like(peak, dtype=bool)
    if util_cur.max() < cfg.act_above and not failed_links:
        new = cur
        notes.append(f"quiet: max utilisation {util_cur.max():.0%} < {cfg.act_above:.0%}")
    else:
        hot = util_cur > cfg.move_above
        new, mlu, movable = rebalance(paths, cap, peak, cur, allowed, cfg, hot, notes)
        fixed = ~movable
        if util_cur.max() - mlu < cfg.hysteresis and util_cur.max() <= cfg.target_utilisation:
            new = cur
            notes.append(f"hysteresis: gain {util_cur.max() - mlu:.3f} < {cfg.hysteresis}")
    new = cap_changes(paths, cur, new, peak, cfg.max_changes, notes)
    shapeable = np.array([wants(cfg.shape, f) for f in forecasts])
    new, demand_used, shaping = _shape(
        paths, topology, cap, new, peak, names, cfg, notes, allowed, shapeable, (cur, fixed)
    )
    util_new = utilisation(paths, cap, demand_used[None], new)[0]

    when = issued if issued is not None else np.datetime64("now", "s")
    means = [f.forecast.mean for f in forecasts]
    sigmas = [sigma(f.forecast) for f in forecasts]
    p_over, peak_at = overload_probability(paths, cap, cur, means, sigmas, step_s, when)
    link_names = topology.link_names()
    changes = plan_changes(paths, topology, names, cur, new, util_cur, p_over, peak_at, link_names)
    reserve = [wants(cfg.reserve, f) for f in forecasts]
    splits, reservations = plan_splits(
        paths, topology, names, specs, reserve, new, demand_used, step_s, horizon
    )
    outlook = tuple(
        LinkOutlook(link_names[e], float(util_new[e]), float(util_cur[e]), float(p_over[e]))
        for e in np.argsort(-util_new)[: min(10, len(link_names))]
    )
    return Plan(
        plan_id=uuid.uuid4().hex[:12],
        topology=topology.name,
        issued=str(when) + "Z",
        horizon_s=horizon * step_s,
        method="predictive-lp",
        splits=splits,
        changes=changes,
        reservations=reservations,
        shaping=shaping,
        outlook=outlook,
        mlu_planned=float(util_new.max()),
        mlu_current=float(util_cur.max()),
        notes=tuple(notes),
    )


def _shape(
    paths: PathSet,
    topology: Topology,
    cap: F64,
    split: F64,
    peak: F64,
    names: Sequence[str],
    cfg: PlanConfig,
    notes: list[str],
    allowed: npt.NDArray[np.bool_],
    low: npt.NDArray[np.bool_],
    keep: tuple[F64, npt.NDArray[np.bool_]],
) -> tuple[F64, F64, tuple[Shaping, ...]]:
    """If re-routing leaves a link over capacity, scale the classes that allow delay
    (``low``: in ``plan.shape``) down (bisection on one factor, re-solving the LP with the
    splits ``keep = (current, fixed)`` kept) until the plan fits ``target``.

    Returns the split, the demand it carries, and one limit per (shaped class, hot link).
    """
    util = utilisation(paths, cap, peak[None], split)[0]
    if util.max() <= 1.0 + 1e-9:
        return split, peak, ()
    if not low.any():
        notes.append(f"max utilisation {util.max():.0%}: no class that allows delay to shape")
        return split, peak, ()
    cur, fixed = keep

    warm: list[npt.NDArray[np.bool_] | None] = [None]  # each solve starts from the last's paths

    def solve(f: float) -> tuple[float, F64]:
        d = np.where(low[:, None], peak * f, peak)
        r = solve_min_mlu(
            paths,
            cap,
            d[None],
            allowed=allowed,
            previous=cur,
            fixed=fixed,
            penalty_weight=0.0,
            warm=warm[0],
        )
        warm[0] = r.support
        return r.mlu, r.split

    mlu0, x0 = solve(0.0)
    if mlu0 > cfg.target_utilisation:
        notes.append(f"even without low-priority traffic the max utilisation is {mlu0:.0%}")
        return split, peak, ()
    lo_f, hi_f, best = 0.0, 1.0, x0
    for _ in range(12):
        mid = (lo_f + hi_f) / 2
        m, x = solve(mid)
        if m <= cfg.target_utilisation:
            lo_f, best = mid, x
        else:
            hi_f = mid
    demand = np.where(low[:, None], peak * lo_f, peak)
    hot = np.flatnonzero(utilisation(paths, cap, peak[None], best)[0] > 1.0 + 1e-9)
    inc = paths.incidence()
    link_names = topology.link_names()
    out: list[Shaping] = []
    for e in hot:
        on_e = np.asarray(inc[int(e)].todense()).ravel() > 0
        for c in (int(i) for i in np.flatnonzero(low)):
            limit = float((demand[c, paths.path_od] * best[c] * on_e).sum())
            if limit <= 0:
                continue
            out.append(
                Shaping(
                    names[c],
                    link_names[e],
                    limit,
                    cfg.shaping_duration_s,
                    f"limit {names[c]} on {link_names[e]} to {limit:.0f} Mbit/s for "
                    f"{cfg.shaping_duration_s // 60} min ({1 - lo_f:.0%} deferred): "
                    f"{util[e]:.0%} predicted even after re-routing",
                )
            )
    return best, demand, tuple(out)
