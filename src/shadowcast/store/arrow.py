"""Build store batches from dense arrays without one Python object per row."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shadowcast.store.schema import TS


def ts_array(times: npt.NDArray[np.datetime64]) -> pa.Array:
    return pa.array(times.astype("datetime64[ms]"), type=TS)


def dict_array(codes: npt.NDArray[np.integer], names: Sequence[str]) -> pa.Array:
    """Strings as a dictionary array (codes into ``names``), cast to string by the store."""
    return pa.DictionaryArray.from_arrays(
        pa.array(np.asarray(codes, dtype=np.int32)), pa.array(list(names), type=pa.string())
    ).cast(pa.string())


def long_table(
    times: npt.NDArray[np.datetime64],
    keys: dict[str, tuple[npt.NDArray[np.integer], Sequence[str]]],
    values: dict[str, npt.NDArray[np.floating]],
    time_name: str = "time",
) -> pa.Table:
    """``values[name][t, j]`` -> rows (time t, key columns of j, value)."""
    first = next(iter(values.values()))
    n_t, n_j = first.shape
    cols: dict[str, pa.Array] = {time_name: ts_array(np.repeat(times, n_j))}
    for name, (codes, names) in keys.items():
        cols[name] = dict_array(np.tile(codes, n_t), names)
    for name, arr in values.items():
        cols[name] = pa.array(np.asarray(arr, dtype=np.float64).reshape(-1))
    return pa.table(cols)
