"""Page-Hinkley drift detection on scaled errors, per series group."""

from __future__ import annotations

import numpy as np

from shadowcast.feedback.drift import DriftDetector, single_groups, site_groups

OD = [(a, b) for a in "ABCD" for b in "ABCD" if a != b]
CLASSES = ("high", "low")


def _run(shift_at: int | None, steps: int = 400, factor: float = 1.6, seed: int = 3):
    rng = np.random.default_rng(seed)
    members, names = site_groups(CLASSES, OD)
    n = len(CLASSES) * len(OD)
    det = DriftDetector("od", n, members, names)
    level = rng.uniform(50, 200, n)
    hit = np.zeros(n, dtype=bool)
    hit[[i for i, (a, _) in enumerate(OD) if a == "B"]] = True  # "high" from site B
    events = []
    for t in range(steps):
        truth = level * (1 + 0.3 * np.sin(2 * np.pi * t / 288))
        y = truth * (1 + 0.05 * rng.standard_normal(n))
        if shift_at is not None and t >= shift_at:
            y = np.where(hit, y * factor, y)
        events += det.update(t * 300, y, truth)
    return events, names


def test_a_level_shift_is_detected_within_six_steps_on_its_group() -> None:
    events, _ = _run(shift_at=200)
    assert events, "no drift detected"
    first = events[0]
    assert 0 <= first.time_s // 300 - 200 < 6
    assert first.group == "high@B>"
    assert first.direction == 1
    assert first.series == 3


def test_stationary_noise_raises_no_drift() -> None:
    for seed in range(3):
        events, _ = _run(shift_at=None, seed=seed)
        assert events == []


def test_a_drop_is_detected_downwards() -> None:
    events, _ = _run(shift_at=200, factor=0.5)
    assert events and events[0].direction == -1


def test_state_round_trips() -> None:
    members, names = single_groups(["l1", "l2"])
    a = DriftDetector("link", 2, members, names, min_steps=2)
    rng = np.random.default_rng(0)
    for t in range(10):
        a.update(t, rng.uniform(1, 2, 2), np.ones(2))
    b = DriftDetector("link", 2, members, names, min_steps=2)
    assert b.load_state(a.state())
    assert b.steps == a.steps and np.allclose(b.mu, a.mu)
    assert not DriftDetector("link", 3, (np.arange(3), np.arange(3)), ["a", "b", "c"]).load_state(
        a.state()
    )
