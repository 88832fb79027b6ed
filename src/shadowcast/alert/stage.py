"""The alert stage of one step: evaluate the rule, label, notify, resolve, re-send.

``deliver`` is what the service loop runs after each link prediction: new alerts get their
labels (the application class carrying most of the link's predicted load, the team from
``alert.teams``) and go to every notifier; alerts whose link cleared go out as resolved;
the alerts still firing are handed to each notifier's ``refresh``.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from shadowcast.alert.base import Notifier
from shadowcast.alert.policy import ProbabilityRule
from shadowcast.alert.rules import CapacityRule
from shadowcast.records import F64, Alert, Forecast


def team_of(link: str, teams: Mapping[str, str], default: str = "unassigned") -> str:
    """The team of the first glob (in order) that matches ``link``."""
    for glob, team in teams.items():
        if fnmatch.fnmatchcase(link, glob):
            return team
    return default


def dominant_class(
    routing: Any, classes: Sequence[str], by_class: Mapping[str, Forecast], link: int
) -> str:
    """The class with the largest predicted peak load on ``link`` under ``routing`` (a
    ``RoutingState``: ``matrix(cls)`` is ``[n_links, n_od]``)."""
    peaks = [
        float(np.max(routing.matrix(c)[link] @ by_class[c].mean, initial=0.0)) for c in classes
    ]
    return classes[int(np.argmax(peaks))] if peaks else ""


def deliver(
    rule: CapacityRule,
    notifiers: Sequence[Notifier],
    issued: np.datetime64,
    util: F64,
    *,
    teams: Mapping[str, str] | None = None,
    class_of_link: Callable[[int], str] | None = None,
    probability: F64 | None = None,
    measured: F64 | None = None,
) -> tuple[list[Alert], list[Alert]]:
    """(new alerts, resolved alerts) of this step, every notifier told. A
    :class:`ProbabilityRule` also takes ``probability`` (P(link >= threshold) per step
    ahead) and ``measured`` (the utilisation of the step just measured)."""
    index = {name: i for i, name in enumerate(rule.links)}
    new = []
    if isinstance(rule, ProbabilityRule):
        raised = rule.evaluate(issued, util, probability, measured)
    else:
        raised = rule.evaluate(issued, util)
    for a in raised:
        labels = {"team": team_of(a.subject, teams or {})}
        if class_of_link is not None:
            labels["class"] = class_of_link(index[a.subject])
        if isinstance(rule, ProbabilityRule) and index[a.subject] in rule.groups:
            labels["group"] = rule.groups[index[a.subject]]
        labelled = dataclasses.replace(a, labels=labels)
        rule.firing[index[a.subject]] = labelled
        new.append(labelled)
    resolved = list(rule.resolved)
    for n in notifiers:
        for a in new:
            n.send(a)
        for a in resolved:
            n.resolve(a, issued)
        n.refresh(list(rule.firing.values()), issued)
    return new, resolved
