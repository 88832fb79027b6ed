"""Rolling accuracy per series and grouping, and the ledger that feeds it."""

from __future__ import annotations

import numpy as np
import pytest

from shadowcast.feedback.accuracy import RollingAccuracy, interval_score
from shadowcast.feedback.ledger import Ledger


def test_interval_score_is_width_plus_penalised_misses() -> None:
    y = np.array([5.0, 0.0, 20.0])
    lo, hi = np.full(3, 2.0), np.full(3, 10.0)
    got = interval_score(y, lo, hi, 80.0)
    # alpha = 0.2: misses cost 2 / 0.2 = 10 per unit outside
    assert got == pytest.approx([8.0, 8.0 + 10 * 2.0, 8.0 + 10 * 10.0])
    upper_only = interval_score(y, np.full(3, -np.inf), hi, 80.0, mean=np.full(3, 6.0))
    assert upper_only == pytest.approx([4.0, 4.0, 4.0 + 100.0])


def test_metrics_per_group_and_decile() -> None:
    n = 20
    codes = np.repeat([0, 1], 10)
    acc = RollingAccuracy(
        {"od": n}, [80.0], halflife_steps=1e9, groupings={"od": {"class": (codes, ["a", "b"])}}
    )
    actual = np.arange(1.0, n + 1)
    mean = actual.copy()
    mean[10:] *= 0.5  # class b forecasts half its actuals: bias +0.5, nmae 0.5
    persist = actual * 1.1
    lo, hi = mean * 0.9, mean * 1.1
    for _ in range(5):
        acc.update("od", "m", "15m", actual, mean, persist, {80.0: lo}, {80.0: hi})
    rows = {r["group"]: r for r in acc.metrics("od", by="class")}
    assert rows["a"]["nmae"] == pytest.approx(0.0)
    assert rows["a"]["coverage_80"] == pytest.approx(1.0)
    assert rows["b"]["nmae"] == pytest.approx(0.5)
    assert rows["b"]["bias"] == pytest.approx(0.5)
    assert rows["b"]["coverage_80"] == pytest.approx(0.0)
    assert rows["b"]["mase"] == pytest.approx(0.5 / 0.1)
    assert rows["b"]["interval_score_80"] > rows["a"]["interval_score_80"]
    dec = {r["group"]: r for r in acc.metrics("od", by="decile")}
    assert set(dec) == {f"d{i}" for i in range(1, 11)}
    assert dec["d1"]["nmae"] == pytest.approx(0.0)  # the two smallest series are class a
    assert dec["d10"]["nmae"] == pytest.approx(0.5)
    (total,) = acc.metrics("od")
    assert total["group"] == "all" and 0 < total["nmae"] < 0.5
    with pytest.raises(KeyError, match="no grouping 'site'"):
        acc.metrics("od", by="site")


def test_ledger_scores_into_rolling_accuracy_and_survives_a_restart() -> None:
    acc = RollingAccuracy({"od": 3}, [80.0])
    led = Ledger({"5m": 1, "10m": 2}, 300, accuracy=acc)
    mean = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])
    led.issue("od", 300, "m", mean, {80.0: mean - 1}, {80.0: mean + 1}, np.ones(3), version=4)
    led.observe("od", 300, np.array([1.0, 3.0, 5.0]))
    assert led.pending == 1
    again = Ledger({"5m": 1, "10m": 2}, 300)
    assert again.load_state(led.state())
    assert not Ledger({"5m": 1}, 300).load_state(led.state())
    again.observe("od", 600, np.array([2.0, 4.0, 8.0]))
    (s10,) = [r for r in again.summary() if r["horizon"] == "10m"]
    assert s10["nmae"] == pytest.approx(2.0 / 14.0)
    assert again.pending == 0
    (r5,) = acc.metrics("od", label="5m")
    assert r5["nmae"] == 0.0 and r5["coverage_80"] == 1.0
