"""Application categories and their default latency sensitivity (no heavy imports).

Re-exported by :mod:`shadowcast.records`; kept apart so the settings load without numpy.
"""

from __future__ import annotations

from collections.abc import Mapping

CATEGORIES: tuple[str, ...] = (
    "video",
    "bulk",
    "interactive",
    "voip",
    "web",
    "other",
    "unknown",
)
LATENCY_SENSITIVITY: Mapping[str, str] = {
    "video": "medium",
    "bulk": "low",
    "interactive": "high",
    "voip": "high",
    "web": "medium",
    "other": "low",
    "unknown": "low",
}
