"""``Store.read`` with ``ranges``: bounds on another timestamp column than the table's time
column (flows by ``time_end``), on every backend and through the service's store socket;
the backend filters, so only the matching rows come back (issue #16)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from shadowcast.errors import StoreError
from shadowcast.store.base import Store
from shadowcast.store.remote import RemoteStore, StoreSocket
from shadowcast.store.synth import DAY_MS, T0_MS, random_table


def ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def _flows() -> pa.Table:
    """Flows whose ``time_end`` is unrelated to their (sorted) ``time_start``; a few have
    none."""
    t = random_table("flows", 400, seed=11)
    end = t.column("time_end").to_pylist()
    for i in range(0, 400, 37):
        end[i] = None
    return t.set_column(t.schema.get_field_index("time_end"), "time_end",
                        pa.array(end, t.schema.field("time_end").type))  # fmt: skip


def _ms(col: pa.ChunkedArray) -> np.ndarray:
    return np.asarray(col.cast(pa.int64()).fill_null(-1).to_numpy(), dtype=np.int64)


def _readers(store: Store, tmp_path: Path) -> list[tuple[str, Store, StoreSocket | None]]:
    sock = StoreSocket(store, tmp_path / "s.sock")
    return [("direct", store, None), ("socket", RemoteStore(sock.path, 30), sock)]


def test_read_by_a_range_on_time_end(store: Store, tmp_path: Path) -> None:
    data = _flows()
    store.write("flows", data.slice(0, 250))
    store.write("flows", data.slice(250))
    start, end = _ms(data.column("time_start")), _ms(data.column("time_end"))
    a, b = T0_MS + DAY_MS // 4, T0_MS + DAY_MS // 2
    s0 = T0_MS + DAY_MS // 10
    for how, reader, sock in _readers(store, tmp_path):
        try:
            got = reader.read("flows", ranges={"time_end": (ts(a), ts(b))})
            want = data.filter(pa.array((end >= a) & (end < b)))
            assert 0 < got.num_rows < data.num_rows, how
            assert got.equals(want.cast(got.schema)), how  # exactly those, in insertion order
            both = reader.read("flows", ts(s0), None, ranges={"time_end": (ts(a), ts(b))})
            mask = (end >= a) & (end < b) & (start >= s0)
            assert both.equals(data.filter(pa.array(mask)).cast(got.schema)), how
            open_hi = reader.read("flows", ranges={"time_end": (ts(b), None)})
            assert open_hi.num_rows == int((end >= b).sum()), how  # nulls left out
            proto = int(data.column("proto")[0].as_py())
            some = reader.read("flows", where={"proto": str(proto)},
                               ranges={"time_end": (ts(a), ts(b))})  # fmt: skip
            assert some.num_rows == int(((end >= a) & (end < b) & (
                np.asarray(data.column("proto").to_numpy()) == proto)).sum()), how  # fmt: skip
            same = reader.read("flows", ts(a), ts(b), ranges={"time_start": (None, None)})
            assert same.equals(reader.read("flows", ts(a), ts(b))), how
        finally:
            if sock is not None:
                sock.close()


def test_a_range_on_a_column_that_is_not_a_timestamp_is_refused(
    store: Store, tmp_path: Path
) -> None:
    store.write("flows", _flows())
    for how, reader, sock in _readers(store, tmp_path):
        try:
            with pytest.raises(StoreError, match="'bytes'.*not a timestamp"):
                reader.read("flows", ranges={"bytes": (ts(T0_MS), None)})
            with pytest.raises(StoreError, match="no column 'nope'"):
                reader.read("flows", ranges={"nope": (ts(T0_MS), None)})
            assert reader.count("flows") == 400, how  # nothing lost
        finally:
            if sock is not None:
                sock.close()
