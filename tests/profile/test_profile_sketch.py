"""The transfer-size sketch: accuracy, and merges that equal a sketch of the union."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from shadowcast.profile.sketch import LogSketch, Sketches


def test_quantiles_within_relative_accuracy() -> None:
    rng = np.random.default_rng(1)
    v = rng.lognormal(10, 2.5, 50_000)
    ls = LogSketch(0.02)
    sk = ls.build(np.zeros(len(v), np.int64), v, 1)
    for q in (0.01, 0.5, 0.9, 0.99):
        true = np.sort(v)[int(np.floor(q * (len(v) - 1)))]
        assert abs(ls.quantile(sk, q)[0] - true) <= 0.02 * true + 1e-9


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0, 1e12, allow_nan=False), min_size=1, max_size=200),
    st.integers(1, 6),
)
def test_merge_equals_sketch_of_union(values: list[float], parts: int) -> None:
    ls = LogSketch(0.02)
    v = np.array(values)
    g = np.arange(len(v)) % parts
    per_part = ls.build(g, v, parts)
    merged = ls.merge(per_part, np.zeros(parts, np.int64), 1)
    whole = ls.build(np.zeros(len(v), np.int64), v, 1)
    assert merged.idx.tolist() == whole.idx.tolist()
    assert merged.cnt.tolist() == whole.cnt.tolist()
    for q in (0.0, 0.5, 0.99, 1.0):
        assert ls.quantile(merged, q)[0] == ls.quantile(whole, q)[0]


def test_arrow_round_trip_and_empty_rows() -> None:
    ls = LogSketch(0.05)
    sk = ls.build(np.array([0, 0, 2]), np.array([10.0, 1e6, 5.0]), 4)
    idx, cnt = sk.to_arrow()
    back = Sketches.from_arrow(idx, cnt)
    assert back.totals().tolist() == [2, 0, 1, 0]
    q = ls.quantile(back, 0.5)
    assert np.isnan(q[1]) and np.isnan(q[3])
    assert abs(q[2] - 5.0) <= 0.05 * 5.0
