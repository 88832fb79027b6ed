"""Input windows for the neural model (numpy only: built and tested without torch).

For a forecast of series ``i`` made at origin ``o`` (only ``y[: o + 1]`` is read), with
``s = mean(y[o - w + 1 .. o]) + floor[i]`` the series' recent level (``w`` = one hour):

* ``recent``: the last ``recent`` values ``y[o - k] / s`` (k < recent);
* ``pooled``: the last day as ``blocks`` block means (N-HiTS's multi-rate input pooling:
  the far past at a coarse rate), ``/ s``;
* ``yesterday``: the values one day before each target, ``y[o + h - day] / s`` for
  ``h = 1 .. H`` (what followed this time of day yesterday), 0 and flagged where the
  history does not reach back a day; ``last_week`` the same a week back;
* ``log s`` and the share of a day the history covers.

Every array is ``[R, F]`` for rows ``(o[r], i[r])``; the level ``s[R]`` comes back too (the
model's targets are ``(y[o + h] - y[o]) / s`` and its forecasts are scaled back by it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from shadowcast.records import F64

I64 = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """Window sizes in rows: ``recent`` raw values, a day pooled into ``blocks``, ``H``
    target steps, ``norm`` rows for the level."""

    day: int
    H: int
    recent: int = 24
    blocks: int = 24
    norm: int = 12

    @property
    def block(self) -> int:
        return max(1, self.day // self.blocks)

    @property
    def reach(self) -> int:
        """Rows before the earliest origin that the windows read."""
        return max(7 * self.day, self.recent, self.block * self.blocks, self.norm)

    @property
    def width(self) -> int:
        return self.recent + self.blocks + 2 * self.H + 4


def windows(y: F64, floor: F64, o: I64, i: I64, spec: WindowSpec) -> tuple[F64, F64]:
    """Features ``[R, spec.width]`` and levels ``s[R]`` (see the module docstring)."""
    lo = max(0, int(o.min()) - spec.reach) if o.size else 0
    hi = int(o.max()) + 1 if o.size else 0
    sub = y[lo:hi]
    oo = o - lo
    c = np.concatenate([np.zeros((1, y.shape[1])), np.cumsum(sub, axis=0)])

    def mean_over(end: I64, start: I64) -> F64:  # mean of sub[start:end] (clamped at 0)
        a = np.maximum(start, 0)
        b = np.maximum(end, a + 1)
        return np.asarray((c[b, i] - c[a, i]) / (b - a), dtype=np.float64)

    s = mean_over(oo + 1, oo + 1 - spec.norm) + floor[i]
    inv = 1.0 / s
    cols: list[F64] = []
    for k in range(spec.recent):
        cols.append(sub[np.maximum(oo - k, 0), i] * inv)
    b = spec.block
    for j in range(spec.blocks):
        end = oo + 1 - j * b
        cols.append(mean_over(end, end - b) * inv)
    for back in (spec.day, 7 * spec.day):
        for h in range(1, spec.H + 1):
            t = o + h - back * int(np.ceil(h / back))  # absolute row (never past o)
            ok = t >= 0
            v = sub[np.clip(t - lo, 0, sub.shape[0] - 1), i] * inv
            cols.append(np.where(ok, v, 0.0))
        cols.append((o + 1 - back >= 0).astype(np.float64))
    cols.append(np.log(s))
    cols.append(np.minimum(1.0, (o + 1) / max(1, spec.day)).astype(np.float64))
    x = np.stack(cols, axis=1)
    x[:, : spec.recent + spec.blocks + 2 * (spec.H + 1)] = np.log1p(
        np.clip(x[:, : spec.recent + spec.blocks + 2 * (spec.H + 1)], 0.0, 50.0)
    )  # heavy bursts: a log scale (y / s = 1 is log 2)
    return x, s


def targets(y: F64, obs: npt.NDArray[np.bool_], o: I64, i: I64, s: F64, H: int) -> tuple[F64, F64]:
    """Normalised changes ``(y[o + h] - y[o]) / s`` for ``h = 1 .. H`` and their mask (1 where
    the target lies in ``y`` and was observed) -> ``([R, H], [R, H])``."""
    T = y.shape[0]
    hs = np.arange(1, H + 1)
    t = o[:, None] + hs[None, :]
    ok = t <= T - 1
    tc = np.minimum(t, T - 1)
    ii = np.broadcast_to(i[:, None], tc.shape)
    mask = ok & obs[tc, ii]
    z = (y[tc, ii] - y[o, i][:, None]) / s[:, None]
    return np.where(mask, z, 0.0), mask.astype(np.float64)


def flat(y: F64, o: I64, i: I64, rows: int) -> npt.NDArray[np.bool_]:
    """Whether series ``i`` did not change over the ``rows`` rows up to origin ``o``
    (``y[o - rows + 1 .. o]`` all equal; fewer rows near the start)."""
    lo = max(0, int(o.min()) - rows) if o.size else 0
    sub = y[lo : int(o.max()) + 1] if o.size else y[:0]
    d = np.abs(np.diff(sub, axis=0, prepend=sub[:1]))
    c = np.concatenate([np.zeros((1, y.shape[1])), np.cumsum(d, axis=0)])
    oo = o - lo
    a = np.maximum(oo + 2 - rows, 0)  # changes inside the window: rows a .. oo
    return np.asarray((c[oo + 1, i] - c[np.minimum(a, oo + 1), i]) == 0.0, dtype=np.bool_)
