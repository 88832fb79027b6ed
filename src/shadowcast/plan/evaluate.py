"""TE replay: how close each routing policy stays to the per-step optimum on real demand.

The demand series is replayed step by step. A policy evaluated at horizon ``h`` decides at
time ``τ`` with what it has seen up to ``τ`` and its routing is in force at ``t = τ + h``,
where it meets the true matrix ``D[t]``. Policies:

* ``static-sp``: shortest-path routing with per-hop ECMP (no TE);
* ``reactive-lp``: min-MLU LP on the last observed matrix ``D[τ]`` (= persistence);
* ``threshold-reroute``: keeps the installed routing until the measured max utilisation
  of ``D[τ]`` under it crosses ``threshold``, then re-optimises on ``D[τ]`` with a churn
  penalty (Crosswork/Paragon style: act only after the fact);
* ``predictive-lp`` (ours): LP on the forecast for ``t`` (at a configured quantile) made
  at ``τ`` by a ``Forecaster`` (the forecast stage's models), with the convex utilisation
  penalty so that non-bottleneck links keep head-room;
* ``oracle``: min-MLU LP on the true ``D[t]``.

Every LP policy uses the same candidate paths (k shortest per OD), so ``oracle`` is the
optimum over that path set and ``MLU / oracle`` >= 1 for the LP policies.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

from shadowcast.errors import ConfigError, PlanError
from shadowcast.forecast.base import Forecaster
from shadowcast.forecast.enrich import static_inputs
from shadowcast.forecast.keys import present
from shadowcast.network.routing import link_loads, routing_matrix
from shadowcast.plan.config import PlanConfig
from shadowcast.plan.optimise import solve_min_mlu, utilisation
from shadowcast.plan.paths import PathSet, candidate_paths
from shadowcast.plan.planner import quantile_demand
from shadowcast.records import F64, DemandSeries, SeriesFrame, Topology
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


ForecasterSpec = str | Callable[[], Forecaster]


def _make_forecaster(spec: ForecasterSpec, horizons_s: Sequence[int]) -> Forecaster:
    if callable(spec):
        return spec()
    from shadowcast.forecast.registry import make_model  # the forecast stage's registry

    model: Forecaster = make_model(spec, horizons=[int(h) for h in horizons_s])
    return model


def evaluate_te(
    topology: Topology,
    demands: DemandSeries,
    test: DemandSeries | None = None,
    *,
    horizons: Sequence[str] = ("15m", "1h"),
    forecaster: ForecasterSpec = "persistence",
    quantile: str = "mean",
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
    their demand; ratios to the oracle do not depend on it).
    """
    cfg = config or PlanConfig()
    unknown = set(methods) - set(METHODS)
    if unknown:
        raise ConfigError(f"unknown TE method(s) {sorted(unknown)}; choose from {METHODS}")
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
    paths = candidate_paths(
        topology, od_pairs, cfg.k_paths, disjoint=cfg.disjoint, weight=cfg.path_weight
    )
    cap = topology.capacities / 1e6
    active = values.sum(axis=1) > 0
    n_work = (T - t0) * (1 + len(hs) * 3) + hmax
    done = 0

    def tick(n: int = 1) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, n_work)

    # Per-step optimum on the true matrix, from t0 - hmax (reactive reuses these).
    opt: dict[int, Any] = {}
    for t in range(t0 - hmax, T):
        opt[t] = solve_min_mlu(paths, cap, values[t])
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

    rows: list[dict[str, Any]] = []
    for h, label in zip(hs, horizons, strict=True):
        for method in methods:
            if method == "static-sp":
                rp = routing_matrix(topology, od_pairs)
                util = link_loads(rp, values[t0:]) / cap
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
                rows.append(_predictive(ctx, label, h, forecaster, quantile, hs_s, cfg, tick))
    for r in rows:
        r["capacity_scale"] = scale
    return rows


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
    for tau in range(ctx.t0 - h, T - h):
        measured = utilisation(ctx.paths, ctx.cap, ctx.values[tau], installed)[0].max()
        if measured >= threshold:
            res = solve_min_mlu(
                ctx.paths,
                ctx.cap,
                ctx.values[tau],
                previous=installed,
                churn_weight=max(cfg.churn_weight, 1e-3),
            )
            ms.append(res.solve_ms)
            installed = res.split
        decided[tau + h] = installed
        tick(1)
    splits = [decided[t] for t in range(ctx.t0, T)]
    row = ctx.from_splits("threshold-reroute", label, splits, ms)
    row["reroutes"] = len(ms)
    return row


def _predictive(
    ctx: _Ctx,
    label: str,
    h: int,
    spec: ForecasterSpec,
    quantile: str,
    hs_s: Sequence[int],
    cfg: PlanConfig,
    tick: Callable[[int], None],
) -> dict[str, Any]:
    T = ctx.values.shape[0]
    first = ctx.t0 - h
    model = _make_forecaster(spec, hs_s)
    times = ctx.times[: first + 1]
    keys = tuple(f"{a}->{b}" for a, b in ctx.paths.od_pairs)
    at = {k: i for i, k in enumerate(keys)}
    seen: dict[int, tuple[tuple[str, ...], npt.NDArray[np.int64]]] = {}

    def col(mk: tuple[str, ...]) -> npt.NDArray[np.int64]:
        """Columns of the model's keys (recomputed only when they change)."""
        if id(mk) not in seen or seen[id(mk)][0] is not mk:
            seen.clear()
            seen[id(mk)] = (mk, np.array([at[k] for k in mk], dtype=np.int64))
        return seen[id(mk)][1]

    model.fit(SeriesFrame(times, keys, ctx.raw[: first + 1], ctx.step, meta=ctx.meta))
    levels = (80.0, 95.0) if quantile != "mean" else ()
    splits: list[F64] = []
    ms: list[float] = []
    prev: F64 | None = None
    for tau in range(first, T - h):
        fc = model.predict(h, levels)
        target = np.zeros(len(keys))  # a pair the model does not forecast: no demand
        target[col(model.keys)] = quantile_demand(fc, quantile)[:, h - 1]
        res = solve_min_mlu(
            ctx.paths,
            ctx.cap,
            target,
            previous=prev,
            churn_weight=cfg.churn_weight if prev is not None else 0.0,
            penalty_weight=cfg.penalty_weight,
        )
        splits.append(res.split)
        ms.append(res.solve_ms)
        prev = res.split
        if tau + 1 < T:  # by key: a pair new to the model starts cold
            model.update(
                SeriesFrame(
                    ctx.times[tau + 1 : tau + 2], keys, ctx.raw[tau + 1 : tau + 2], ctx.step
                )
            )
        tick(1)
    row = ctx.from_splits("predictive-lp", label, splits, ms)
    row["forecaster"] = spec if isinstance(spec, str) else getattr(spec, "__name__", "custom")
    row["quantile"] = quantile
    return row
