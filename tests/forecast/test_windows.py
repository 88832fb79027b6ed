"""The neural model's input windows (numpy only: these run without torch)."""

from __future__ import annotations

import numpy as np

from shadowcast.forecast.windows import WindowSpec, flat, targets, windows

DAY = 24


def _y(T: int = 10 * DAY, n: int = 3) -> np.ndarray:
    t = np.arange(T, dtype=np.float64)[:, None]
    return 10.0 + np.arange(n)[None, :] + 0.1 * t


def test_windows_read_only_up_to_the_origin() -> None:
    y = _y()
    spec = WindowSpec(day=DAY, H=4, recent=6, blocks=4, norm=3)
    o = np.array([3 * DAY, 9 * DAY], dtype=np.int64)
    i = np.array([0, 2], dtype=np.int64)
    floor = np.full(3, 1e-6)
    x, s = windows(y, floor, o, i, spec)
    assert x.shape == (2, spec.width)
    np.testing.assert_allclose(s, y[o - 1, i] + 1e-6)  # mean of the last 3 rows = middle one
    # recent: log1p(y[o - k] / s)
    np.testing.assert_allclose(x[:, 0], np.log1p(y[o, i] / s))
    np.testing.assert_allclose(x[:, 5], np.log1p(y[o - 5, i] / s))
    # the values one day before each target (h = 1: y[o + 1 - DAY])
    at = spec.recent + spec.blocks
    np.testing.assert_allclose(x[:, at], np.log1p(y[o + 1 - DAY, i] / s))
    # a week back: only the second origin reaches it (the first gets 0 and the flag 0)
    wk = at + spec.H + 1
    assert x[0, wk] == 0 and x[1, wk] > 0
    assert x[0, wk + spec.H] == 0 and x[1, wk + spec.H] == np.log1p(1.0)
    z = y.copy()
    z[o[0] + 1 :] = -1e6  # the future changes: nothing read from it
    x2, _ = windows(z, floor, o[:1], i[:1], spec)
    np.testing.assert_array_equal(x2[0], x[0])


def test_targets_and_their_mask() -> None:
    y = _y(30, 2)
    obs = np.ones_like(y, dtype=bool)
    obs[27, 1] = False
    o = np.array([25, 25], dtype=np.int64)
    i = np.array([0, 1], dtype=np.int64)
    z, m = targets(y, obs, o, i, np.array([2.0, 4.0]), 5)
    np.testing.assert_allclose(z[0, :4], 0.1 * np.arange(1, 5) / 2.0)
    np.testing.assert_array_equal(m[0], [1, 1, 1, 1, 0])  # row 30 is past the end
    np.testing.assert_array_equal(m[1], [1, 0, 1, 1, 0])  # row 27 was not observed
    assert z[1, 1] == 0.0


def test_flat_rows() -> None:
    y = _y(50, 2)
    y[:, 1] = 7.0
    y[40:, 0] = 3.0
    o = np.array([49, 49, 45, 45], dtype=np.int64)
    i = np.array([0, 1, 0, 1], dtype=np.int64)
    np.testing.assert_array_equal(flat(y, o, i, 10), [True, True, False, True])
    np.testing.assert_array_equal(flat(y, o[:1], i[:1], 5), [True])
