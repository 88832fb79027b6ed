"""The neural model (needs torch, the optional neural extra; skipped without it) and the
registry's answer when torch is absent."""

from __future__ import annotations

import pickle
import sys

import numpy as np
import pytest

from shadowcast.errors import MissingExtraError
from shadowcast.forecast.ensemble import Ensemble, resolve_members
from shadowcast.forecast.registry import make_model
from shadowcast.records import SeriesFrame

from .conftest import FAST_NEURAL, HAS_TORCH, needs_torch
from .conftest import check_forecast as _check
from .test_exog import DAY, _head, _online_nmae, driven_frame


def test_without_torch_the_registry_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    with pytest.raises(MissingExtraError, match=r"shadowcast-netops\[neural\]"):
        make_model("neural")


def test_without_torch_auto_leaves_the_neural_member_out(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "torch" else real(n, *a)
    )
    names = [m.name for m in resolve_members(["persistence", "gbm", "neural"])]  # type: ignore[attr-defined]
    assert names == ["persistence", "gbm"]
    ens = Ensemble(members=["persistence", "neural"])
    assert [m.name for m in ens.members] == ["persistence"]


@needs_torch
def test_auto_takes_the_neural_member_where_torch_is() -> None:
    assert HAS_TORCH
    assert "neural" in [m.name for m in Ensemble().members]


def _daily(n: int = 12, days: int = 4, seed: int = 0) -> SeriesFrame:
    """Strong daily cycles with per-series phase and level, mild noise."""
    rng = np.random.default_rng(seed)
    T = days * DAY
    t = np.arange(T)
    level = rng.lognormal(3.0, 0.7, n)
    phase = rng.uniform(0, 1, n)
    cyc = 1 + 0.6 * np.sin(2 * np.pi * (t[:, None] / DAY + phase[None, :]))
    v = level * cyc * (1 + 0.02 * rng.standard_normal((T, n)))
    times = np.datetime64("2024-01-01T00:00", "s") + t * np.timedelta64(300, "s")
    return SeriesFrame(times, tuple(f"a{i}->b{i % 4}" for i in range(n)), v, 300)


@needs_torch
def test_neural_learns_the_daily_cycle() -> None:
    """One hour ahead on strong daily cycles: far better than persistence (measured
    0.17-0.19 x persistence over seeds 0-2)."""
    f = _daily()
    split = 3 * DAY
    m = make_model("neural", epochs=20, threads=1).fit(_head(f, split))
    err = base = 0.0
    for o in range(split - 1, f.values.shape[0] - 12, 6):
        fc = m.predict(12)
        err += float(np.abs(fc.mean[:, 11] - f.values[o + 12]).sum())
        base += float(np.abs(f.values[o] - f.values[o + 12]).sum())
        m.update(f.values[o + 1 : o + 7])
    assert err / base < 0.5


@needs_torch
def test_neural_is_deterministic_and_pickles() -> None:
    f = _daily(n=6, days=3)
    a = make_model("neural", **FAST_NEURAL).fit(f)
    b = make_model("neural", **FAST_NEURAL).fit(f)
    fa, fb = a.predict(12, [80, 95]), b.predict(12, [80, 95])
    np.testing.assert_array_equal(fa.mean, fb.mean)
    _check(fa.mean, fa.lower, fa.upper, 6, 12)
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(c.predict(12, [80, 95]).mean, fa.mean)
    c.update(f.values[-1])
    a.update(f.values[-1])
    np.testing.assert_array_equal(c.predict(4).mean, a.predict(4).mean)
    assert a.train_report["fits"] == 2 and a.train_report["best_epochs"] >= 1
    assert str(a._dev()) in ("cpu", "cuda")  # type: ignore[attr-defined]


@needs_torch
def test_neural_trains_again_online_every_refit_every() -> None:
    """Updates that add ``refit_every`` of rows train the network again on what it keeps
    (the forecasts change); without ``refit_every`` they never do."""
    f = _daily(n=6, days=3)
    head, rest = _head(f, 2 * DAY), f.values[2 * DAY :]
    on = make_model("neural", **FAST_NEURAL, refit_every="1h").fit(head)
    off = make_model("neural", **FAST_NEURAL, refit_every=None).fit(head)
    fits = on.train_report["fits"]
    assert off.train_report["fits"] == fits
    for m in (on, off):
        m.update(rest[:11])
    assert on.train_report["fits"] == fits  # 55 min of new rows: not yet
    np.testing.assert_array_equal(on.predict(4).mean, off.predict(4).mean)
    for m in (on, off):
        m.update(rest[11:12])
    assert on.train_report["fits"] == fits + 1 and off.train_report["fits"] == fits
    assert not np.array_equal(on.predict(4).mean, off.predict(4).mean)


@needs_torch
def test_neural_uses_exog_known_at_the_origin() -> None:
    """Same data as the GBM's exog test: the input known at t tells what demand does at
    t + 40 min."""
    f = driven_frame()
    split = 3 * DAY
    opts = {"epochs": 15, "threads": 1}
    without = _online_nmae(f, split, exog=False, model=("neural", opts))
    with_ = _online_nmae(f, split, exog=True, model=("neural", opts))
    print(f"neural 1h NMAE without exog {without[12]:.4f}, with {with_[12]:.4f}")
    assert with_[12] < 0.85 * without[12]  # measured 0.079 against 0.132


@needs_torch
def test_neural_never_reads_after_the_origin() -> None:
    f = driven_frame(n=6, days=3)
    m = make_model("neural", **FAST_NEURAL).fit(f)
    origins = np.arange(DAY, 2 * DAY, 7, dtype=np.int64)
    hs = np.array([1, 3, 12], dtype=np.int64)
    before = m._point_at(m._y, origins, hs, None)
    last = int(origins[-1])
    y = m._y.copy()
    y[last + 1 :] *= 3.0
    m._xbuf["abw_mbps"][last + 1 :] = -5.0
    np.testing.assert_array_equal(m._point_at(y, origins, hs, None), before)
