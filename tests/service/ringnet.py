"""A small backbone whose bottleneck overloads every afternoon (service tests)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import numpy as np

from shadowcast.records import DemandSeries, Link, Topology
from shadowcast.replay.source import TrafficSource

STEP = 900  # 15 minutes: 96 steps a day


def ring() -> Topology:
    """A-B is thin (50 Mbit/s); A-C-D-B is a long way round with room."""
    links = []
    for a, b, cap in (("A", "B", 50e6), ("A", "C", 400e6), ("C", "D", 400e6), ("D", "B", 400e6)):
        links += [Link(a, b, cap), Link(b, a, cap)]
    return Topology("ring", ("A", "B", "C", "D"), tuple(links))


def small_source(days: int = 3, seed: int = 0) -> TrafficSource:
    topo = ring()
    pairs = tuple((a, b) for a in topo.nodes for b in topo.nodes if a != b)
    T = days * 96
    times = np.datetime64("2026-03-02T00:00:00", "s") + np.arange(T) * np.timedelta64(STEP, "s")
    rng = np.random.default_rng(seed)
    hour = (np.arange(T) % 96) / 4.0
    shape = 0.35 + 0.65 * np.exp(-(((hour - 15.0) / 3.0) ** 2))  # afternoon peak
    base = np.full(len(pairs), 4.0)
    base[pairs.index(("A", "B"))] = 60.0  # peaks at 60 Mbit/s over a 50 Mbit/s link
    total = shape[:, None] * base[None, :] * (1 + 0.03 * rng.standard_normal((T, len(pairs))))
    total = np.clip(total, 0, None).astype(np.float32)
    kinds = {"video": 0.5, "bulk": 0.35, "voip": 0.15}
    by_kind = {k: (total * f).astype(np.float32) for k, f in kinds.items()}
    dem = DemandSeries(times, pairs, total, STEP, topo.nodes, "test ring")
    return TrafficSource(topo, dem, by_kind, "test ring")


def stop_after(steps: int) -> tuple[threading.Event, Callable[[int], None]]:
    """A replay's ``stop`` event and ``progress`` callback that stop it after ``steps``."""
    stop = threading.Event()
    seen = [0]

    def progress(n: int) -> None:
        seen[0] += n
        if seen[0] == steps:
            stop.set()

    return stop, progress
