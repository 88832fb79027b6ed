"""Predictive TE in the replay: forecast passes, the forecaster a backtest picks, hedging.

A *forecast pass* runs one forecaster over a stretch of the series once, for every horizon:
at each origin ``τ`` it predicts, then sees row ``τ + 1`` (online, as the service does).

Hedging one class of aggregate OD traffic (the SNDlib matrices have nothing else). The
planner's class quantiles (``plan.quantiles`` by latency sensitivity) put every OD at its
own upper quantile at once, as if all of them peaked together; a link's load is a sum over
many ODs whose errors partly cancel, so that over-hedges and moves traffic for nothing (on
the training part of GEANT, planning on p80 did worse than on the mean). This class is
hedged on the *joint* error instead: the planner takes the forecast and the forecast plus
each of the last ``k`` errors of the same forecaster at the same horizon (whole error
vectors as they happened, so their correlation across ODs is kept) as ``k + 1``
scenarios, and minimises the mean of their MLU (a sample average of the MLU it will
meet) plus the head-room penalty. ``k = 0`` plans on the forecast alone.

What is picked, and only on the training part (the last third of it, at most one day:
the *validation* stretch): the forecaster, per horizon, by its NMAE there (a backtest);
then the hedge (``k`` and the churn weight), per horizon, by replaying the candidates on
that stretch with the picked forecaster: the least mean + p95 of MLU / oracle, and among
hedges within ``CHURN_SLACK`` of that the one that moves the least traffic.

Each decision keeps the plan in force unless the new one pays
(:func:`shadowcast.plan.churn.keep_in_force`: it lowers the planned MLU on the same
scenarios by ``plan.hysteresis``, or brings it under ``plan.target_utilisation``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from shadowcast.errors import ConfigError, ForecastError
from shadowcast.forecast.base import Forecaster
from shadowcast.plan.churn import keep_in_force
from shadowcast.plan.config import PlanConfig
from shadowcast.plan.optimise import LPResult, solve_min_mlu, utilisation
from shadowcast.plan.paths import PathSet
from shadowcast.plan.planner import quantile_demand
from shadowcast.records import F64, SeriesFrame

log = logging.getLogger(__name__)

CANDIDATES = ("persistence", "profile", "theta", "auto")
CHURN_SLACK = 0.002  # hedges this close in (mean + p95) / 2 count as equal: least churn wins
ForecasterSpec = str | Callable[[], Forecaster]


@dataclass(frozen=True, slots=True)
class Hedge:
    """Plan on the forecast and ``k`` recent errors added to it (``k = 0``: the forecast
    alone); ``churn_weight`` None keeps ``plan.churn_weight``."""

    k: int = 0
    churn_weight: float | None = None

    @property
    def name(self) -> str:
        base = "mean" if self.k == 0 else f"saa:{self.k}"
        return base if self.churn_weight is None else f"{base}:{self.churn_weight:g}"


# k in {0, 4, 8, 16} x churn weight in {plan.churn_weight, 0.3}: on the training parts of
# GEANT and Abilene, k = 8 and a churn weight of 0.3 moved a fifth as much traffic as 0.02
# at the same MLU; k = 0 (the forecast alone) did as well as any k on Abilene.
HEDGES = tuple(Hedge(k, cw) for k in (0, 4, 8, 16) for cw in (None, 0.3))


def parse_hedge(text: str) -> Hedge | None:
    """``auto`` (pick on the training part) -> None; ``mean``; ``saa:K``; ``saa:K:CHURN``."""
    t = text.strip().lower()
    if t == "auto":
        return None
    if t == "mean":
        return Hedge(0)
    parts = t.split(":")
    try:
        if parts[0] == "saa" and len(parts) in (2, 3):
            k = int(parts[1])
            cw = float(parts[2]) if len(parts) == 3 else None
            if 0 <= k <= 64 and (cw is None or 0 <= cw <= 100):
                return Hedge(k, cw)
    except ValueError:
        pass
    raise ConfigError(
        f"hedge {text!r}: expected auto, mean, saa:K (0 <= K <= 64) or saa:K:CHURN_WEIGHT"
    )


def spec_name(spec: ForecasterSpec) -> str:
    return spec if isinstance(spec, str) else getattr(spec, "__name__", "custom")


@dataclass
class Pass:
    """Forecasts of one forecaster from origins ``first .. first + n - 1``: ``mean[h][i]``
    and ``planned[h][i]`` (at the planning quantile) are for ``first + i + h``."""

    name: str
    first: int
    mean: dict[int, F64] = field(default_factory=dict)
    planned: dict[int, F64] = field(default_factory=dict)
    seconds: float = 0.0

    def errors(self, values: F64, h: int) -> F64:
        """``[n, n_od]``: actual - forecast for every origin whose target is in ``values``
        (row ``j``: the target ``first + j + h``)."""
        n = max(0, min(self.mean[h].shape[0], values.shape[0] - self.first - h))
        return values[self.first + h : self.first + h + n] - self.mean[h][:n]

    def nmae(self, values: F64, h: int, lo: int, hi: int) -> float:
        """NMAE of the forecasts whose target lies in ``[lo, hi)``."""
        i0, i1 = lo - h - self.first, hi - h - self.first
        act = values[lo:hi]
        err = np.abs(self.mean[h][i0:i1] - act).sum()
        return float(err / max(np.abs(act).sum(), 1e-12))


def forecast_pass(
    spec: ForecasterSpec,
    raw: F64,
    times: npt.NDArray[np.datetime64],
    step: int,
    keys: tuple[str, ...],
    window: tuple[int, int],
    hs: Sequence[int],
    quantile: str,
    tick: Callable[[int], None] = lambda n: None,
    *,
    meta: Mapping[str, npt.NDArray[np.generic]] | None = None,
) -> Pass:
    """Fit on ``raw[:first + 1]`` (with the series' static inputs ``meta``), then predict
    at every origin of ``[first, end)``."""
    from shadowcast.forecast.registry import make_model  # the forecast stage's registry

    first, end = window
    t0 = time.perf_counter()
    model: Forecaster = (
        make_model(spec, horizons=[int(h) * step for h in hs]) if isinstance(spec, str) else spec()
    )
    at = {k: i for i, k in enumerate(keys)}
    seen: tuple[tuple[str, ...], npt.NDArray[np.int64]] | None = None
    model.fit(SeriesFrame(times[: first + 1], keys, raw[: first + 1], step, meta=dict(meta or {})))
    levels = () if quantile == "mean" else (80.0, 95.0)
    out = Pass(spec_name(spec), first)
    n = end - first
    for h in hs:
        out.mean[h] = np.zeros((n, len(keys)))
        out.planned[h] = np.zeros((n, len(keys)))
    for i, tau in enumerate(range(first, end)):
        fc = model.predict(max(hs), levels)
        if seen is None or seen[0] is not model.keys:  # a pair the model drops: no demand
            seen = (model.keys, np.array([at[k] for k in model.keys], dtype=np.int64))
        q = quantile_demand(fc, quantile)
        for h in hs:
            out.mean[h][i, seen[1]] = np.maximum(fc.mean[:, h - 1], 0.0)
            out.planned[h][i, seen[1]] = q[:, h - 1]
        if tau + 1 < end:
            model.update(SeriesFrame(times[tau + 1 : tau + 2], keys, raw[tau + 1 : tau + 2], step))
        tick(1)
    out.seconds = time.perf_counter() - t0
    return out


@dataclass(frozen=True, slots=True)
class Replay:
    """What a policy needs to be replayed: the demand, the network and the optimum."""

    paths: PathSet
    cap: F64
    values: F64
    oracle: dict[int, LPResult]
    scale: float

    def score(self, lo: int, splits: Sequence[F64]) -> tuple[float, float, float]:
        """(mean, p95) of MLU / oracle MLU over ``[lo, lo + len(splits))`` and churn."""
        ratios, moved = [], []
        for i, x in enumerate(splits):
            t = lo + i
            best = self.oracle[t].mlu / self.scale
            mlu = float(utilisation(self.paths, self.cap, self.values[t], x).max())
            if self.values[t].sum() > 0 and best > 0:
                ratios.append(mlu / best)
            if i:
                d = self.values[t][self.paths.path_od]
                dx = 0.5 * np.abs(x[0] - splits[i - 1][0]) * d
                moved.append(float(dx.sum() / max(self.values[t].sum(), 1e-12)))
        r = np.array(ratios) if ratios else np.ones(1)
        return float(r.mean()), float(np.percentile(r, 95)), float(np.mean(moved or [0.0]))


def plan_replay(
    rp: Replay,
    fc: Pass,
    h: int,
    span: tuple[int, int],
    hedge: Hedge,
    cfg: PlanConfig,
    seed: tuple[int, F64] | None = None,
    tick: Callable[[int], None] = lambda n: None,
) -> tuple[list[F64], list[float]]:
    """Splits in force at every ``t`` of ``span``, each decided at ``t - h`` from the pass's
    forecast for ``t`` and the errors known by then. ``seed = (first_target, errors)``:
    errors of another pass (the training part's), used for targets before this pass's own
    first one and only once known."""
    lo, hi = span
    errs = fc.errors(rp.values, h)
    if seed is not None and hedge.k:
        s0, s_err = seed
        own0 = fc.first + h  # this pass's first target
        base_t = fc.first + h
        if s_err.shape[0] >= own0 - s0 >= 0:  # contiguous with this pass's own errors
            errs = np.vstack([s_err[: own0 - s0], errs])
            base_t = s0  # the target of errs[0]
    else:
        base_t = fc.first + h
    cw = cfg.churn_weight if hedge.churn_weight is None else hedge.churn_weight
    prev: F64 | None = None
    warm: npt.NDArray[np.bool_] | None = None
    splits: list[F64] = []
    ms: list[float] = []
    for t in range(lo, hi):
        i = t - h - fc.first
        base = fc.planned[h][i][None, :]
        scen = base
        if hedge.k:
            j = t - h - base_t + 1  # errors of targets <= t - h: errs[:j]
            known = errs[max(0, j - hedge.k) : max(0, j)]
            scen = np.vstack([base, np.maximum(base + known, 0.0)])
        res = solve_min_mlu(
            rp.paths,
            rp.cap,
            scen,
            previous=prev,
            churn_weight=cw if prev is not None else 0.0,
            penalty_weight=cfg.penalty_weight,
            robust=False,
            warm=warm,
        )
        if prev is not None and keep_in_force(
            planned_mlu(rp, scen, prev), planned_mlu(rp, scen, res.split), cfg
        ):  # the next solve starts from the plan kept, as if it had just been found
            warm = prev > 1e-9
        else:
            prev, warm = res.split, res.support
        splits.append(prev)
        ms.append(res.solve_ms)
        tick(1)
    return splits, ms


def planned_mlu(rp: Replay, scenarios: F64, split: F64) -> float:
    """The MLU the replay's LP minimises (``robust=False``): the mean over the demand
    scenarios ``[S, n_od]`` of each one's MLU under ``split``."""
    return float(utilisation(rp.paths, rp.cap, scenarios, split).max(axis=1).mean())


def pick_hedge(scores: dict[str, list[float]]) -> str:
    """The hedge with the least (mean + p95) / 2 of MLU / oracle, and among those within
    ``CHURN_SLACK`` of it the one with the least churn (``scores[name] = [mean, p95,
    churn]``; ties: the first)."""
    top = min((s[0] + s[1]) / 2 for s in scores.values())
    near = [n for n, s in scores.items() if (s[0] + s[1]) / 2 <= top + CHURN_SLACK]
    return min(near, key=lambda n: scores[n][2])


@dataclass
class Choice:
    """What the training part picked, per horizon (steps)."""

    forecaster: dict[int, str] = field(default_factory=dict)
    hedge: dict[int, Hedge] = field(default_factory=dict)
    nmae: dict[int, dict[str, float]] = field(default_factory=dict)
    hedge_scores: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    seed: dict[tuple[str, int], tuple[int, F64]] = field(default_factory=dict)
    window: tuple[int, int] = (0, 0)
    notes: list[str] = field(default_factory=list)

    def describe(self, h: int) -> dict[str, Any]:
        return {
            "picked_on": f"steps {self.window[0]}..{self.window[1] - 1} of the training part",
            "forecaster_nmae": {k: round(v, 4) for k, v in self.nmae.get(h, {}).items()},
            "hedge_scores": self.hedge_scores.get(h, {}),
            "notes": list(self.notes),
        }


def choose(
    rp: Replay,
    raw: F64,
    times: npt.NDArray[np.datetime64],
    step: int,
    t0: int,
    hs: Sequence[int],
    cfg: PlanConfig,
    *,
    candidates: Sequence[ForecasterSpec] = CANDIDATES,
    hedges: Sequence[Hedge] = HEDGES,
    fixed_hedge: Hedge | None = None,
    quantile: str = "mean",
    meta: Mapping[str, npt.NDArray[np.generic]] | None = None,
    tick: Callable[[int], None] = lambda n: None,
) -> Choice:
    """Pick the forecaster and the hedge per horizon on the validation stretch of the
    training part ``[:t0]`` (see the module docstring); ``fixed_hedge`` skips the hedge
    replay."""
    hmax = max(hs)
    n_val = min(round(t0 / 3), max(1, 86400 // step))
    v0 = t0 - n_val
    ch = Choice(window=(v0, t0))
    keys = tuple(f"{a}->{b}" for a, b in rp.paths.od_pairs)
    if n_val < 4 or v0 - hmax < 8:
        ch.notes.append(f"training part of {t0} steps too short to pick: persistence, mean")
        for h in hs:
            ch.forecaster[h], ch.hedge[h] = "persistence", fixed_hedge or Hedge(0)
        return ch
    passes: dict[str, Pass] = {}
    for spec in candidates:
        try:
            p = forecast_pass(
                spec, raw, times, step, keys, (v0 - hmax, t0), hs, quantile, tick, meta=meta
            )
        except ForecastError as exc:
            ch.notes.append(f"{spec_name(spec)} left out: {exc}")
            continue
        passes[p.name] = p
    if not passes:
        raise ConfigError("no candidate forecaster could be fitted on the training part")
    for h in hs:
        ch.nmae[h] = {n: p.nmae(rp.values, h, v0, t0) for n, p in passes.items()}
        best = min(ch.nmae[h], key=lambda n: ch.nmae[h][n])
        ch.forecaster[h] = best
        for name, p in passes.items():  # known at t0: the test replay starts with them
            ch.seed[(name, h)] = (p.first + h, p.errors(rp.values[:t0], h))
        if fixed_hedge is not None:
            ch.hedge[h] = fixed_hedge
            continue
        scores: dict[str, list[float]] = {}
        by: dict[str, Hedge] = {}
        for hg in hedges:
            splits, _ = plan_replay(rp, passes[best], h, (v0, t0), hg, cfg, tick=tick)
            mean, p95, churn = rp.score(v0, splits)
            scores[hg.name] = [round(mean, 4), round(p95, 4), round(churn, 5)]
            by[hg.name] = hg
        ch.hedge[h] = by[pick_hedge(scores)]
        ch.hedge_scores[h] = scores
    return ch
