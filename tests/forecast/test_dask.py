"""The Dask path gives the same forecasts as the local path."""

from __future__ import annotations

import numpy as np
import pytest

from shadowcast.forecast.distributed import chunks, fit_predict
from shadowcast.forecast.synthetic import synthetic_frame

from .conftest import opts

distributed = pytest.importorskip("dask.distributed")


def test_chunks_cover_all_series() -> None:
    f = synthetic_frame(23, 50, 300)
    parts = chunks(f, 10)
    assert [len(p.keys) for p in parts] == [10, 10, 3]
    np.testing.assert_array_equal(np.concatenate([p.values for p in parts], axis=1), f.values)


@pytest.mark.slow
def test_dask_equals_local() -> None:
    f = synthetic_frame(60, 600, 300, seed=5)
    o = opts("auto")
    local = fit_predict(f, "auto", 12, (80, 95), chunk_series=25, options=o)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        remote = fit_predict(f, "auto", 12, (80, 95), chunk_series=25, options=o, client=client)
    np.testing.assert_array_equal(local.mean, remote.mean)
    for lv in (80.0, 95.0):
        np.testing.assert_array_equal(local.lower[lv], remote.lower[lv])
        np.testing.assert_array_equal(local.upper[lv], remote.upper[lv])
    assert local.mean.shape == (60, 12)
