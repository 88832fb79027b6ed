"""Batcher: batches leave by size or by age, whole and in order."""

from __future__ import annotations

import time

import pyarrow as pa
import pytest

from shadowcast.collect.batcher import Batcher

SCHEMA = pa.schema([("x", pa.int64())])


def rows(*xs: int) -> pa.Table:
    return pa.table({"x": pa.array(xs, pa.int64())}, schema=SCHEMA)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_flushes_by_size() -> None:
    b = Batcher(SCHEMA, max_rows=5, max_age_s=3600)
    b.add(rows(1, 2))
    assert not b.due()
    b.add(rows(3, 4))
    assert not b.due()
    b.add(rows(5, 6))
    assert b.due() and b.rows == 6
    out = b.take()
    assert out["x"].to_pylist() == [1, 2, 3, 4, 5, 6]
    assert b.rows == 0 and not b.due()


def test_flushes_by_age_of_the_oldest_rows() -> None:
    clock = Clock()
    b = Batcher(SCHEMA, max_rows=1000, max_age_s=1.0, clock=clock)
    assert not b.due() and b.time_left() == 1.0
    clock.t += 5  # an empty batcher is never due, however long it waits
    assert not b.due()
    b.add(rows(1))
    clock.t += 0.6
    b.add(rows(2))
    assert not b.due()
    assert b.time_left() == pytest.approx(0.4)
    clock.t += 0.4
    assert b.due()
    assert b.take()["x"].to_pylist() == [1, 2]
    b.add(rows(3))  # the age restarts with the next rows
    assert not b.due()


def test_flushes_by_time_on_the_real_clock() -> None:
    b = Batcher(SCHEMA, max_rows=1000, max_age_s=0.2)
    b.add(rows(1))
    assert not b.due()
    time.sleep(0.25)
    assert b.due()


def test_empty_rows_and_empty_take() -> None:
    b = Batcher(SCHEMA, max_rows=1, max_age_s=1)
    b.add(rows())
    assert b.rows == 0 and not b.due()
    out = b.take()
    assert out.num_rows == 0 and out.schema == SCHEMA


def test_rejects_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        Batcher(SCHEMA, max_rows=0, max_age_s=1)
    with pytest.raises(ValueError):
        Batcher(SCHEMA, max_rows=1, max_age_s=0)
