"""Durations as operators write them: ``30s``, ``15m``, ``1h``, ``2d``, ``1w``.

The one duration grammar of every option and setting: a positive number (decimals allowed)
and a unit ``s``, ``m`` (or ``min``), ``h``, ``d`` or ``w``; a bare number is seconds.
Durations longer than :data:`MAX_DURATION_S` (100 years) are refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Annotated

from pydantic import AfterValidator, BeforeValidator

from shadowcast.errors import ConfigError

_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|min|m|h|d|w)?\s*$")
MAX_DURATION_S = 100 * 365 * 86400
_HINT = "expected e.g. 30s, 15m, 1h, 2d, 1w"


def parse_duration(text: str | int | float) -> int:
    """Seconds in ``text`` (``"15m"`` -> 900; ``900`` -> 900). Raises ConfigError otherwise."""
    if isinstance(text, bool):
        raise ConfigError(f"not a duration: {text!r} ({_HINT})")
    if isinstance(text, int | float):
        secs = float(text)
    else:
        m = _RE.match(text)
        if m is None:
            raise ConfigError(f"not a duration: {text[:40]!r} ({_HINT})")
        secs = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not math.isfinite(secs) or round(secs) <= 0:
        raise ConfigError(f"duration must be positive, got {text!r}")
    if secs > MAX_DURATION_S:
        raise ConfigError(f"duration {text!r} is longer than 100 years")
    return int(round(secs))


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


def ceil_steps(horizons_s: Sequence[int], step_s: int) -> list[int]:
    """Durations in seconds -> steps at the data's step, rounded up (at least 1 step each)."""
    if step_s <= 0:
        raise ConfigError(f"series step must be positive, got {step_s}")
    return [max(1, math.ceil(h / step_s - 1e-9)) for h in horizons_s]


def _valid(text: str) -> str:
    try:
        parse_duration(text)
    except ConfigError as exc:  # pydantic reports ValueErrors with the field's path
        raise ValueError(str(exc)) from None
    return text


def _text(value: object) -> object:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return f"{value:g}s"
    return value


#: A settings field holding a duration in the grammar above (kept as written; a bare
#: number in YAML is seconds).
Duration = Annotated[str, BeforeValidator(_text), AfterValidator(_valid)]
