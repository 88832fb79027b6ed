"""The changes ``eval feedback`` injects: each changes what it says, from its onset, and
nothing else."""

from __future__ import annotations

import numpy as np
import pytest

from shadowcast.datasets.synthetic import WEEKEND
from shadowcast.errors import ConfigError
from shadowcast.feedback.scenarios import NEW_KIND, SCENARIOS, SHIFT_KIND, build_scenario
from shadowcast.network.routing import routing_matrix
from shadowcast.taxonomy import LATENCY_SENSITIVITY

DAYS = 2.5
TAX = dict(LATENCY_SENSITIVITY)


@pytest.fixture(scope="module")
def base():  # type: ignore[no-untyped-def]
    # a link failure changes the routing, not the demand: its series are the untouched ones
    return build_scenario("link-failure", days=DAYS, onset_day=1.5, taxonomy=TAX)


def _stacked(scn):  # type: ignore[no-untyped-def]
    return np.stack([scn.stacked(t) for t in range(scn.steps)])


def test_level_shift_raises_one_kind_at_one_site_by_60_percent(base) -> None:  # type: ignore[no-untyped-def]
    scn = build_scenario("level-shift", days=DAYS, onset_day=1.5, taxonomy=TAX)
    o = scn.onset
    assert scn.times_s[o] - scn.times_s[0] == int((1.5 * 24 + 10) * 3600)
    site = scn.description.split(" ")[4]
    touches = np.array([site in od for od in scn.od_pairs])
    assert 0 < touches.sum() < touches.size
    for k, v in scn.by_kind.items():
        raw = base.by_kind[k]
        np.testing.assert_array_equal(v[:o], raw[:o])
        if k == SHIFT_KIND:
            np.testing.assert_allclose(v[o:, touches], raw[o:, touches] * 1.6, rtol=1e-6)
            np.testing.assert_array_equal(v[o:, ~touches], raw[o:, ~touches])
        else:
            np.testing.assert_array_equal(v, raw)
    # affected: exactly the video class's series from or to the site
    cls = scn.classes.index(scn.class_of[SHIFT_KIND])
    n = len(scn.od_pairs)
    expect = np.zeros(len(scn.classes) * n, dtype=bool)
    expect[cls * n : (cls + 1) * n] = touches
    np.testing.assert_array_equal(scn.affected, expect)


def test_new_application_appears_from_nothing_and_grows(base) -> None:  # type: ignore[no-untyped-def]
    scn = build_scenario("new-application", days=DAYS, onset_day=1.5, taxonomy=TAX)
    o = scn.onset
    new = scn.by_kind[NEW_KIND]
    assert not new[:o].any() and (new[o:].sum(axis=1) > 0).all()
    others = sum(v for k, v in scn.by_kind.items() if k != NEW_KIND)
    share = new[o:].sum(axis=1) / others[o:].sum(axis=1)
    assert share[0] == pytest.approx(0.15, rel=1e-3)
    assert share[-1] > share[0] * 2  # grown (to 60 % after a day)
    np.testing.assert_array_equal(_stacked(scn)[:o], _stacked(base)[:o])
    assert scn.affected.sum() == len(scn.od_pairs)


def test_pattern_change_puts_a_weekday_on_the_weekend_profile(base) -> None:  # type: ignore[no-untyped-def]
    scn = build_scenario("pattern-change", days=DAYS, onset_day=1.5, taxonomy=TAX)
    o = scn.onset
    assert (scn.times_s[o] - scn.times_s[0]) % 86400 == 0  # from midnight
    day = 86400 // scn.step_s
    raw = base
    for k, f in WEEKEND.items():
        np.testing.assert_allclose(scn.by_kind[k][o : o + day], raw.by_kind[k][o : o + day] * f,
                                   rtol=1e-6)  # fmt: skip
        np.testing.assert_array_equal(scn.by_kind[k][:o], raw.by_kind[k][:o])
    assert scn.affected.all()


def test_link_failure_moves_link_loads_not_demand(base) -> None:  # type: ignore[no-untyped-def]
    scn = build_scenario("link-failure", days=DAYS, onset_day=1.5, taxonomy=TAX)
    assert scn.kind == "link" and scn.routing_after is not None
    failed = [i for i, name in enumerate(scn.topology.link_names()) if name in scn.description]
    assert len(failed) == 2
    after = scn.routing_after.toarray()
    assert not after[failed].any()  # nothing crosses the failed links
    np.testing.assert_allclose(after.sum(axis=0) > 0, True)  # every pair still routed
    before = routing_matrix(scn.topology, scn.od_pairs).toarray()
    t = scn.onset
    total = sum(v[t] for v in scn.by_kind.values()).astype(np.float64)
    moved = np.abs(before @ total - after @ total) > 1e-6
    np.testing.assert_array_equal(scn.affected, moved)
    assert scn.affected[failed].all()
    # the demand itself is what the untouched synthetic backbone carries
    plain = build_scenario("level-shift", days=DAYS, onset_day=1.5, taxonomy=TAX)
    np.testing.assert_array_equal(_stacked(scn)[: scn.onset], _stacked(plain)[: scn.onset])
    assert scn.by_kind.keys() == plain.by_kind.keys()
    for k, v in scn.by_kind.items():
        if k != SHIFT_KIND:
            np.testing.assert_array_equal(v, plain.by_kind[k])


