"""The probability rule, its resolution at the end of an episode, and the tuner's replay."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shadowcast.alert.policy import ProbabilityRule, exceedance, link_classes
from shadowcast.alert.tuner import PolicyTuner, p_grid
from shadowcast.feedback.outcomes import OutcomeJudge

STEP = 300
H = 12


def _rule(n: int = 1, **kw: object) -> ProbabilityRule:
    return ProbabilityRule([f"l{i}" for i in range(n)], 0.9, H, STEP, 0.95, **kw)  # type: ignore[arg-type]


def _at(t: int) -> np.datetime64:
    return np.datetime64(t * STEP, "s")


def test_exceedance_from_the_mean_and_the_widest_bound() -> None:
    cap = np.array([100.0, 100.0, 100.0])
    mean = np.array([[90.0], [80.0], [95.0]])
    z95 = 1.959963984540054
    upper = {80.0: mean + 5.0, 95.0: np.array([[90.0 + z95 * 10], [80.0 + z95 * 5], [np.nan]])}
    p = exceedance(mean, upper, cap, 0.9)[:, 0]
    assert p[0] == pytest.approx(0.5)  # the mean on the limit
    assert p[1] == pytest.approx(0.02275, abs=1e-4)  # two sigmas below
    assert p[2] == 1.0  # no bound there: the mean alone decides
    assert exceedance(mean, {}, cap, 0.9)[:, 0].tolist() == [1.0, 0.0, 1.0]


def test_link_classes_by_glob_then_capacity_band() -> None:
    names = ["A->B", "B->C", "C->D", "D->E"]
    caps = np.array([1000.0, 10_000.0, 40_000.0, 400_000.0])
    assert link_classes(names, caps, {"A->*": "edge"}) == ["edge", "<=10G", "<=100G", ">100G"]
    assert link_classes(names, caps, {}, (10.0,)) == ["<=10G", "<=10G", ">10G", ">10G"]


def test_alert_resolves_at_episode_end_and_alerts_again_for_the_next() -> None:
    rule = _rule()
    prob = np.full((1, H), 0.9)  # the probability stays high throughout
    util = np.full((1, H), 0.95)
    first = rule.evaluate(_at(0), util, prob, np.array([0.5]))
    assert len(first) == 1 and rule.active[0]
    assert rule.evaluate(_at(1), util, prob, np.array([0.95])) == []  # episode under way
    assert rule.evaluate(_at(2), util, prob, np.array([0.95])) == []
    again = rule.evaluate(_at(3), util, prob, np.array([0.5]))  # the episode ended
    assert [a.subject for a in rule.resolved] == ["l0"]
    assert len(again) == 1 and again[0].issued == _at(3)  # the next episode's own alert
    assert "group" in again[0].message


def test_alert_resolves_when_the_probability_falls_below_the_clear_level() -> None:
    rule = _rule(p={"all": 0.6})
    util = np.full((1, H), 0.8)
    assert len(rule.evaluate(_at(0), util, np.full((1, H), 0.7), np.array([0.5]))) == 1
    assert rule.evaluate(_at(1), util, np.full((1, H), 0.58), np.array([0.5])) == []
    assert rule.resolved == [] and rule.active[0]  # 0.58 >= 0.6 x 0.95: still firing
    assert rule.evaluate(_at(2), util, np.full((1, H), 0.5), np.array([0.5])) == []
    assert [a.subject for a in rule.resolved] == ["l0"] and not rule.active[0]


def test_p_per_class() -> None:
    rule = _rule(2, classes=["core", "edge"], p={"core": 0.3}, default_p=0.8)
    prob = np.array([[0.5] * H, [0.5] * H])
    alerts = rule.evaluate(_at(0), np.full((2, H), 0.9), prob, None)
    assert [a.subject for a in alerts] == ["l0"]  # 0.5 >= 0.3 (core), < 0.8 (edge)
    assert rule.p_per_link().tolist() == [0.3, 0.8]


def _history(seed: int, T: int = 600, L: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic history: measured utilisation wandering over and under 0.9 and a
    noisy early-warning probability (the probability of the coming hour)."""
    rng = np.random.default_rng(seed)
    base = 0.8 + 0.12 * np.sin(np.arange(T)[:, None] / (7.0 + np.arange(L)) + rng.uniform(0, 6, L))
    util = base + rng.normal(0, 0.03, (T, L))
    ahead = np.vstack([util[6:], np.repeat(util[-1:], 6, axis=0)])
    sig = 1.0 / (1.0 + np.exp(-(ahead - 0.9) * 40 + rng.normal(0, 1.0, (T, L))))
    sig[:5] = np.nan  # no forecast yet
    return sig, util


def _judged(sig: np.ndarray, util: np.ndarray, p: float, expire: bool) -> dict[str, object]:
    """The rule run step by step and judged by the OutcomeJudge (the service's way)."""
    T, L = util.shape
    rule = _rule(L, p={"all": p}, expire=expire)
    judge = OutcomeJudge(rule.links, 0.9, H, STEP)
    for t in range(T):
        if np.isfinite(sig[t]).any():
            judge.forecasting(t * STEP)
            prob = np.repeat(sig[t][:, None], H, axis=1)
            measured = util[t - 1] if t >= 1 else None
            judge.on_alerts(rule.evaluate(_at(t), np.full((L, H), 0.9), prob, measured))
        judge.observe(t * STEP, util[t])
    return judge.summary()


