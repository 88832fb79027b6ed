"""Where every stage reads the time: the wall clock in production, a simulated one in replays.

A stage never calls ``time.time()`` for anything that decides what it does (bucket
boundaries, idle timeouts, retrain schedules, alert times); it asks its :class:`Clock`.
The same service code then runs live, and a week-long replay runs in minutes on a
:class:`SimClock` that the replay advances one step at a time.

Times are UTC ``numpy.datetime64[s]`` (``now()``) or float seconds since the epoch
(``time()``) for the places that keep rates and token buckets.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol

import numpy as np

Instant = np.datetime64


class Clock(Protocol):
    """The one source of time for the service's stages."""

    def now(self) -> np.datetime64:
        """The current time, UTC, ``datetime64[s]``."""
        ...

    def time(self) -> float:
        """The current time in seconds since the epoch (for rates and token buckets)."""
        ...

    def sleep_until(self, when: np.datetime64, stop: threading.Event | None = None) -> bool:
        """Wait until ``when`` (or ``stop`` is set); False when stopped first."""
        ...


def to_seconds(t: np.datetime64) -> int:
    """Whole seconds since the epoch."""
    return int(t.astype("datetime64[s]").astype(np.int64))


class WallClock:
    """The real time."""

    def now(self) -> np.datetime64:
        return np.datetime64(int(time.time()), "s")

    def time(self) -> float:
        return time.time()

    def sleep_until(self, when: np.datetime64, stop: threading.Event | None = None) -> bool:
        while True:
            left = to_seconds(when) - time.time()
            if left <= 0:
                return True
            if stop is not None:
                if stop.wait(min(left, 1.0)):
                    return False
            else:
                time.sleep(min(left, 1.0))


class SimClock:
    """A clock that moves only when told to (``set``/``advance``); sleeping returns at once
    with the clock moved to the wake-up time."""

    def __init__(self, start_s: int) -> None:
        self._now_s = int(start_s)
        self._lock = threading.Lock()

    def now(self) -> np.datetime64:
        return np.datetime64(self.time_s(), "s")

    def time_s(self) -> int:
        with self._lock:
            return self._now_s

    def time(self) -> float:
        return float(self.time_s())

    def set(self, when_s: int) -> None:
        with self._lock:
            if when_s < self._now_s:
                raise ValueError(f"a simulated clock does not go back ({when_s} < {self._now_s})")
            self._now_s = int(when_s)

    def advance(self, seconds: int) -> int:
        with self._lock:
            self._now_s += int(seconds)
            return self._now_s

    def sleep_until(self, when: np.datetime64, stop: threading.Event | None = None) -> bool:
        if stop is not None and stop.is_set():
            return False
        target = to_seconds(when)
        with self._lock:
            self._now_s = max(self._now_s, target)
        return True
