"""``p`` per link class, set from outcomes (the probability rule's threshold).

:class:`PolicyTuner` keeps what the rule saw (the window's peak probability per link, at
each step it was issued) beside what happened (each step's measured utilisation at or
above the threshold), replays :class:`~shadowcast.alert.policy.ProbabilityRule` over that
history for every ``p`` of a grid, judges the alerts it would have raised with the
definitions of :mod:`shadowcast.feedback.outcomes` (vectorised over the grid and the
links: one numpy pass per step of history), and sets ``p`` per link class: the lowest
``p`` whose precision reaches the target with at least ``min_alerts`` judged alerts (the
most recall and lead at that precision). A class without such a ``p`` takes the choice
made over every link; without one there either, its ``p`` stays as it is (``p`` moves
only on evidence that reaches the target). The precision/recall/lead curve behind each
choice is kept (``curves``), and written after each tuning as rows of the store's
``alert_tuning`` (:meth:`PolicyTuner.table`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from shadowcast.alert.config import AlertConfig
from shadowcast.alert.policy import I64, B, ProbabilityRule, link_classes
from shadowcast.alert.rules import CapacityRule
from shadowcast.records import F64
from shadowcast.store.schema import ALERT_TUNING_SCHEMA
from shadowcast.units import parse_duration


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """The rule replayed at one ``p``: judged alerts, true ones, episodes, announced."""

    p: float
    alerts: int
    true_alerts: int
    episodes: int
    announced: int
    lead_steps_median: float | None = None  # of the announced episodes

    @property
    def precision(self) -> float | None:
        return self.true_alerts / self.alerts if self.alerts else None

    @property
    def recall(self) -> float | None:
        return self.announced / self.episodes if self.episodes else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "p": self.p, "alerts": self.alerts, "true_alerts": self.true_alerts,
            "episodes": self.episodes, "announced": self.announced,
            "precision": self.precision, "recall": self.recall,
            "lead_steps_median": self.lead_steps_median,
        }  # fmt: skip


def p_grid(low: float, high: float, step: float) -> tuple[float, ...]:
    n = int(np.floor((high - low) / step + 1e-9)) + 1
    return tuple(round(low + k * step, 6) for k in range(max(n, 1)))


class PolicyTuner:
    """History of (peak probability, measured over threshold) per link and step, and the
    choice of ``p`` per link class from it (module docstring)."""

    def __init__(
        self,
        classes: Sequence[str],
        within_steps: int,
        threshold: float,
        clear_ratio: float,
        *,
        target_precision: float = 0.85,
        min_alerts: int = 10,
        keep_steps: int = 7 * 288,
        grid: Sequence[float] = p_grid(0.05, 0.95, 0.01),
        every_steps: int = 0,
        expire: bool = False,
    ) -> None:
        self.classes = list(classes)
        self.H = int(within_steps)
        self.threshold = float(threshold)
        self.clear_ratio = float(clear_ratio)
        self.target = float(target_precision)
        self.min_alerts = int(min_alerts)
        self.grid = np.asarray(grid, dtype=np.float64)
        self.expire = bool(expire)  # as the rule's ``expire``
        self.every = int(every_steps)  # 0: never on its own (``maybe_tune``)
        self.signal: deque[F64] = deque(maxlen=keep_steps)  # per step: peak P per link
        self.over: deque[B] = deque(maxlen=keep_steps)  # per step: measured >= threshold
        self.curves: dict[str, list[CurvePoint]] = {}
        self.chosen: dict[str, float] = {}
        self.tuned = 0  # times tuned
        self._next: F64 | None = None  # the signal issued for the step being measured
        self._since = 0

    # -- feeding -------------------------------------------------------------------------

    def record(self, peak_probability: F64 | None, util: F64) -> None:
        """One step: the rule's peak probability issued at its start (None: none issued)
        and the utilisation measured over it."""
        n = len(self.classes)
        sig = np.full(n, np.nan) if peak_probability is None else peak_probability
        self.signal.append(np.asarray(sig, dtype=np.float64).copy())
        self.over.append(np.nan_to_num(np.asarray(util, dtype=np.float64)) >= self.threshold)

    def step(self, measured: F64, issued_peak: F64 | None) -> None:
        """The service's order: the step just measured (paired with the signal issued at
        its start), then the signal issued at its end (None: no forecast)."""
        self.record(self._next, measured)
        self._next = None if issued_peak is None else np.asarray(issued_peak).copy()
        self._since += 1

    def maybe_tune(self, rule: ProbabilityRule) -> dict[str, float] | None:
        """Every ``every_steps`` steps: tune and set ``rule.p``; the choices, else None."""
        if self.every <= 0 or self._since < self.every:
            return None
        self._since = 0
        chosen = self.tune()
        rule.p.update(chosen)
        return chosen

    # -- the replay ----------------------------------------------------------------------

    def replay(self, links: I64 | None = None) -> list[CurvePoint]:
        """The rule replayed over the history for every ``p`` of the grid (only ``links``
        when given), judged as :class:`~shadowcast.feedback.outcomes.OutcomeJudge` does."""
        if len(self.signal) < self.H + 2:
            return []
        sig = np.vstack(list(self.signal))
        over = np.vstack(list(self.over))
        if links is not None:
            sig, over = sig[:, links], over[:, links]
        T, L = sig.shape
        has: B = np.asarray(np.isfinite(sig).any(axis=1))
        if not has.any() or L == 0:
            return []
        first, H, G = int(np.argmax(has)), self.H, len(self.grid)
        prev = np.vstack([np.zeros((1, L), dtype=bool), over[:-1]])  # over at t - 1
        start = over & ~prev
        end = prev & ~over  # the episode under way at t - 1 is over at t
        cs = np.vstack([np.zeros((1, L), dtype=np.int64), np.cumsum(start, axis=0)])
        steps = np.arange(T)
        start_within = (cs[np.minimum(steps + H, T)] - cs[:T]) > 0  # a start in t .. t+H-1
        decided: B = np.asarray(steps + H - 1 <= T - 1)  # the window was observed to its end
        P = self.grid[:, None]
        active = np.zeros((G, L), dtype=bool)
        announced = np.zeros((G, L), dtype=bool)
        # alerts not judged under way, by issue step modulo H: the ones covering a start
        ring = np.full((G, L, H), -(10**9), dtype=np.int64)
        leads: list[list[int]] = [[] for _ in range(G)]
        raised = np.zeros((G, L), dtype=np.int64)  # when the firing alert was raised
        came = np.zeros((G, L), dtype=bool)  # its link was over since
        n_alerts = np.zeros(G, dtype=np.int64)
        n_true = np.zeros(G, dtype=np.int64)
        n_ann = np.zeros(G, dtype=np.int64)
        episodes = 0
        for t in range(T):
            if not has[t]:
                ring[:, :, t % H] = -(10**9)
            if has[t]:  # alerts issued at the start of t (the rule saw the end at t - 1)
                s = np.nan_to_num(sig[t])[None, :]
                if t >= 1:
                    came |= active & over[t - 1][None, :]
                    active &= ~end[t - 1][None, :]
                if self.expire:
                    active &= came | (t - raised < H)
                hits = s >= P
                new = hits & ~active
                raised = np.where(new, t, raised)
                came &= ~new
                active = (active | hits) & ~(s < P * self.clear_ratio)
                under = new & prev[t][None, :] & ~announced
                announced |= under
                rest = new & ~under
                ring[:, :, t % H] = np.where(rest, t, -(10**9))
                true = under | (rest & start_within[t][None, :])
                n_true += true.sum(axis=1)
                n_alerts += (true | (rest & decided[t])).sum(axis=1)
            # then what step t measured: episodes ending and starting
            announced &= ~end[t][None, :]
            st = start[t]
            if st.any():
                earliest = np.where(ring > t - H, ring, t + 1).min(axis=2)  # [G, L]
                cover = st[None, :] & (earliest <= t)
                announced = np.where(st[None, :], cover, announced)
                if t - H >= first:
                    episodes += int(st.sum())
                    n_ann += cover.sum(axis=1)
                    for g, lk in zip(*np.nonzero(cover), strict=True):
                        leads[g].append(t - int(earliest[g, lk]))
        return [
            CurvePoint(float(p), int(a), int(tr), episodes, int(an),
                       float(np.median(ld)) if ld else None)
            for p, a, tr, an, ld in zip(self.grid, n_alerts, n_true, n_ann, leads, strict=True)
        ]  # fmt: skip

    # -- the choice ----------------------------------------------------------------------

    def tune(self) -> dict[str, float]:
        """Choose ``p`` per link class (module docstring); returns the choices."""
        cls = np.array(self.classes)
        pooled = self._choose(self.replay())
        chosen: dict[str, float] = {}
        curves: dict[str, list[CurvePoint]] = {}
        for c in sorted(set(self.classes)):
            curve = self.replay(np.flatnonzero(cls == c))
            curves[c] = curve
            p = self._choose(curve)
            p = pooled if p is None else p
            if p is not None:
                chosen[c] = p
        self.curves, self.tuned = curves, self.tuned + 1
        self.chosen = {**self.chosen, **chosen}
        return chosen

    def _choose(self, curve: Sequence[CurvePoint]) -> float | None:
        """The lowest p with ``min_alerts`` judged alerts at the target precision; None
        (p stays) when no p has that evidence."""
        good = [
            c for c in curve if c.alerts >= self.min_alerts and (c.precision or 0.0) >= self.target
        ]
        return min(c.p for c in good) if good else None

    # -- reading and persistence ---------------------------------------------------------

    def report(self) -> dict[str, Any]:
        """What the API, the log and ``eval alerts`` show: the choices and their curves."""
        return {
            "target_precision": self.target,
            "tuned": self.tuned,
            "history_steps": len(self.signal),
            "p": dict(self.chosen),
            "curves": {c: [pt.as_dict() for pt in pts] for c, pts in self.curves.items()},
        }

    def table(self, now_s: int) -> pa.Table:
        """The latest tuning as ``alert_tuning`` rows: per class, every p of its curve with
        its figures, the p chosen for the class (NaN: none yet) and ``chosen`` on its row."""
        cols: dict[str, list[Any]] = {f.name: [] for f in ALERT_TUNING_SCHEMA}
        nan = float("nan")
        for c, pts in sorted(self.curves.items()):
            cp = self.chosen.get(c)
            for pt in pts:
                cols["link_class"].append(c)
                cols["p"].append(pt.p)
                cols["chosen"].append(int(cp is not None and abs(pt.p - cp) < 1e-9))
                cols["chosen_p"].append(nan if cp is None else cp)
                cols["alerts"].append(pt.alerts)
                cols["true_alerts"].append(pt.true_alerts)
                cols["episodes"].append(pt.episodes)
                cols["announced"].append(pt.announced)
                for k in ("precision", "recall", "lead_steps_median"):
                    v = getattr(pt, k)
                    cols[k].append(nan if v is None else float(v))
        n = len(cols["p"])
        cols["time"] = [int(now_s) * 1000] * n
        cols["target_precision"] = [self.target] * n
        cols["history_steps"] = [len(self.signal)] * n
        arrays = [
            pa.array(cols["time"], pa.int64()).cast(f.type)
            if f.name == "time"
            else pa.array(cols[f.name], f.type)
            for f in ALERT_TUNING_SCHEMA
        ]
        return pa.Table.from_arrays(arrays, schema=ALERT_TUNING_SCHEMA)

    def state(self) -> dict[str, Any]:
        return {"classes": list(self.classes), "signal": list(self.signal),
                "over": list(self.over), "chosen": dict(self.chosen), "next": self._next,
                "since": self._since, "tuned": self.tuned}  # fmt: skip

    def load_state(self, st: dict[str, Any]) -> bool:
        if st.get("classes") != self.classes:
            return False
        self.signal.extend(st["signal"])
        self.over.extend(st["over"])
        self.chosen = dict(st["chosen"])
        self._next, self._since, self.tuned = st["next"], int(st["since"]), int(st["tuned"])
        return True


def build_policy(
    cfg: AlertConfig, links: Sequence[str], capacity_mbps: F64, within_steps: int, step_s: int
) -> tuple[CapacityRule, PolicyTuner | None]:
    """The rule ``alert.policy`` names, and its tuner (probability policy with ``tune``)."""
    thr, clear = cfg.utilisation_threshold, cfg.clear_ratio
    if cfg.policy == "threshold":
        return CapacityRule(links, thr, within_steps, step_s, clear), None
    classes = link_classes(links, capacity_mbps, cfg.link_classes, cfg.capacity_bands_gbps)
    rule = ProbabilityRule(
        links, thr, within_steps, step_s, clear, classes=classes, p=dict(cfg.p),
        default_p=cfg.p_default, expire=cfg.expire,
    )  # fmt: skip
    if not cfg.tune:
        return rule, None
    tuner = PolicyTuner(
        classes, within_steps, thr, clear,
        target_precision=cfg.target_precision,
        min_alerts=cfg.tune_min_alerts,
        keep_steps=max(within_steps + 2, parse_duration(cfg.tune_keep) // step_s),
        grid=p_grid(cfg.p_min, cfg.p_max, cfg.p_step),
        every_steps=max(1, parse_duration(cfg.tune_every) // step_s),
        expire=cfg.expire,
    )  # fmt: skip
    return rule, tuner
