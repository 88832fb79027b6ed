"""The feedback stage of the living service: what the ledger saw, acted on every step.

:class:`FeedbackStage` holds, for one service:

* the rolling accuracy (:class:`~shadowcast.feedback.accuracy.RollingAccuracy`) the ledger
  feeds, summarised per class, volume decile and link into the store's
  ``accuracy_groups`` every ``summary_every``;
* one drift detector per kind of series (the stacked class x OD series, grouped by class
  at a source site and at a destination site; the links, one group each), fed with the
  one-step-ahead forecast of every series against what was measured; and a second test
  of the OD series on the forecasts made ``drift_ahead`` steps ahead, with each class
  across the backbone as a group too (``high@*/6``), which learns its groups' usual
  errors again when another model version starts forecasting;
* the recalibration (:class:`~shadowcast.feedback.adapt.Adapter`) applied to every
  forecast the service issues: level ratios for the series of a group that drifted, and
  interval widths per step ahead and volume decile;
* the retraining on drift: a refit ``retrain_after`` a drift of the OD series (at most one
  per ``retrain_min_interval``).

Each drift is a row of ``drift_events`` and a ``ForecastAccuracyDegraded`` alert. A change
of the routing in force that moves a link's load (:mod:`shadowcast.feedback.routes`) is a
``route-change`` row of ``drift_events``, without an alert (the link forecasts follow it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shadowcast.feedback.accuracy import RollingAccuracy
from shadowcast.feedback.adapt import Adapter
from shadowcast.feedback.config import FeedbackConfig
from shadowcast.feedback.drift import DriftDetector, DriftEvent, single_groups, site_groups
from shadowcast.feedback.routes import ROUTE_CHANGE, route_change_events
from shadowcast.records import F64, Alert, Forecast
from shadowcast.store.schema import ACCURACY_GROUPS_SCHEMA, DRIFT_SCHEMA
from shadowcast.units import parse_duration

ALERT_NAME = "ForecastAccuracyDegraded"
AHEAD = "od-ahead"  # the OD series' test on the forecasts made drift_ahead steps ahead
I64 = npt.NDArray[np.int64]


class FeedbackStage:
    """Accuracy, drift, recalibration and retraining on drift (module docstring)."""

    def __init__(
        self,
        cfg: FeedbackConfig,
        classes: Sequence[str],
        od_pairs: Sequence[tuple[str, str]],
        link_names: Sequence[str],
        horizon: int,
        levels: Sequence[float],
        step_s: int,
    ) -> None:
        self.cfg = cfg
        self.step_s = int(step_s)
        self.classes = tuple(classes)
        n_od = len(self.classes) * len(od_pairs)
        n_link = len(link_names)
        self.sizes = {"od": n_od, "link": n_link}
        codes = np.repeat(np.arange(len(self.classes), dtype=np.int64), len(od_pairs))
        self.accuracy = RollingAccuracy(
            self.sizes,
            levels,
            halflife_steps=parse_duration(str(cfg.accuracy_halflife)) / self.step_s,
            groupings={
                "od": {"class": (codes, list(self.classes))},
                "link": {"link": (np.arange(n_link, dtype=np.int64), list(link_names))},
            },
        )
        tests = {"od": site_groups(self.classes, od_pairs), "link": single_groups(link_names)}
        self.drift = {
            kind: DriftDetector(
                kind,
                self.sizes[kind],
                members,
                names,
                delta=cfg.drift_delta,
                threshold=cfg.drift_threshold,
                min_steps=cfg.drift_min_steps,
                cooldown_steps=cfg.drift_cooldown_steps,
            )  # fmt: skip
            for kind, (members, names) in tests.items()
        }
        if cfg.drift_ahead > 1:  # the OD series' second test, on forecasts k steps ahead
            members, names = site_groups(self.classes, od_pairs, backbone=True)
            self.drift[AHEAD] = DriftDetector(
                "od", n_od, members, [f"{g}/{cfg.drift_ahead}" for g in names],
                delta=cfg.drift_delta, threshold=cfg.drift_threshold,
                min_steps=cfg.drift_min_steps, cooldown_steps=cfg.drift_cooldown_steps,
                baseline_rate=cfg.drift_ahead_baseline_rate,
                # a site's pairs: the size up to which a group's noise floor stays whole
                spread_size=max(1.0, _sites(od_pairs) - 1.0),
            )  # fmt: skip
        self.adapter = Adapter(
            n_od, horizon, levels, self.step_s, rate=cfg.adapt_rate, gamma=cfg.decile_gamma,
            enabled=cfg.enabled,
        )  # fmt: skip
        self.version: int | None = None  # the champion's version the ratios were learnt for
        self._one: dict[str, tuple[int, F64]] = {}  # kind -> (target step, 1-step forecast)
        self._tag: dict[str, int] = {}
        self._ahead: dict[int, F64] = {}  # target step -> OD forecast drift_ahead steps ahead
        self._rebase_at: int | None = None  # when the ahead test learns its baselines again
        self.retrain_at_s: int | None = None
        self.last_retrain_s: int | None = None
        self.last_summary_s: int | None = None
        self.drifts = 0
        self.retrains = 0
        self.route_changes = 0
        self._drift_rows: list[dict[str, Any]] = []

    # -- every step ------------------------------------------------------------------------

    def correct(self, issued_s: int, fc: Forecast, version: int) -> Forecast:
        """The stacked forecast issued at ``issued_s`` by model ``version``, recalibrated."""
        if not self.cfg.enabled:
            return fc
        if self.version != version:
            if self.version is not None:
                self.adapter.switch_model(issued_s, fc.mean)
                # the test some steps ahead judges the new version's errors once they arrive
                self._rebase_at = issued_s + self.cfg.drift_ahead * self.step_s
            self.version = version
        return self.adapter.correct(issued_s, fc, self.deciles())

    def deciles(self) -> I64:
        lv = self.adapter.level
        rank = np.argsort(np.argsort(lv, kind="stable"), kind="stable")
        return np.asarray(rank * 10 // max(lv.size, 1), dtype=np.int64)

    def issued(self, kind: str, target_s: int, mean: F64, tag: int = 0) -> None:
        """The forecast of ``kind`` issued for the step starting ``target_s`` and on:
        ``mean[n]`` one step ahead, or ``mean[n, H]`` (column ``j``: ``j`` steps later);
        ``tag``: what it was made under (the routing's version, for links). With
        ``drift_ahead`` k > 1 the OD series' second drift test takes the errors of the
        forecasts made k steps ahead (column k - 1, or the last)."""
        m = np.asarray(mean, dtype=np.float64)
        self._one[kind] = (int(target_s), (m[:, 0] if m.ndim == 2 else m).copy())
        self._tag[kind] = int(tag)
        if kind == "od" and self.cfg.drift_ahead > 1:  # the farthest column up to k
            k = min(self.cfg.drift_ahead, m.shape[1] if m.ndim == 2 else 1)
            col = m[:, k - 1] if m.ndim == 2 else m
            self._ahead[int(target_s) + (k - 1) * self.step_s] = col.copy()

    def observe(self, kind: str, t_s: int, actual: F64, tag: int = 0) -> list[DriftEvent]:
        """The step starting ``t_s`` measured (under ``tag``): recalibration learns, drift
        is tested. A forecast made under another tag (the routing changed: the service's
        own action moved the load) is not tested."""
        if kind == "od":
            self.adapter.learn(t_s, actual)
        events = self._ahead_test(t_s, actual) if kind == "od" else []
        one = self._one.get(kind)
        if one is None or one[0] != t_s or one[1].shape != np.shape(actual):
            return events
        if self._tag.get(kind, 0) != int(tag):
            return events
        found = self.drift[kind].update(t_s, actual, one[1])
        for e in found:
            action = "none"
            if kind == "od" and self.cfg.enabled:
                if self.cfg.adapt_steps:
                    self.adapter.start(e.members, t_s, self.cfg.adapt_steps)
                    action = "adapt"
                if self._schedule_retrain(t_s):
                    action = "retrain" if action == "none" else f"{action}+retrain"
            self._drift_rows.append({**e.as_dict(), "action": action})
        self.drifts += len(found)
        return events + found

    def _ahead_test(self, t_s: int, actual: F64) -> list[DriftEvent]:
        """The OD series' second drift test, on the errors of the forecasts made
        ``drift_ahead`` steps ahead, per group including each class across the backbone:
        it sees the shifts a model that follows its last value absorbs within a step or two
        (the one-step test sees a spike). Its drifts are recorded and alerted, nothing more:
        the forecasts already follow (no level adaptation), and a refit on top of the
        scheduled ones made the synthetic week's capacity alerts worse (recall 0.81 to
        0.73, median lead 30 to 20 min). Its groups learn their usual errors again when
        another model version starts forecasting."""
        test = self.drift.get(AHEAD)
        if test is None:
            return []
        if self._rebase_at is not None and t_s >= self._rebase_at:
            test.rebase()
            self._rebase_at = None
        ahead = self._ahead.pop(int(t_s), None)
        for old in [t for t in self._ahead if t < t_s]:
            del self._ahead[old]
        if ahead is None or ahead.shape != np.shape(actual):
            return []
        events = test.update(t_s, actual, ahead)
        self._drift_rows += [{**e.as_dict(), "action": "none"} for e in events]
        self.drifts += len(events)
        return events

    def route_change(self, t_s: int, before: F64, after: F64) -> list[DriftEvent]:
        """The routing in force changed before the step starting ``t_s``: ``before`` and
        ``after`` are the step's link loads under the old and the new routing. Every link
        moved by more than ``route_change_margin`` is a ``route-change`` event (a row of
        ``drift_events``, action ``remap``: its forecasts are mapped under the new routing)
        and its drift test starts over, quiet for the cooldown."""
        names = self.drift["link"].names
        events = route_change_events(t_s, before, after, names, self.cfg.route_change_margin)
        if events:
            self.drift["link"].hold(np.concatenate([e.members for e in events]))
        self._drift_rows += [{**e.as_dict(), "action": "remap"} for e in events]
        self.route_changes += len(events)
        return events

    def _schedule_retrain(self, t_s: int) -> bool:
        if not self.cfg.retrain_on_drift or self.retrain_at_s is not None:
            return self.retrain_at_s is not None
        gap = parse_duration(str(self.cfg.retrain_min_interval))
        if self.last_retrain_s is not None and t_s - self.last_retrain_s < gap:
            return False
        self.retrain_at_s = t_s + parse_duration(str(self.cfg.retrain_after))
        return True

    def retrain_due(self, now_s: int) -> bool:
        """True once when a refit asked for by a drift is due at ``now_s``."""
        if self.retrain_at_s is None or now_s < self.retrain_at_s:
            return False
        self.retrain_at_s, self.last_retrain_s = None, now_s
        self.retrains += 1
        return True

    def alerts(self, events: Sequence[DriftEvent]) -> list[Alert]:
        """``ForecastAccuracyDegraded`` alerts: the drifts of one step grouped per kind and
        direction (one alert naming every group, its value the largest scaled error)."""
        grouped: dict[tuple[str, int, int], list[DriftEvent]] = {}
        for e in events:
            if e.kind == ROUTE_CHANGE:  # not an accuracy drift: the forecasts follow it
                continue
            grouped.setdefault((e.kind, e.direction, e.time_s), []).append(e)
        out = []
        for (kind, direction, t_s), evs in sorted(grouped.items()):
            t = np.datetime64(t_s, "s")
            way = "above" if direction > 0 else "below"
            worst = max(evs, key=lambda e: abs(e.scaled_error))
            names = [e.group for e in evs]
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            subject = f"{kind}:{names[0]}" if len(names) == 1 else f"{kind}:{len(names)} groups"
            out.append(
                Alert(
                    name=ALERT_NAME, subject=subject, severity="warning",
                    value=round(worst.scaled_error, 3), threshold=self.cfg.drift_threshold,
                    issued=t, at=t, lead_s=0,
                    message=(
                        f"forecast accuracy degraded on {kind} {shown} "
                        f"({sum(e.series for e in evs)} series): actuals {way} the forecasts "
                        f"by up to {abs(worst.scaled_error):.1f} typical errors"
                    ),
                    labels={"kind": kind, "groups": ",".join(names)},
                )
            )  # fmt: skip
        return out

    # -- output ----------------------------------------------------------------------------

    def take_drift_table(self) -> pa.Table | None:
        rows, self._drift_rows = self._drift_rows, []
        return drift_table(rows) if rows else None

    def summary_table(self, now_s: int) -> pa.Table | None:
        """Rolling accuracy per grouping, when ``summary_every`` has passed."""
        every = parse_duration(str(self.cfg.summary_every))
        if self.last_summary_s is not None and now_s - self.last_summary_s < every:
            return None
        self.last_summary_s = now_s
        rows = self.summary()
        return accuracy_groups_table(now_s, rows) if rows else None

    def summary(self) -> list[dict[str, Any]]:
        """Rolling accuracy rows: OD series overall, per class and per volume decile; links
        overall and per link."""
        out = []
        for kind, groupings in (("od", (None, "class", "decile")), ("link", (None, "link"))):
            for by in groupings:
                for r in self.accuracy.metrics(kind, by=by):
                    out.append({**r, "grouping": by or "all"})
        return out

    def counters(self) -> dict[str, Any]:
        return {
            "drifts": self.drifts,
            "route_changes": self.route_changes,
            "retrains_on_drift": self.retrains,
            "adapting_series": int(self.adapter.adapting(self._now()).sum()),
            "retrain_at_s": self.retrain_at_s,
        }

    def _now(self) -> int:
        return max((t for t, _ in self._one.values()), default=0)

    # -- persistence -----------------------------------------------------------------------

    def state(self) -> dict[str, Any]:
        return {
            "sizes": dict(self.sizes),
            "accuracy": self.accuracy.sums,
            "volume": self.accuracy.volume,
            "drift": {k: d.state() for k, d in self.drift.items()},
            "adapter": self.adapter.state(),
            "version": self.version,
            "one": self._one,
            "ahead": self._ahead,
            "rebase_at": self._rebase_at,
            "retrain_at_s": self.retrain_at_s,
            "last_retrain_s": self.last_retrain_s,
            "counts": (self.drifts, self.retrains),
            "route_changes": self.route_changes,
        }

    def load_state(self, st: dict[str, Any]) -> bool:
        if st.get("sizes") != self.sizes:
            return False
        self.accuracy.sums = dict(st["accuracy"])
        self.accuracy.volume = dict(st["volume"])
        for k, d in self.drift.items():
            d.load_state(st["drift"].get(k, {}))
        self.adapter.load_state(st["adapter"])
        self.version = st.get("version")
        self._one = dict(st.get("one", {}))
        self._ahead = dict(st.get("ahead", {}))
        self._rebase_at = st.get("rebase_at")
        self.retrain_at_s = st.get("retrain_at_s")
        self.last_retrain_s = st.get("last_retrain_s")
        self.drifts, self.retrains = st.get("counts", (0, 0))
        self.route_changes = int(st.get("route_changes", 0))
        return True


def _ts(values: Sequence[int], schema: pa.Schema) -> pa.Array:
    return pa.array([int(v) * 1000 for v in values], pa.int64()).cast(schema.field("time").type)


def _sites(od_pairs: Sequence[tuple[str, str]]) -> float:
    return float(len({a for a, _ in od_pairs} | {b for _, b in od_pairs}))


def drift_table(rows: Sequence[dict[str, Any]]) -> pa.Table:
    return pa.table(
        {
            "time": _ts([r["time_s"] for r in rows], DRIFT_SCHEMA),
            "kind": [r["kind"] for r in rows],
            "subject": [r["group"] for r in rows],
            "direction": pa.array([r["direction"] for r in rows], pa.int64()),
            "statistic": pa.array([r["statistic"] for r in rows], pa.float64()),
            "scaled_error": pa.array([r["scaled_error"] for r in rows], pa.float64()),
            "series": pa.array([r["series"] for r in rows], pa.int64()),
            "action": [r["action"] for r in rows],
        },
        schema=DRIFT_SCHEMA,
    )


_SKIP = {"kind", "model", "horizon", "group", "grouping", "weight"}


def accuracy_groups_table(now_s: int, rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Summary rows in long form: one row per (row, metric) with a finite value."""
    cols: dict[str, list[Any]] = {k: [] for k in ACCURACY_GROUPS_SCHEMA.names}
    for r in rows:
        horizon_s = parse_duration(str(r["horizon"]))
        for metric, value in r.items():
            if metric in _SKIP or value is None or not np.isfinite(value):
                continue
            cols["time"].append(now_s)
            cols["kind"].append(r["kind"])
            cols["model"].append(r["model"])
            cols["horizon_s"].append(horizon_s)
            cols["grouping"].append(r["grouping"])
            cols["subject"].append(r["group"])
            cols["metric"].append(metric)
            cols["value"].append(float(value))
    data: dict[str, Any] = dict(cols)
    data["time"] = _ts(cols["time"], ACCURACY_GROUPS_SCHEMA)
    return pa.table(data, schema=ACCURACY_GROUPS_SCHEMA)
