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


SITES = "ABCDEFGHIJKL"
WIDE = [(a, b) for a in SITES for b in SITES if a != b]


def _common(factor: float, spread_size: float, seed: int = 5) -> list[str]:
    """Every series of class "high" changes by ``factor`` from step 200 (a holiday): the
    groups that drifted, each once."""
    rng = np.random.default_rng(seed)
    members, names = site_groups(CLASSES, WIDE, backbone=True)
    n = len(CLASSES) * len(WIDE)
    det = DriftDetector("od", n, members, names, spread_size=spread_size)
    level = rng.uniform(50, 200, n)
    high = np.arange(n) < len(WIDE)
    drifted: list[str] = []
    for t in range(260):
        truth = level * (1 + 0.3 * np.sin(2 * np.pi * t / 288))
        y = truth * (1 + 0.05 * rng.standard_normal(n))
        if t >= 200:
            y = np.where(high, y * factor, y)
        drifted += [f"{e.group}:{e.time_s // 300 - 200}" for e in det.update(t * 300, y, truth)]
    return drifted


def test_a_change_small_on_each_series_but_common_to_all_is_seen_by_the_class_group() -> None:
    sites = float(len(SITES) - 1)
    drifted = _common(0.97, spread_size=sites)
    assert drifted, "a -3 % change on every high series went unseen"
    group, step = drifted[0].split(":")
    assert group == "high@*" and 0 <= int(step) < 6
    assert all(d.startswith("high@*") for d in drifted)  # no site group: too small there
    # with the whole floor on every group, the same change is lost in the noise
    assert _common(0.97, spread_size=float("inf")) == []
    assert _common(1.0, spread_size=sites) == []  # and no change raises nothing


def test_a_model_that_stops_being_biased_is_not_a_drift_after_rebase() -> None:
    def run(rebase: bool) -> list[int]:
        rng = np.random.default_rng(1)
        members, names = site_groups(CLASSES, WIDE, backbone=True)
        n = len(CLASSES) * len(WIDE)
        det = DriftDetector("od", n, members, names, spread_size=len(SITES) - 1)
        level = rng.uniform(50, 200, n)
        times = []
        for t in range(400):
            truth = level * (1 + 0.3 * np.sin(2 * np.pi * t / 288))
            y = truth * (1 + 0.05 * rng.standard_normal(n))
            bias = 1.15 if t < 200 else 1.0  # the old version forecast 15 % too high
            if rebase and t == 200:
                det.rebase()
            times += [e.time_s // 300 for e in det.update(t * 300, y, truth * bias)]
        return times

    assert run(rebase=False), "the bias vanishing is a change the test sees"
    assert run(rebase=True) == []
