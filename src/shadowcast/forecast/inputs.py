"""Input groups: what a global model reads besides a series' own history.

Each group can be left out of any model (``exclude=("geography",)``, a BaseForecaster
option) to measure what it contributes (``eval forecast --ablate``):

* ``calendar``: time of day and week of the target, in UTC (Fourier terms, weekend flag);
* ``geography``: sites, regions, coordinates, distance and the local time of each end
  (:mod:`shadowcast.forecast.geo`);
* ``capacity``: bottleneck capacity and headroom of the series' current path, static
  (meta ``bottleneck_mbps``) and over time (exog ``capacity_mbps``, ``headroom_mbps``);
* ``shadow``: shadow-path measurements (exog ``abw_mbps``, ``rtt_ms``, ``owd_ms``,
  ``jitter_ms``, ``loss``);
* ``cross_series``: the recent change of the network total and of the series' source and
  destination totals.

Meta and exogenous inputs of an excluded group are dropped at ``fit`` (every model sees
the same frame); ``calendar`` and ``cross_series`` are features the models compute, which
they skip when excluded.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TypeVar

from shadowcast.errors import ConfigError
from shadowcast.forecast.geo import GEO_KEYS

V = TypeVar("V")

GROUPS = ("calendar", "geography", "capacity", "shadow", "cross_series")
CAPACITY_KEYS = ("bottleneck_mbps", "capacity_mbps", "headroom_mbps")
SHADOW_KEYS = ("abw_mbps", "rtt_ms", "owd_ms", "jitter_ms", "loss")
_MEMBERS: dict[str, tuple[str, ...]] = {
    "geography": GEO_KEYS,
    "capacity": CAPACITY_KEYS,
    "shadow": SHADOW_KEYS,
}


def check_groups(groups: Iterable[str]) -> tuple[str, ...]:
    """The groups, checked: an unknown name raises ConfigError listing the choices."""
    out = tuple(dict.fromkeys(groups))
    bad = sorted(set(out) - set(GROUPS))
    if bad:
        raise ConfigError(f"unknown input group(s) {bad}; choose from {list(GROUPS)}")
    return out


def group_of(name: str) -> str | None:
    """The group a meta or exogenous input belongs to (None: ungrouped, always kept)."""
    for g, names in _MEMBERS.items():
        if name in names:
            return g
    return None


def keep_inputs(inputs: Mapping[str, V], exclude: Sequence[str]) -> dict[str, V]:
    """``inputs`` (meta or exog, by name) without those of the ``exclude`` groups."""
    if not exclude:
        return dict(inputs)
    return {k: v for k, v in inputs.items() if group_of(k) not in exclude}


def present_groups(meta: Iterable[str], exog: Iterable[str]) -> list[str]:
    """The groups a frame's meta and exog names give data for, plus the computed ones."""
    have = {group_of(k) for k in [*meta, *exog]}
    return [g for g in GROUPS if g in have or g in ("calendar", "cross_series")]
