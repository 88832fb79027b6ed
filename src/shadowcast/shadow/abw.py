"""Available bandwidth from short paced trains, and congestion-onset detection.

Method (probe-gap model, Spruce family; the capacity ``C`` is known from the topology): a
train of ``n`` packets of ``L`` wire bytes is paced at ``C`` (gap ``L/C``); the reflector's
kernel receive timestamps give each pair's output gap. Through a FIFO tight link the
cross traffic arriving between a pair stretches its output gap, ``d_out = (L + X d_in)/C``,
so ``X = (C d_out - L) / d_in`` per pair and ``A = C - mean(X)``. One train costs
``n * L`` bytes and lasts ``n * L * 8 / C`` seconds (bounded burst); trains are seconds
apart, so the average probing rate stays under 1 % of ``C``. Measured in the lab
(bench/shadow.py): a dispersion-of-the-whole-train estimate was off by 50 % at 0 % load
because the Python sender is descheduled mid-train on a busy host (12-25 ms stalls) and
the catch-up burst reads as cross traffic; the per-pair form skips the stalled pairs.
pathChirp needs no capacity but relies on fine exponentially-spaced gaps that the same
stalls would corrupt.

Onset: forward one-way delay from light STAMP pings; congestion is declared when ``k``
consecutive samples exceed the running baseline (minimum) by ``threshold_ms`` or a sample
is lost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from shadowcast.shadow.stamp import StampRun

VXLAN_OVERHEAD = 50  # outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8
INNER_OVERHEAD = 42  # inner Ethernet 14 + IPv4 20 + UDP 8


def wire_bytes(payload: int, *, tunnel: bool = True) -> int:
    """Bytes a STAMP payload occupies on a (shaped) link, Ethernet header included."""
    return payload + INNER_OVERHEAD + (VXLAN_OVERHEAD if tunnel else 0)


def train_gap_s(payload: int, capacity_bps: float, *, tunnel: bool = True) -> float:
    """Pacing gap that puts a train on the wire at ``capacity_bps``."""
    return wire_bytes(payload, tunnel=tunnel) * 8.0 / capacity_bps


@dataclass(frozen=True, slots=True)
class TrainEstimate:
    abw_bps: float
    cross_bps: float
    pairs: int  # packet pairs sent on schedule and used
    received: int
    probe_bytes: int


def estimate_train(
    run: StampRun,
    capacity_bps: float,
    *,
    tunnel: bool = True,
    tolerance: float = 0.25,
    warmup: int = 4,
) -> TrainEstimate:
    """Available bandwidth from one train (NaN when fewer than 4 usable pairs).

    Per consecutive pair sent ``d_in`` apart (within ``tolerance`` of the paced gap) and
    received ``d_out`` apart at the reflector's kernel clock, the cross traffic that
    entered the tight link between them is ``(C * d_out - L) / d_in`` (Spruce's probe-gap
    formula); the train's estimate is ``C`` minus the mean over pairs. Pairs around a
    sender stall (the Python process descheduled) are skipped, not absorbed. The first
    ``warmup`` pairs are skipped too: the formula needs a busy tight-link queue, which the
    train itself builds (a shaper with banked tokens, like the lab's tbf, lets the first
    packets through early and biased the estimate upwards by ~1 Mbit/s at 60 % load)."""
    size = wire_bytes(run.size, tunnel=tunnel)
    sent_bytes = size * run.sent
    bits = size * 8.0
    gap = bits / capacity_bps
    ok = run.rseq >= 0
    both = ok[:-1] & ok[1:]
    d_in = np.diff(run.t1)
    d_out = np.diff(run.t2)
    use = both & (np.abs(d_in - gap) <= tolerance * gap) & (d_out > 0)
    use[: min(warmup, use.size)] = False
    if run.send_s is not None:  # a stall inside sendto delays the packet after t1
        slow = run.send_s > tolerance * gap
        use &= ~(slow[:-1] | slow[1:])
    n = int(use.sum())
    if n < 4:
        return TrainEstimate(math.nan, math.nan, n, int(ok.sum()), sent_bytes)
    cross = float(np.mean((capacity_bps * d_out[use] - bits) / d_in[use]))
    abw = min(capacity_bps, max(0.0, capacity_bps - cross))
    return TrainEstimate(abw, cross, n, int(ok.sum()), sent_bytes)


def combine(estimates: list[TrainEstimate]) -> float:
    """Median over trains (robust to a train hit by a cross-traffic burst)."""
    vals = [e.abw_bps for e in estimates if not math.isnan(e.abw_bps)]
    return float(np.median(vals)) if vals else math.nan


class OnsetDetector:
    """Flags congestion from forward one-way delay samples (seconds) and losses."""

    def __init__(self, threshold_ms: float = 8.0, k: int = 3) -> None:
        self.threshold_s = threshold_ms / 1e3
        self.k = k
        self.baseline = math.inf
        self.run = 0

    def update(self, owd_s: float) -> bool:
        """Feed one sample (NaN = lost); True once congestion is detected."""
        if math.isnan(owd_s):
            self.run += 1
        elif owd_s > self.baseline + self.threshold_s:
            self.run += 1
        else:
            self.baseline = min(self.baseline, owd_s)
            self.run = 0
        return self.run >= self.k
