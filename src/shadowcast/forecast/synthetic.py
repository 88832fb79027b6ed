"""Synthetic, seeded demand-like series for tests and benchmarks (documented as synthetic).

Per series: a log-normal volume (spanning ~4 orders of magnitude), a daily cycle with a
per-series phase (time zones) and depth, a weekend dip, AR(1) multiplicative noise, rare
spikes, and a slow growth trend. Values are Mbit/s-like and non-negative.
"""

from __future__ import annotations

import numpy as np

from shadowcast.records import SeriesFrame


def synthetic_frame(
    n: int,
    steps: int = 2016,
    step: int = 300,
    *,
    seed: int = 0,
    start: str = "2024-03-04T00:00:00",
) -> SeriesFrame:
    """``steps`` x ``n`` synthetic series at ``step`` seconds (default: one week of 5 min)."""
    rng = np.random.default_rng(seed)
    t0 = np.datetime64(start, "s")
    times = t0 + np.arange(steps) * np.timedelta64(step, "s")
    tsec = np.arange(steps, dtype=np.float64) * step
    day = (tsec % 86400) / 86400.0
    dow = ((tsec // 86400).astype(np.int64) + int(t0.astype(np.int64) // 86400 + 3)) % 7
    volume = rng.lognormal(2.0, 1.5, n)
    phase = rng.uniform(-0.1, 0.1, n)
    depth = rng.uniform(0.3, 0.8, n)
    cycle = 1.0 + depth[None, :] * np.sin(2 * np.pi * (day[:, None] - 0.375 + phase[None, :]))
    weekend = np.where(dow >= 5, 0.75, 1.0)[:, None]
    growth = 1.0 + rng.uniform(0.0, 0.002, n)[None, :] * (tsec[:, None] / 86400.0)
    rho = 0.8
    eps = rng.standard_normal((steps, n)) * rng.uniform(0.05, 0.25, n)[None, :]
    ar = np.empty_like(eps)
    ar[0] = eps[0]
    for i in range(1, steps):
        ar[i] = rho * ar[i - 1] + eps[i] * np.sqrt(1 - rho * rho)
    spikes = 1.0 + (rng.random((steps, n)) < 0.002) * rng.uniform(0.5, 2.0, (steps, n))
    values = volume[None, :] * cycle * weekend * growth * np.exp(ar) * spikes
    keys = tuple(f"s{i}" for i in range(n))
    return SeriesFrame(times=times, keys=keys, values=values, step=step)