@pytest.mark.parametrize("expire", [False, True])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_the_tuners_replay_matches_the_rule_judged_by_outcomes(seed: int, expire: bool) -> None:
    sig, util = _history(seed)
    tuner = PolicyTuner(["all"] * util.shape[1], H, 0.9, 0.95, grid=(0.2, 0.5, 0.8), expire=expire)
    for t in range(len(util)):
        tuner.record(None if np.isnan(sig[t]).all() else sig[t], util[t])
    curve = tuner.replay()
    assert len(curve) == 3
    for pt in curve:
        doc = _judged(sig, util, pt.p, expire)
        assert doc["episodes"] > 3
        assert (pt.alerts, pt.true_alerts) == (doc["alerts"], doc["true_alerts"])
        assert (pt.episodes, pt.announced) == (doc["episodes"], doc["episodes_announced"])
        lead = doc["lead_minutes_median"]
        assert pt.lead_steps_median == (None if lead is None else pytest.approx(lead / 5))


def _built(tuner: PolicyTuner, link: int, true_p: float) -> None:
    """Alerts at probability 0.9 always come true; at 0.4 they do half the time; 0.2
    never: a step every 48 with a probability, an episode 3 steps later when it is true."""
    n = len(tuner.classes)
    for k in range(30):  # 1440 steps, within the tuner's week
        pr = (0.9, 0.4, 0.2)[k % 3]
        comes = pr >= true_p if pr != 0.4 else (k // 3) % 2 == 0
        for j in range(48):
            sig = np.zeros(n)
            util = np.zeros(n)
            if j == 2:
                sig[link] = pr
            if comes and 5 <= j < 8:
                util[link] = 1.0
            tuner.record(sig, util)


def test_the_tuner_picks_the_lowest_p_reaching_the_precision() -> None:
    tuner = PolicyTuner(["a"], H, 0.9, 0.95, target_precision=0.8, grid=p_grid(0.1, 0.9, 0.1))
    _built(tuner, 0, 0.5)
    chosen = tuner.tune()
    # p <= 0.2: every alert (precision 0.5); p in (0.2, 0.4]: 0.9s and 0.4s (0.75);
    # p > 0.4: only the 0.9s (1.0): the lowest reaching 0.8 is 0.5
    assert chosen == {"a": 0.5}
    by_p = {pt.p: pt for pt in tuner.curves["a"]}
    assert by_p[0.2].precision == pytest.approx(0.5)
    assert by_p[0.3].precision == pytest.approx(0.75)
    assert by_p[0.5].precision == 1.0
    # 15 episodes, the first too early to count; p >= 0.5 announces the 0.9s but the first
    assert by_p[0.2].recall == 1.0 and by_p[0.5].recall == pytest.approx(9 / 14)
    tuner.target = 0.7
    assert tuner.tune() == {"a": 0.3}


def test_the_tuner_chooses_per_class_and_sets_the_rule() -> None:
    classes = ["core", "edge"]
    tuner = PolicyTuner(
        classes, H, 0.9, 0.95, target_precision=0.8, grid=p_grid(0.1, 0.9, 0.1), every_steps=1440
    )
    for link, pr_true in ((0, 0.5), (1, 0.1)):
        sub = PolicyTuner(["x"] * 2, H, 0.9, 0.95)
        _built(sub, link, pr_true)
        if link == 0:
            sig = np.vstack(list(sub.signal))
            over = np.vstack(list(sub.over))
        else:
            sig += np.vstack(list(sub.signal))
            over |= np.vstack(list(sub.over))
    for t in range(len(sig)):
        tuner.step(over[t].astype(float), sig[t])  # issued at its end: one step earlier
    rule = _rule(2, classes=classes)
    assert tuner.maybe_tune(rule) == {"core": 0.5, "edge": 0.1}  # edge: every alert came true
    assert rule.p == {"core": 0.5, "edge": 0.1}
    assert tuner.maybe_tune(rule) is None  # not due again yet
    report = tuner.report()
    assert report["p"] == {"core": 0.5, "edge": 0.1} and set(report["curves"]) == set(classes)


@pytest.mark.parametrize("expire", [False, True])
def test_an_alert_whose_window_passed_without_the_link_over_expires(expire: bool) -> None:
    rule = _rule(expire=expire)
    prob, util, under = np.full((1, H), 0.9), np.full((1, H), 0.95), np.array([0.5])
    assert len(rule.evaluate(_at(0), util, prob, under)) == 1
    for t in range(1, H):  # the window: steps 0 .. H-1, measured under the threshold
        assert rule.evaluate(_at(t), util, prob, under) == []
    again = rule.evaluate(_at(H), util, prob, under)
    assert len(again) == (1 if expire else 0)
    assert [a.subject for a in rule.resolved] == (["l0"] if expire else [])


def test_alert_settings_are_checked_at_load(tmp_path: Path) -> None:
    from shadowcast.errors import ConfigError
    from shadowcast.settings import load_settings

    for text, field in (
        ("alert:\n  p_min: 0.9\n  p_max: 0.2\n", "p_min"),
        ("alert:\n  p: {core: 1.5}\n", "alert.p"),
        ("alert:\n  policy: guess\n", "alert.policy"),
        ("alert:\n  tune_every: 900d\n", "tune_every"),
    ):
        f = tmp_path / "s.yaml"
        f.write_text(text)
        with pytest.raises(ConfigError, match=field):
            load_settings(f, environ={})


def test_without_evidence_reaching_the_target_p_stays() -> None:
    tuner = PolicyTuner(["a"], H, 0.9, 0.95, target_precision=0.8, grid=p_grid(0.1, 0.9, 0.1))
    _built(tuner, 0, 0.5)
    tuner.min_alerts = 11  # p >= 0.5 reaches the target with 10 alerts only: not enough
    rule = _rule(classes=["a"], p={"a": 0.6})
    tuner.every = 1
    tuner.step(np.zeros(1), None)
    assert tuner.maybe_tune(rule) == {} and rule.p == {"a": 0.6}
    assert tuner.curves["a"]  # the curve is still there to read