def test_sampling_change_halves_what_one_site_exports(base) -> None:  # type: ignore[no-untyped-def]
    scn = build_scenario("sampling-change", days=DAYS, onset_day=1.5, taxonomy=TAX)
    o = scn.onset
    a, b = _stacked(scn), _stacked(base)
    site = scn.description.split(" ")[2]
    src = np.tile(np.array([s == site for s, _ in scn.od_pairs]), len(scn.classes))
    np.testing.assert_array_equal(scn.affected, src)
    np.testing.assert_allclose(a[o:][:, src], 0.5 * b[o:][:, src], rtol=1e-5)
    np.testing.assert_array_equal(a[:o], b[:o])
    np.testing.assert_array_equal(a[:, ~src], b[:, ~src])


def test_an_unknown_scenario_or_onset_is_refused() -> None:
    with pytest.raises(ConfigError, match="--scenario: 'nope' is not one of level-shift"):
        build_scenario("nope", taxonomy=TAX)
    with pytest.raises(ConfigError, match="onset"):
        build_scenario("level-shift", days=2.0, onset_day=3.0, taxonomy=TAX)
    assert len(SCENARIOS) == 5


@pytest.mark.slow
def test_eval_feedback_end_to_end_on_a_short_series() -> None:
    """new-application over 3 days (the change on the third), through the command line:
    the drift is seen within 6 steps, the feedback beats the frozen models, coverage was
    honest before and comes back within the issue's 12 steps (the adapting series' widths
    from their recent scores; 14 steps with an adaptive step)."""
    import json

    from typer.testing import CliRunner

    from shadowcast.cli import app

    args = ["eval", "feedback", "--scenario", "new-application", "--days", "3", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["scenario"] == "new-application" and doc["series"] == 702
    assert doc["steps_to_detect"] is not None and 0 <= doc["steps_to_detect"] <= 6
    assert doc["nmae_adaptive"] < doc["nmae_frozen"]
    assert abs(doc["coverage_80_before"] - 0.8) <= 0.05
    assert doc["steps_to_recover"] is not None and doc["steps_to_recover"] <= 12
    # the feedback keeps coverage closer to 80 % than the frozen models after the change
    assert abs(doc["coverage_80_after"] - 0.8) < abs(doc["coverage_80_after_frozen"] - 0.8)
    assert set(doc) >= {
        "steps_to_detect", "coverage_80_before", "coverage_80_after", "steps_to_recover",
        "nmae_adaptive", "nmae_frozen", "promotions",
    }  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("name", ["level-shift", "pattern-change"])
def test_eval_feedback_sees_a_shift_a_follower_absorbs(name: str) -> None:
    """The two changes a model that follows its last value absorbs within a step or two
    (one site's video +60 %; a holiday, small on each series but common to all of them)
    are seen within the issue's 6 steps by the second drift test, on the errors of the
    forecasts made 6 steps ahead; the holiday in each class's backbone-wide group. With the
    one-step test and site groups alone they were never seen, and seen after 65 steps."""
    import json

    from typer.testing import CliRunner

    from shadowcast.cli import app

    args = ["eval", "feedback", "--scenario", name, "--days", "3", "--json"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["steps_to_detect"] is not None and 0 <= doc["steps_to_detect"] <= 6, doc
    assert doc["nmae_adaptive"] < doc["nmae_frozen"], doc
    assert doc["steps_to_recover"] is not None and doc["steps_to_recover"] <= 12, doc


def test_eval_feedback_refuses_bad_input_in_one_line() -> None:
    from typer.testing import CliRunner

    from shadowcast.cli import app

    res = CliRunner().invoke(app, ["eval", "feedback", "--scenario", "nope"])
    assert res.exit_code == 2 and "--scenario: 'nope' is not one of level-shift" in res.output
    res = CliRunner().invoke(app, ["eval", "feedback", "--days", "1"])
    assert res.exit_code == 2 and "--days: 1.0 is not in [2.5, 28]" in res.output
