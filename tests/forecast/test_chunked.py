"""The service's chunked model: the same forecasts fitted here or on a Dask scheduler, kept
by pickle without its connection, and a scheduler that is away fails the fit by name."""

from __future__ import annotations

import pickle
import socket

import numpy as np
import pytest

from shadowcast.errors import ForecastError
from shadowcast.forecast.chunked import ChunkedForecaster
from shadowcast.forecast.cycle import ForecastCycle
from shadowcast.forecast.registry import make_model
from shadowcast.forecast.synthetic import synthetic_frame

from .conftest import opts

distributed = pytest.importorskip("dask.distributed")


def _same(a, b) -> None:  # type: ignore[no-untyped-def]
    np.testing.assert_array_equal(a.mean, b.mean)
    for lv in a.lower:
        np.testing.assert_array_equal(a.lower[lv], b.lower[lv])
        np.testing.assert_array_equal(a.upper[lv], b.upper[lv])


def test_chunks_forecast_as_their_models_do() -> None:
    f = synthetic_frame(23, 400, 300, seed=3)
    hist, new = f.values[:-5], f.values[-5:]
    frame = f.rows(0, len(f.times) - 5)
    m = ChunkedForecaster("theta", opts("theta"), chunk_series=10).fit(frame)
    assert m.bounds == [(0, 10), (10, 20), (20, 23)] and m.keys == f.keys
    for k in range(new.shape[0]):
        m.update(new[k : k + 1])
    got = m.predict(6, (80, 95))
    parts = []
    for a, b in m.bounds:  # what each chunk's own model says
        one = make_model("theta", **opts("theta")).fit(frame.columns(slice(a, b)))
        for k in range(new.shape[0]):
            one.update(new[k : k + 1, a:b])
        parts.append(one.predict(6, (80, 95)))
    np.testing.assert_array_equal(got.mean, np.concatenate([p.mean for p in parts]))
    assert got.mean.shape == (23, 6) and hist.shape[1] == 23
    with pytest.raises(ForecastError, match=r"expected \(k, 23\)"):
        m.update(new[:, :5])
    again = pickle.loads(pickle.dumps(m))  # the cycle saves its models
    _same(again.predict(6, (80, 95)), got)


@pytest.mark.slow
def test_dask_scheduler_fits_the_same_models() -> None:
    f = synthetic_frame(30, 500, 300, seed=5)
    frame = f.rows(0, 495)
    local = ChunkedForecaster("auto", opts("auto"), chunk_series=12).fit(frame)
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        address = cluster.scheduler_address
        remote = ChunkedForecaster("auto", opts("auto"), chunk_series=12, scheduler=address)
        remote.fit(frame)
    for m in (local, remote):
        for k in range(495, 500):
            m.update(f.values[k : k + 1])
    _same(local.predict(12, (80, 95)), remote.predict(12, (80, 95)))
    assert pickle.loads(pickle.dumps(remote)).scheduler == address


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_scheduler_away_fails_the_fit_and_the_cycle_keeps_its_models() -> None:
    addr = f"tcp://127.0.0.1:{_closed_port()}"
    away = ChunkedForecaster("persistence", {}, scheduler=addr, connect_timeout_s=1)
    with pytest.raises(ForecastError, match="forecast.dask_scheduler"):
        away.fit(synthetic_frame(4, 50, 300))
    # in the service's cycle: the first fit here, a refit on the scheduler that is away
    calls: list[str | None] = []

    def factory() -> ChunkedForecaster:
        sched = None if not calls else addr
        calls.append(sched)
        return ChunkedForecaster("persistence", {}, scheduler=sched, connect_timeout_s=1)

    od = [("a", "b"), ("b", "a")]
    cyc = ForecastCycle(factory, "persistence", ["x"], od, 300, horizon_steps=3,
                        warmup_s=1200, retrain_every_s=1800)  # fmt: skip
    t = 1_700_000_000
    for k in range(12):
        cyc.observe(t + 300 * k, {"x": np.array([10.0 + k, 5.0])})
    assert calls[0] is None and addr in calls, "the refit was tried on the scheduler"
    assert cyc.version == 1 and cyc.ready  # the failed refit kept version 1
    fc = cyc.predict()
    assert fc is not None and fc.by_class["x"].mean[0, 0] == 21.0  # still updated every step
