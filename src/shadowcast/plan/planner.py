"""From forecasts to a Plan: ``make_plan(forecasts, paths, topology) -> Plan``.

Each class is planned at its quantile (by latency sensitivity: high -> p95, medium -> p80,
low -> mean by default), at its peak over the forecast horizon. The LP splits traffic over
candidate paths (latency-sensitive classes only on paths within their bound), with a
churn penalty against the split in force; hysteresis keeps the state in force unless the
gain is worth it; at most ``max_changes`` (class, OD) splits change per cycle; what still
exceeds the target after re-routing is shaped from low-sensitivity classes.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from shadowcast.errors import PlanError
from shadowcast.plan.base import Change, LinkOutlook, PathSplit, Plan, Reservation, Shaping
from shadowcast.plan.config import PlanConfig, parse_quantile
from shadowcast.plan.optimise import normalise_split, solve_min_mlu, utilisation
from shadowcast.plan.paths import PathSet
from shadowcast.records import F64, LATENCY_SENSITIVITY, Forecast, Topology

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ClassForecast:
    """Forecast of one traffic class for every OD of the path set: ``mean[n_od, h]``."""

    cls: str
    forecast: Forecast


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
    paths: PathSet, classes: Sequence[str], config: PlanConfig
) -> npt.NDArray[np.bool_]:
    """``[C, n_paths]``: the paths each class may use under its latency bound."""
    best = np.minimum.reduceat(paths.latency_ms, paths.od_start[:-1])[paths.path_od]
    out = np.ones((len(classes), paths.n_paths), dtype=bool)
    for c, name in enumerate(classes):
        stretch = config.latency_stretch.get(sensitivity(name))
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
    specs = [cfg.quantiles.get(sensitivity(n), "mean") for n in names]
    qd = np.stack([quantile_demand(f.forecast, s) for f, s in zip(forecasts, specs, strict=True)])
    peak = qd.max(axis=2)  # [C, od]
    horizon = int(qd.shape[2])
    cap = topology.capacities / 1e6
    cap[list(failed_links)] = 0.0
    allowed = latency_mask(paths, names, cfg)
    cur = np.tile(paths.shortest_split(), (len(names), 1)) if current is None else current
    cur = normalise_split(paths, cur)
    if failed_links:  # traffic on a failed path must move: the split in force is not an option
        alive = paths.without_links(failed_links)
        cur = normalise_split(paths, np.where(alive[None, :], cur, 0.0))
    allowed[:, ~paths.without_links(failed_links)] = False

    res = solve_min_mlu(
        paths,
        cap,
        peak[None],
        allowed=allowed,
        previous=cur,
        churn_weight=cfg.churn_weight,
        penalty_weight=cfg.penalty_weight,
    )
    util_cur = utilisation(paths, cap, peak[None], cur)[0]
    notes: list[str] = []
    new = res.split
    if util_cur.max() < cfg.act_above and not failed_links:
        new = cur
        notes.append(f"quiet: max utilisation {util_cur.max():.0%} < {cfg.act_above:.0%}")
    elif util_cur.max() - res.mlu < cfg.hysteresis and util_cur.max() <= cfg.target_utilisation:
        new = cur
        notes.append(f"hysteresis: gain {util_cur.max() - res.mlu:.3f} < {cfg.hysteresis}")
    new = _cap_changes(paths, cur, new, peak, cfg.max_changes, notes)
    new, demand_used, shaping = _shape(paths, topology, cap, new, peak, names, cfg, notes, allowed)
    util_new = utilisation(paths, cap, demand_used[None], new)[0]

    when = issued if issued is not None else np.datetime64("now", "s")
    p_over, peak_at = _overload_probability(paths, cap, cur, forecasts, step_s, when)
    link_names = topology.link_names()
    changes = _changes(paths, topology, names, cur, new, util_cur, p_over, peak_at, link_names)
    splits, reservations = _splits(paths, topology, names, specs, new, demand_used, step_s, horizon)
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


def _cap_changes(
    paths: PathSet, cur: F64, new: F64, peak: F64, cap_n: int, notes: list[str]
) -> F64:
    moved = 0.5 * np.abs(np.add.reduceat(np.abs(new - cur), paths.od_start[:-1], axis=1))
    changed = np.argwhere(moved > 1e-3)
    if len(changed) <= cap_n:
        return new
    weight = moved[changed[:, 0], changed[:, 1]] * peak[changed[:, 0], changed[:, 1]]
    drop = changed[np.argsort(-weight)[cap_n:]]
    out = new.copy()
    for c, k in drop:
        sl = slice(int(paths.od_start[k]), int(paths.od_start[k + 1]))
        out[c, sl] = cur[c, sl]
    notes.append(f"max_changes: kept the {cap_n} largest of {len(changed)} changes")
    return out


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
) -> tuple[F64, F64, tuple[Shaping, ...]]:
    """If re-routing leaves a link over capacity, scale the low-sensitivity classes down
    (bisection on one factor, re-solving the LP) until the plan fits ``target``.

    Returns the split, the demand it carries, and one limit per (low class, hot link).
    """
    util = utilisation(paths, cap, peak[None], split)[0]
    if util.max() <= 1.0 + 1e-9:
        return split, peak, ()
    low = np.array([sensitivity(n) == "low" for n in names])
    if not low.any():
        notes.append(f"max utilisation {util.max():.0%}: no low-priority class to shape")
        return split, peak, ()

    def solve(f: float) -> tuple[float, F64]:
        d = np.where(low[:, None], peak * f, peak)
        r = solve_min_mlu(paths, cap, d[None], allowed=allowed, penalty_weight=0.0)
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


def _overload_probability(
    paths: PathSet,
    cap: F64,
    split: F64,
    forecasts: Sequence[ClassForecast],
    step_s: int,
    issued: np.datetime64,
) -> tuple[F64, list[str]]:
    """P(load >= capacity) per link at its worst horizon step (normal approx., independent
    ODs), and the time of that step."""
    inc = paths.incidence()
    mean = sum(
        inc @ (f.forecast.mean[paths.path_od] * split[c][:, None]) for c, f in enumerate(forecasts)
    )
    var = sum(
        inc @ ((sigma(f.forecast)[paths.path_od] * split[c][:, None]) ** 2)
        for c, f in enumerate(forecasts)
    )
    m, sd = np.asarray(mean), np.sqrt(np.asarray(var))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (cap[:, None] - m) / sd, np.where(m >= cap[:, None], -np.inf, np.inf))
    p = ndtr(-z)  # [E, h]
    worst = np.argmax(p + 1e-12 * m, axis=1)
    at = [str(issued + np.timedelta64(int((w + 1) * step_s), "s"))[11:16] for w in worst]
    return p[np.arange(len(cap)), worst], at


def _via(nodes: tuple[str, ...]) -> str:
    return "-".join(nodes[1:-1]) if len(nodes) > 2 else "direct"


def _changes(
    paths: PathSet,
    topology: Topology,
    names: Sequence[str],
    cur: F64,
    new: F64,
    util_cur: F64,
    p_over: F64,
    peak_at: list[str],
    link_names: list[str],
) -> tuple[Change, ...]:
    out: list[Change] = []
    for c, k in np.argwhere(np.add.reduceat(np.abs(new - cur), paths.od_start[:-1], axis=1) > 2e-3):
        sl = range(int(paths.od_start[k]), int(paths.od_start[k + 1]))
        gain = max(sl, key=lambda p: new[c, p] - cur[c, p])
        loss = [p for p in sl if cur[c, p] - new[c, p] > 1e-3]
        hot_links = {e for p in loss for e in paths.paths[p]} - set(paths.paths[gain])
        s, d = paths.od_pairs[k]
        nodes = paths.nodes_of(gain, topology)
        pct = 100 * (new[c, gain] - cur[c, gain])
        why = "spreading load"
        if hot_links:
            e = max(hot_links, key=lambda i: util_cur[i])
            a, b = link_names[e].split("->")[:2]
            why = (
                f"{a}-{b.split('#')[0]} predicted {util_cur[e]:.0%} at {peak_at[e]}, "
                f"p(>=100 %) = {p_over[e]:.2f}"
            )
        reason = f"move {pct:.0f} % of {names[c]} {s}->{d} to the {_via(nodes)} path: {why}"
        for p in sl:
            if abs(new[c, p] - cur[c, p]) > 1e-3:
                out.append(
                    Change(
                        names[c],
                        s,
                        d,
                        paths.nodes_of(p, topology),
                        float(cur[c, p]),
                        float(new[c, p]),
                        reason,
                    )
                )
    return tuple(out)


def _splits(
    paths: PathSet,
    topology: Topology,
    names: Sequence[str],
    specs: Sequence[str],
    split: F64,
    demand: F64,
    step_s: int,
    horizon: int,
) -> tuple[tuple[PathSplit, ...], tuple[Reservation, ...]]:
    splits: list[PathSplit] = []
    res: list[Reservation] = []
    for c, p in np.argwhere(split > 1e-6):
        k = int(paths.path_od[p])
        s, d = paths.od_pairs[k]
        nodes = paths.nodes_of(int(p), topology)
        frac = float(split[c, p])
        splits.append(
            PathSplit(
                names[c],
                s,
                d,
                paths.paths[p],
                nodes,
                frac,
                float(demand[c, k]),
                float(paths.latency_ms[p]),
            )
        )
        mbps = frac * float(demand[c, k])
        if sensitivity(names[c]) == "high" and mbps > 0:
            res.append(
                Reservation(
                    names[c],
                    s,
                    d,
                    nodes,
                    paths.paths[p],
                    mbps,
                    specs[c],
                    f"reserve {mbps:.0f} Mbit/s for {names[c]} {s}->{d} on "
                    f"the {_via(nodes)} path ({specs[c]} over the next "
                    f"{horizon * step_s // 60} min)",
                )
            )
    # Fractions below the threshold were dropped: renormalise the kept ones.
    totals: dict[tuple[str, str, str], float] = {}
    for sp_ in splits:
        totals[(sp_.cls, sp_.src, sp_.dst)] = (
            totals.get((sp_.cls, sp_.src, sp_.dst), 0) + sp_.fraction
        )
    splits = [
        PathSplit(
            x.cls,
            x.src,
            x.dst,
            x.links,
            x.nodes,
            x.fraction / totals[(x.cls, x.src, x.dst)],
            x.demand_mbps,
            x.latency_ms,
        )
        for x in splits
    ]
    return tuple(splits), tuple(res)
