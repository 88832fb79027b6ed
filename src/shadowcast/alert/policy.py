"""The alert policy tuned by outcomes: alert on P(link >= threshold within H) >= p.

* :func:`exceedance` turns a link prediction (mean and upper bounds per level) into the
  probability that each link reaches the threshold at each step ahead: a normal law
  around the mean whose spread comes from the widest upper bound (the upper end of a
  two-sided ``L`` % interval is the ``(1 + L/100) / 2`` quantile).
* :func:`link_classes` gives each link its class: by name glob, else by capacity band.
* :class:`ProbabilityRule` is the capacity rule on that probability: a link alerts once
  when ``max over the window of P >= p`` (``p`` per link class), with hysteresis: it may
  alert again only once resolved, when the probability fell below ``p x clear_ratio`` or
  when the overload episode it announced is over (the measured utilisation fell back below
  the threshold: the next crossing is a new episode and gets its own alert); with
  ``expire``, also when its window passed without the link reaching the threshold (a
  fresh alert follows if the probability is still high). Alerts raised
  at the same step on links of one class form one group (``groups``, in the message).

The tuner that sets ``p`` from outcomes is :mod:`shadowcast.alert.tuner`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr, ndtri

from shadowcast.alert.rules import CapacityRule
from shadowcast.records import F64, Alert
from shadowcast.units import format_duration

B = npt.NDArray[np.bool_]
I64 = npt.NDArray[np.int64]


def exceedance(mean: F64, upper: Mapping[float, F64], capacity: F64, threshold: float) -> F64:
    """P(load >= threshold x capacity) ``[n_links, H]`` from the predicted load ``mean``
    and its upper bounds per level (Mbit/s). Where the widest bound is unknown (NaN, or no
    bound at all) only the mean is: the probability is 0 or 1."""
    limit = threshold * np.asarray(capacity, dtype=np.float64)[:, None]
    exact = np.asarray(mean >= limit, dtype=np.float64)
    if not upper:
        return exact
    level = max(upper)
    z = float(ndtri(0.5 + level / 200.0))
    sigma = (np.asarray(upper[level], dtype=np.float64) - mean) / z
    floor = 1e-9 * np.maximum(limit, 1.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = ndtr((mean - limit) / np.maximum(sigma, floor))
    ok = np.isfinite(sigma) & np.isfinite(mean)
    return np.asarray(np.where(ok, p, exact), dtype=np.float64)


def link_classes(
    names: Sequence[str],
    capacity_mbps: F64,
    globs: Mapping[str, str],
    bands_gbps: Sequence[float] = (1.0, 10.0, 100.0),
) -> list[str]:
    """The class of each link: the first glob of ``globs`` (in order) matching its name,
    else its capacity band (``<=1G``, ``<=10G``, ``<=100G``, ``>100G`` by default)."""
    bands = sorted(float(b) for b in bands_gbps)
    out = []
    for name, cap in zip(names, np.asarray(capacity_mbps, dtype=np.float64), strict=True):
        cls = next((c for g, c in globs.items() if fnmatch.fnmatchcase(name, g)), None)
        if cls is None:
            top = f">{bands[-1]:g}G" if bands else "all"
            cls = next((f"<={b:g}G" for b in bands if cap <= b * 1000.0), top)
        out.append(cls)
    return out


@dataclass
class ProbabilityRule(CapacityRule):
    """The capacity rule on P(link >= threshold) (module docstring). ``evaluate`` takes
    the probability ``[n_links, H]``; the predicted mean utilisation gives each alert's
    value and severity."""

    classes: Sequence[str] = ()
    p: dict[str, float] = field(default_factory=dict)  # class -> p (else default_p)
    default_p: float = 0.5
    expire: bool = False
    groups: dict[int, str] = field(init=False, default_factory=dict)
    _over: B = field(init=False)
    _raised_s: I64 = field(init=False)  # when each firing alert was raised
    _came: B = field(init=False)  # its link was measured over the threshold since
    _class_index: I64 = field(init=False)
    class_names: list[str] = field(init=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self._over = np.zeros(len(self.links), dtype=bool)
        self._raised_s = np.zeros(len(self.links), dtype=np.int64)
        self._came = np.zeros(len(self.links), dtype=bool)
        cls = list(self.classes) or ["all"] * len(self.links)
        if len(cls) != len(self.links):
            raise ValueError(f"{len(cls)} link classes for {len(self.links)} links")
        self.class_names = sorted(set(cls))
        self._class_index = np.array([self.class_names.index(c) for c in cls], dtype=np.int64)
        self.classes = cls

    def p_per_link(self) -> F64:
        per = np.array([self.p.get(c, self.default_p) for c in self.class_names])
        return np.asarray(per[self._class_index], dtype=np.float64)

    def peak(self, probability: F64) -> F64:
        """The rule's signal: the window's highest probability per link."""
        return np.asarray(np.nan_to_num(probability[:, : self.within_steps]).max(axis=1))

    def evaluate(
        self,
        issued: np.datetime64,
        predicted_util: F64,
        probability: F64 | None = None,
        measured: F64 | None = None,
    ) -> list[Alert]:
        """New alerts at ``issued``. ``measured`` is the utilisation of the step just
        measured (an episode that ended resolves its alert). Without ``probability`` this
        is the threshold rule on ``predicted_util``."""
        if probability is None:
            return super().evaluate(issued, predicted_util)
        p = self.p_per_link()
        window = np.nan_to_num(probability[:, : self.within_steps])
        peak = window.max(axis=1)
        hits = peak >= p
        ended = np.zeros_like(hits)
        if measured is not None:
            over = np.nan_to_num(np.asarray(measured, dtype=np.float64)) >= self.threshold
            ended = self._over & ~over  # the episode it announced is over
            self._over = over
            self._came |= self.active & over
        now_s = int(issued.astype("datetime64[s]").astype(np.int64))
        if self.expire:  # the window passed and the link never reached the threshold
            ended |= ~self._came & (now_s - self._raised_s >= self.within_steps * self.step_s)
        gone_ended = np.flatnonzero(self.active & ended)
        self.active &= ~ended
        new = hits & ~self.active
        self._raised_s[new] = now_s
        self._came[new] = False
        cleared = peak < p * self.clear_ratio
        gone = np.union1d(gone_ended, np.flatnonzero(self.active & cleared))
        self.active = (self.active | hits) & ~cleared
        self.resolved = [self.firing.pop(i) for i in map(int, gone) if i in self.firing]
        for i in map(int, gone):
            self.groups.pop(i, None)
        util = predicted_util[:, : self.within_steps]
        crossing = window >= p[:, None]
        stamp = str(issued.astype("datetime64[s]"))
        window_txt = format_duration(self.within_steps * self.step_s)
        alerts: list[Alert] = []
        for i in map(int, np.flatnonzero(new)):
            first = int(np.argmax(crossing[i])) + 1
            lead = first * self.step_s
            top = float(np.nanmax(util[i], initial=0.0))
            self.groups[i] = f"{stamp}/{self.classes[i]}"
            alerts.append(
                Alert(
                    name="LinkCapacityPredicted",
                    subject=self.links[i],
                    severity="critical" if top >= 1.0 else "warning",
                    value=top,
                    threshold=self.threshold,
                    issued=issued,
                    at=issued + np.timedelta64(lead, "s"),
                    lead_s=lead,
                    message=(
                        f"{self.links[i]}: P(>= {self.threshold:.0%} within {window_txt}) = "
                        f"{peak[i]:.0%} (alerting at {p[i]:.0%}; predicted peak {top:.0%}, "
                        f"likely from {format_duration(lead)}; group {self.groups[i]})"
                    ),
                )
            )
            self.firing[i] = alerts[-1]
        return alerts
