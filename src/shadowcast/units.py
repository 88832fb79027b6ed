"""Durations and rates as operators write them: ``15m``, ``1h``, ``2d``, ``1w``."""

from __future__ import annotations

import re

from shadowcast.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$")


def parse_duration(text: str) -> int:
    """Seconds in ``text`` (``"15m"`` -> 900). Raises ConfigError on anything else."""
    m = _RE.match(text)
    if not m:
        raise ConfigError(f"not a duration: {text!r} (expected e.g. 30s, 15m, 1h, 2d, 1w)")
    return int(round(float(m.group(1)) * _UNITS[m.group(2)]))


def format_duration(seconds: int) -> str:
    """Shortest exact form: 900 -> ``15m``, 3600 -> ``1h``."""
    for unit in ("w", "d", "h", "m"):
        if seconds and seconds % _UNITS[unit] == 0:
            return f"{seconds // _UNITS[unit]}{unit}"
    return f"{seconds}s"


def horizon_steps(text: str, step_s: int) -> int:
    """Number of ``step_s`` steps in a horizon (at least 1); must divide evenly."""
    secs = parse_duration(text)
    if secs % step_s:
        raise ConfigError(f"horizon {text} is not a whole number of {step_s}s steps")
    return max(1, secs // step_s)
