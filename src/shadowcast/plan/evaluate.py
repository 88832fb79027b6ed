"""TE replay: how close each routing policy stays to the per-step optimum on real demand.

The demand series is replayed step by step. A policy evaluated at horizon ``h`` decides at
time ``τ`` with what it has seen up to ``τ`` and its routing is in force at ``t = τ + h``,
where it meets the true matrix ``D[t]``. Policies:

* ``static-sp``: shortest-path routing with per-hop ECMP (no TE);
* ``reactive-lp``: min-MLU LP on the last observed matrix ``D[τ]`` (= persistence);
* ``threshold-reroute``: keeps the installed routing until the measured max utilisation
  of ``D[τ]`` under it crosses ``threshold``, then re-optimises on ``D[τ]`` with a churn
  penalty (Crosswork/Paragon style: act only after the fact);
* ``predictive-lp`` (ours) on persistence forecasts, and ``predictive-best`` on the
  forecaster a backtest on the training part picks (per horizon; the row names it): an LP
  on the forecast for ``t`` made at ``τ`` (at a configured quantile), hedged on the joint
  forecast error and with the convex utilisation penalty so that non-bottleneck links keep
  head-room (:mod:`shadowcast.plan.hedge`: what is picked, and how, on the training part
  only); a new plan replaces the one in force only if it lowers the planned MLU by
  ``plan.hysteresis`` (or brings it under ``plan.target_utilisation``);
* ``oracle``: min-MLU LP on the true ``D[t]``.

Every LP policy uses the same candidate paths (k shortest per OD), so ``oracle`` is the
optimum over that path set and ``MLU / oracle`` >= 1 for the LP policies (the LP is solved
exactly by column generation, :mod:`shadowcast.plan.colgen`). Consecutive solves of a
policy start from the paths the previous one used.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from shadowcast.errors import ConfigError, PlanError
from shadowcast.forecast.enrich import static_inputs
from shadowcast.forecast.keys import present
from shadowcast.network.routing import link_loads, routing_matrix
from shadowcast.plan.config import PlanConfig
from shadowcast.plan.hedge import (
    CANDIDATES,
    Choice,
    ForecasterSpec,
    Hedge,
    Pass,
    Replay,
    choose,
    forecast_pass,
    parse_hedge,
    plan_replay,
    spec_name,
)
from shadowcast.plan.optimise import LPResult, solve_min_mlu, utilisation
from shadowcast.plan.paths import PathSet, candidate_paths
from shadowcast.records import F64, DemandSeries, Topology
from shadowcast.units import parse_duration

log = logging.getLogger(__name__)

METHODS = ("static-sp", "reactive-lp", "threshold-reroute", "predictive-lp", "oracle")


class Progress(Protocol):
    def __call__(self, done: int, total: int) -> None: ...


def parse_horizon(text: str) -> int:
    """``'15m'`` -> 900 seconds (the grammar of :func:`shadowcast.units.parse_duration`)."""
    return parse_duration(text)


def _align(
    history: DemandSeries, test: DemandSeries | None
) -> tuple[F64, npt.NDArray[np.datetime64], int, int, list[tuple[str, str]]]:
    """All values ``[T, n_od]`` (history then test), times, first test index, step and the
    OD pairs. OD pairs may come and go: the columns are the union of both parts' pairs (a
    pair one part lacks is 0 there), less the pairs that never carry demand."""
    v = history.values.astype(np.float64)
    pairs = list(history.od_pairs)
    times = history.times
    t0 = 0
    if test is not None:
        if test.step != history.step:
            raise PlanError(f"test step {test.step}s differs from history step {history.step}s")
        if list(test.od_pairs) != pairs:
            pairs = sorted(set(pairs) | set(test.od_pairs))
        col = {od: i for i, od in enumerate(pairs)}
        parts = []
        for d in (history, test):
            a = np.zeros((d.steps, len(pairs)))
            a[:, [col[od] for od in d.od_pairs]] = d.values
            parts.append(a)
        v = np.vstack(parts)
        times = np.concatenate([history.times, test.times]).astype("datetime64[s]")
        t0 = history.steps
    keep = present(v)
    if not keep.any():
        raise PlanError("no OD pair carries demand")
    if not keep.all():
        log.info("OD pairs without demand left out", extra={"pairs": int((~keep).sum())})
        v, pairs = v[:, keep], [od for od, k in zip(pairs, keep, strict=True) if k]
    return v, times, t0, history.step, pairs


def evaluate_te(
    topology: Topology,
    demands: DemandSeries,
    test: DemandSeries | None = None,
    *,
    horizons: Sequence[str] = ("15m", "1h"),
    forecasters: Sequence[ForecasterSpec] = ("persistence", "best"),
    quantile: str = "mean",
    hedge: str = "auto",
    candidates: Sequence[ForecasterSpec] = CANDIDATES,
    config: PlanConfig | None = None,
    threshold: float = 0.9,
    capacity_scale: float | str = 1.0,
    train_fraction: float = 0.5,
    methods: Sequence[str] = METHODS,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Replay and return one row per (method, horizon); see the module docstring.

    Without ``test`` the first ``train_fraction`` of ``demands`` is history and the rest
    is replayed. ``capacity_scale`` multiplies every capacity; ``"auto"`` scales so that
    the oracle's 95th-percentile MLU over the replay is 0.9 (for networks provisioned far above
    their demand). ``forecasters``: one predictive row each (``"best"``: the one of
    ``candidates`` the training part picks). ``hedge``: ``auto`` (picked on the training
    part), ``mean``, ``saa:K`` or ``saa:K:CHURN_WEIGHT``.
    """
    cfg = config or PlanConfig()
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ConfigError(f"unknown TE method(s) {sorted(unknown)}; choose from {METHODS}")
    fixed_hedge = parse_hedge(hedge)
    raw, times, t0, step, od_pairs = _align(demands, test)
    values = np.nan_to_num(raw)  # unknown demand routes as none; the forecaster sees NaN
    T = values.shape[0]
    if t0 == 0:
        t0 = max(1, int(T * train_fraction))
    hs_s = [parse_horizon(h) for h in horizons]
    hs = [max(1, round(s / step)) for s in hs_s]
    hmax = max(hs)
    if t0 - hmax < 2:
        raise PlanError(f"history of {t0} steps is too short for horizon {hmax} steps")
    predictive = "predictive-lp" in methods and bool(forecasters)
    picking = predictive and (fixed_hedge is None or "best" in forecasters)
    lo = t0 - hmax
    if picking:
        lo = min(lo, t0 - min(round(t0 / 3), max(1, 86400 // step)))
    paths = candidate_paths(
        topology, od_pairs, cfg.k_paths, disjoint=cfg.disjoint, weight=cfg.path_weight
    )
    cap = topology.capacities / 1e6
    active = values.sum(axis=1) > 0
    n_fc = len(forecasters) + (len(candidates) if picking else 0)
    n_work = (T - lo) + (T - t0) * len(hs) * (2 + len(forecasters) + n_fc) + hmax
    done = 0

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(min(done, n_work), n_work)

    # Per-step optimum on the true matrix (reactive reuses these; the picking replays too).
    opt: dict[int, LPResult] = {}
    warm = None
    for t in range(max(0, lo), T):
        opt[t] = solve_min_mlu(paths, cap, values[t], warm=warm)
        warm = opt[t].support
        tick()
    oracle_mlu = np.array([opt[t].mlu for t in range(t0, T)])
    if capacity_scale == "auto":
        top = float(np.percentile(oracle_mlu[active[t0:]], 95))
        scale = top / 0.9 if top > 0 else 1.0
    else:
        scale = float(capacity_scale)
    if scale <= 0:
        raise ConfigError(f"capacity_scale must be positive, got {capacity_scale}")
    cap = cap * scale
    oracle_mlu = oracle_mlu / scale
    ctx = _Ctx(paths, cap, values, t0, step, active, oracle_mlu, times, raw)
    ctx.meta = static_inputs([f"{a}->{b}" for a, b in od_pairs], topology=topology)
    rp = Replay(paths, cap, values, opt, scale)
    choice = Choice()
    if picking:
        choice = choose(
            rp,
            raw,
            times,
            step,
            t0,
            hs,
            cfg,
            candidates=candidates,
            fixed_hedge=fixed_hedge,
            quantile=quantile,
            meta=ctx.meta,
            tick=tick,
        )
    passes = _passes(ctx, forecasters, choice, hs, quantile, tick) if predictive else {}

    rows: list[dict[str, Any]] = []
    for h, label in zip(hs, horizons, strict=True):
        for method in methods:
            if method == "static-sp":
                rp_ = routing_matrix(topology, od_pairs)
                util = link_loads(rp_, values[t0:]) / cap
                rows.append(ctx.row(method, label, util, churn=0.0, ms=[]))
            elif method == "oracle":
                splits = [opt[t].split for t in range(t0, T)]
                rows.append(
                    ctx.from_splits(method, label, splits, [opt[t].solve_ms for t in range(t0, T)])
                )
            elif method == "reactive-lp":
                splits = [opt[t - h].split for t in range(t0, T)]
                rows.append(
                    ctx.from_splits(
                        method, label, splits, [opt[t - h].solve_ms for t in range(t0, T)]
                    )
                )
                tick(T - t0)
            elif method == "threshold-reroute":
                rows.append(_threshold(ctx, label, h, threshold, cfg, tick))
            else:
                for spec in forecasters:
                    hg = fixed_hedge or choice.hedge.get(h, Hedge(0))
                    rows.append(
                        _predictive(
                            ctx, rp, label, h, spec, passes, choice, hg, quantile, cfg, tick
                        )
                    )
    for r in rows:
        r["capacity_scale"] = scale
    return rows


def _passes(
    ctx: _Ctx,
    forecasters: Sequence[ForecasterSpec],
    choice: Choice,
    hs: Sequence[int],
    quantile: str,
    tick: Callable[[int], None],
) -> dict[str, Pass]:
    """One forecast pass over the replay per forecaster used (``best`` resolved)."""
    keys = tuple(f"{a}->{b}" for a, b in ctx.paths.od_pairs)
    window = (ctx.t0 - max(hs), ctx.values.shape[0] - min(hs))
    specs: dict[str, ForecasterSpec] = {}
    for spec in forecasters:
        if spec == "best":
            for h in hs:
                name = choice.forecaster.get(h, "persistence")
                specs[name] = name
        else:
            specs[spec_name(spec)] = spec
    return {
        name: forecast_pass(
            spec, ctx.raw, ctx.times, ctx.step, keys, window, hs, quantile, tick, meta=ctx.meta
        )
        for name, spec in specs.items()
    }


class _Ctx:
    def __init__(
        self,
        paths: PathSet,
        cap: F64,
        values: F64,
        t0: int,
        step: int,
        active: np.ndarray[Any, np.dtype[np.bool_]],
        oracle_mlu: F64,
        times: npt.NDArray[np.datetime64],
        raw: F64,
    ) -> None:
        self.paths, self.cap, self.values, self.t0, self.step = paths, cap, values, t0, step
        self.active, self.oracle_mlu, self.times, self.raw = active, oracle_mlu, times, raw
        self.meta: dict[str, npt.NDArray[np.generic]] = {}  # the forecaster's static inputs

    def from_splits(
        self, method: str, label: str, splits: Sequence[F64], ms: Sequence[float]
    ) -> dict[str, Any]:
        util = np.vstack(
            [
                utilisation(self.paths, self.cap, self.values[self.t0 + i], x)[0]
                for i, x in enumerate(splits)
            ]
        )
        d = self.values[self.t0 :]
        moved = [0.0]
        for i in range(1, len(splits)):
            dx = 0.5 * np.abs(splits[i][0] - splits[i - 1][0]) * d[i][self.paths.path_od]
            moved.append(float(dx.sum() / max(d[i].sum(), 1e-12)))
        return self.row(method, label, util, churn=float(np.mean(moved)), ms=ms)

    def row(
        self, method: str, label: str, util: F64, churn: float, ms: Sequence[float]
    ) -> dict[str, Any]:
        act = self.active[self.t0 :]
        mlu = util.max(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(self.oracle_mlu > 0, mlu / self.oracle_mlu, 1.0)[act]
        minutes = self.step / 60.0
        return {
            "method": method,
            "horizon": label,
            "steps": int(act.sum()),
            "mlu_ratio_mean": float(ratio.mean()) if ratio.size else float("nan"),
            "mlu_ratio_p95": float(np.percentile(ratio, 95)) if ratio.size else float("nan"),
            "mlu_mean": float(mlu[act].mean()) if act.any() else float("nan"),
            "overload_steps_90": int((mlu[act] >= 0.9).sum()),
            "overload_steps_100": int((mlu[act] >= 1.0).sum()),
            "overload_link_minutes_90": float((util[act] >= 0.9).sum() * minutes),
            "overload_link_minutes_100": float((util[act] >= 1.0).sum() * minutes),
            "churn": churn,
            "solve_ms_median": float(np.median(ms)) if len(ms) else 0.0,
        }


def _threshold(
    ctx: _Ctx, label: str, h: int, threshold: float, cfg: PlanConfig, tick: Callable[[int], None]
) -> dict[str, Any]:
    installed = ctx.paths.shortest_split()[None, :]
    decided: dict[int, F64] = {}
    ms: list[float] = []
    T = ctx.values.shape[0]
    warm = None
    for tau in range(ctx.t0 - h, T - h):
        measured = utilisation(ctx.paths, ctx.cap, ctx.values[tau], installed)[0].max()
        if measured >= threshold:
            res = solve_min_mlu(
                ctx.paths,
                ctx.cap,
                ctx.values[tau],
                previous=installed,
                churn_weight=max(cfg.churn_weight, 1e-3),
                warm=warm,
            )
            ms.append(res.solve_ms)
            installed, warm = res.split, res.support
        decided[tau + h] = installed
        tick(1)
    splits = [decided[t] for t in range(ctx.t0, T)]
    row = ctx.from_splits("threshold-reroute", label, splits, ms)
    row["reroutes"] = len(ms)
    return row


def _predictive(
    ctx: _Ctx,
    rp: Replay,
    label: str,
    h: int,
    spec: ForecasterSpec,
    passes: dict[str, Pass],
    choice: Choice,
    hedge: Hedge,
    quantile: str,
    cfg: PlanConfig,
    tick: Callable[[int], None],
) -> dict[str, Any]:
    name = choice.forecaster.get(h, "persistence") if spec == "best" else spec_name(spec)
    fc = passes[name]
    T = ctx.values.shape[0]
    seed = choice.seed.get((name, h))
    splits, ms = plan_replay(rp, fc, h, (ctx.t0, T), hedge, cfg, seed=seed, tick=tick)
    method = "predictive-best" if spec == "best" else "predictive-lp"
    row = ctx.from_splits(method, label, splits, ms)
    row["forecaster"] = name
    row["quantile"] = quantile
    row["hedge"] = hedge.name
    row["forecast_seconds"] = round(fc.seconds, 2)
    if choice.window != (0, 0):
        row["picked"] = choice.describe(h)
    return row
