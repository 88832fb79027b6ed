"""Every alert judged by what happened, every overload episode by whether it was announced.

Definitions (``shadowcast eval alerts`` prints the same figures):

* an **episode** is a maximal run of steps with a link's measured utilisation at or above
  the alert threshold; it starts at the first such step;
* an alert raised at ``issued`` with a window of ``H`` steps is **true** when an episode on
  its link starts within its window (at one of the steps ``issued .. issued + (H - 1)``),
  or is under way when the alert is raised and had not been announced yet; otherwise it is
  a **false alarm** (known once its window has passed);
* an episode is **announced** when an alert on its link was raised before it started with
  the start inside the alert's window; its **lead** is the start minus the earliest such
  alert; an episode that no alert announced is **missed**. Episodes starting less than one
  window after the first forecast are not counted (nothing could have announced them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from shadowcast.records import F64, Alert


def _s(t: np.datetime64) -> int:
    return int(t.astype("datetime64[s]").astype(np.int64))


@dataclass
class _Pending:
    link: int
    issued_s: int
    value: float


@dataclass
class OutcomeCounts:
    alerts: int = 0
    true_alerts: int = 0
    false_alarms: int = 0
    episodes: int = 0
    announced: int = 0
    missed: int = 0
    leads_s: list[int] = field(default_factory=list)

    def as_dict(self, days: float | None = None) -> dict[str, Any]:
        judged = self.true_alerts + self.false_alarms
        out: dict[str, Any] = {
            "alerts": judged,
            "true_alerts": self.true_alerts,
            "precision": self.true_alerts / judged if judged else None,
            "recall": self.announced / self.episodes if self.episodes else None,
            "episodes": self.episodes,
            "episodes_announced": self.announced,
            "lead_minutes_median": float(np.median(self.leads_s)) / 60 if self.leads_s else None,
        }
        if days is not None:
            out["false_alarms_per_day"] = self.false_alarms / days if days > 0 else None
        return out


class OutcomeJudge:
    """Online judge of alerts, episodes and actions (module docstring), fed step by step."""

    def __init__(
        self, links: Sequence[str], threshold: float, within_steps: int, step_s: int
    ) -> None:
        self.links = list(links)
        self.index = {name: i for i, name in enumerate(self.links)}
        self.threshold = float(threshold)
        self.H = int(within_steps)
        self.step_s = int(step_s)
        n = len(self.links)
        self.over = np.zeros(n, dtype=bool)
        self.ep_start = np.full(n, -1, dtype=np.int64)
        self.ep_announced = np.zeros(n, dtype=bool)
        self.pending: list[_Pending] = []
        self.recent: list[_Pending] = []  # alerts whose window may still hold a start
        self.first_forecast_s: int | None = None
        self.counts = OutcomeCounts()
        self._rows: list[dict[str, Any]] = []

    # -- feeding -----------------------------------------------------------------------

    def forecasting(self, issued_s: int) -> None:
        if self.first_forecast_s is None:
            self.first_forecast_s = int(issued_s)

    def on_alerts(self, alerts: Sequence[Alert]) -> None:
        for a in alerts:
            i = self.index.get(a.subject)
            if i is None:
                continue
            issued = _s(a.issued)
            self.counts.alerts += 1
            p = _Pending(i, issued, float(a.value))
            if self.over[i] and self.ep_start[i] < issued and not self.ep_announced[i]:
                self.ep_announced[i] = True  # under way, not announced yet: true, no lead
                self._judge_alert(p, True, int(self.ep_start[i]), issued, int(self.ep_start[i]))
                continue
            self.pending.append(p)
            self.recent.append(p)

    def observe(self, t_s: int, util: F64) -> None:
        """Measured utilisation of every link in the step starting ``t_s``."""
        u = np.nan_to_num(np.asarray(util, dtype=np.float64))
        over = u >= self.threshold
        starts = np.flatnonzero(over & ~self.over)
        ends = ~over & self.over
        self.ep_start[ends] = -1
        self.ep_announced[ends] = False
        self.over = over
        window = self.H * self.step_s
        for i in map(int, starts):
            self.ep_start[i] = t_s
            covering = [
                p for p in self.recent if p.link == i and p.issued_s <= t_s < p.issued_s + window
            ]
            for p in covering:
                if p in self.pending:
                    self.pending.remove(p)
                    self._judge_alert(p, True, t_s, t_s, t_s)
            self.ep_announced[i] = bool(covering)
            if self.first_forecast_s is None or t_s - window < self.first_forecast_s:
                continue  # nothing could have announced it
            self.counts.episodes += 1
            if covering:
                first = min(p.issued_s for p in covering)
                self.counts.announced += 1
                self.counts.leads_s.append(t_s - first)
                lead = t_s - first
                self._row("episode", i, "announced", t_s, first, t_s, lead, None, float(u[i]))
            else:
                self.counts.missed += 1
                self._row("episode", i, "missed", t_s, None, t_s, None, None, float(u[i]))
        # windows that passed without a start: false alarms
        for p in [p for p in self.pending if t_s + self.step_s >= p.issued_s + window]:
            self.pending.remove(p)
            self._judge_alert(p, False, None, t_s + self.step_s, None)
        self.recent = [p for p in self.recent if t_s + self.step_s < p.issued_s + window]

    def _judge_alert(
        self, p: _Pending, true: bool, start: int | None, now: int, lead_from: int | None
    ) -> None:
        if true:
            self.counts.true_alerts += 1
        else:
            self.counts.false_alarms += 1
        lead = None if lead_from is None else lead_from - p.issued_s
        outcome = "true" if true else "false"
        self._row("alert", p.link, outcome, now, p.issued_s, start, lead, p.value, None)

    def _row(
        self, kind: str, link: int, outcome: str, now: int, issued: int | None,
        start: int | None, lead: int | None, predicted: float | None, realised: float | None,
    ) -> None:  # fmt: skip
        self._rows.append({
            "time": now, "kind": kind, "subject": self.links[link], "outcome": outcome,
            "issued": issued, "start": start, "lead_s": lead, "predicted": predicted,
            "realised": realised, "detail": {},
        })  # fmt: skip

    # -- reading -----------------------------------------------------------------------

    def take_rows(self) -> list[dict[str, Any]]:
        rows, self._rows = self._rows, []
        return rows

    def summary(self, days: float | None = None) -> dict[str, Any]:
        out = self.counts.as_dict(days)
        out["undecided_alerts"] = len(self.pending)
        return out

    def state(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (
            "over", "ep_start", "ep_announced", "pending", "recent", "first_forecast_s",
            "counts",
        )}  # fmt: skip

    def load_state(self, st: dict[str, Any]) -> bool:
        if np.asarray(st.get("over", ())).shape != self.over.shape:
            return False
        for k, v in st.items():
            setattr(self, k, v)
        return True
