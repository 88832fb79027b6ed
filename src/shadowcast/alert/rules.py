"""The capacity rule: a link predicted at or above a utilisation threshold within a window.

Stateful with hysteresis: a link alerts once when its prediction first crosses, and may
alert again only after its prediction fell below ``threshold x clear_ratio``. The rule keeps
the alert that opened each link's episode (``firing``) and hands back, after each
evaluation, the ones whose link cleared (``resolved``): notifiers send their resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from shadowcast.records import F64, Alert
from shadowcast.units import format_duration


@dataclass
class CapacityRule:
    links: Sequence[str]
    threshold: float = 0.9
    within_steps: int = 12
    step_s: int = 300
    clear_ratio: float = 0.95
    active: npt.NDArray[np.bool_] = field(init=False)
    firing: dict[int, Alert] = field(init=False, default_factory=dict)  # link -> opening alert
    resolved: list[Alert] = field(init=False, default_factory=list)  # cleared at the last call

    def __post_init__(self) -> None:
        self.active = np.zeros(len(self.links), dtype=bool)

    def evaluate(self, issued: np.datetime64, predicted_util: F64) -> list[Alert]:
        """``predicted_util[n_links, H]`` for steps 1..H after ``issued``; returns new alerts."""
        window = predicted_util[:, : self.within_steps]
        peak = window.max(axis=1)
        crossing = window >= self.threshold
        hits = crossing.any(axis=1)
        cleared = peak < self.threshold * self.clear_ratio
        new = hits & ~self.active
        gone = np.flatnonzero(self.active & cleared)
        self.active = (self.active | hits) & ~cleared
        self.resolved = [self.firing.pop(i) for i in map(int, gone) if i in self.firing]
        alerts: list[Alert] = []
        window_txt = format_duration(self.within_steps * self.step_s)
        for i in map(int, np.flatnonzero(new)):
            first = int(np.argmax(crossing[i])) + 1
            lead = first * self.step_s
            at = issued + np.timedelta64(lead, "s")
            sev = "critical" if peak[i] >= 1.0 else "warning"
            alerts.append(
                Alert(
                    name="LinkCapacityPredicted",
                    subject=self.links[i],
                    severity=sev,
                    value=float(peak[i]),
                    threshold=self.threshold,
                    issued=issued,
                    at=at,
                    lead_s=lead,
                    message=(
                        f"{self.links[i]} predicted at {peak[i]:.0%} within {window_txt} "
                        f"(crosses {self.threshold:.0%} in {format_duration(lead)})"
                    ),
                )
            )
            self.firing[i] = alerts[-1]
        return alerts
