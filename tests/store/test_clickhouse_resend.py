"""A write cut short on the way (the server frozen until the client gives up) is sent again
without storing a row twice: only the rows the server lacks are sent (store/clickhouse_resend).
Its own server, since the test freezes it (SIGSTOP) and thaws it (SIGCONT)."""

from __future__ import annotations

import importlib.util
import os
import signal
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from shadowcast.errors import StoreError
from shadowcast.store.clickhouse import ClickHouseStore
from shadowcast.store.clickhouse_local import local_servers, server_command
from shadowcast.store.clickhouse_resend import Unsure, common_prefix
from shadowcast.store.conform import conform
from shadowcast.store.synth import random_table


def test_common_prefix_finds_a_retry_of_the_same_rows() -> None:
    a = conform("alerts", random_table("alerts", 10, seed=1))
    b = conform("alerts", random_table("alerts", 10, seed=2))
    u = Unsure(a, pa.array(range(10)).to_numpy(), [])
    assert common_prefix(u, a) == 10
    assert common_prefix(u, a.slice(0, 4)) == 4  # the spool retries the head alone
    assert common_prefix(u, pa.concat_tables([a, b])) == 10  # or with newer rows after
    assert common_prefix(u, b) == 0  # other rows: not a retry
    rest = u.rest(4)
    assert rest is not None and rest.data.num_rows == 6 and u.rest(10) is None


@pytest.mark.integration
@pytest.mark.parametrize("freeze_s", [2.5])
def test_a_write_cut_short_by_a_frozen_server_lands_once(
    tmp_path: Path, freeze_s: float, caplog: pytest.LogCaptureFixture
) -> None:
    if server_command() is None or importlib.util.find_spec("clickhouse_driver") is None:
        pytest.skip("clickhouse-server and clickhouse-driver needed")
    with local_servers(tmp_path) as (server,):
        store = ClickHouseStore([server.address], "resend", connect_timeout_s=1, timeout_s=1)
        try:
            first = conform("flows", random_table("flows", 1000, seed=1))
            cut = conform("flows", random_table("flows", 20_000, seed=2))
            store.write("flows", first)
            os.kill(server.pid, signal.SIGSTOP)
            try:
                with pytest.raises(StoreError):
                    store.write("flows", cut)  # the client gives up after timeout_s
            finally:
                time.sleep(freeze_s - 1)
                os.kill(server.pid, signal.SIGCONT)
            # the same rows again (as the spool retries them): each lands once
            deadline = time.monotonic() + 30
            while True:
                try:
                    store.write("flows", cut)
                    break
                except StoreError:
                    assert time.monotonic() < deadline
                    time.sleep(0.2)
            got = store.read("flows")
            assert got.num_rows == 21_000
            want = pc.sum(first.column("bytes")).as_py() + pc.sum(cut.column("bytes")).as_py()
            assert pc.sum(got.column("bytes")).as_py() == want
            settled = [r for r in caplog.records if r.getMessage() == "cut-short write settled"]
            assert len(settled) == 1  # the retry was recognised and checked row by row
            had, sent = settled[0].__dict__["had"], settled[0].__dict__["sent"]
            assert had + sent == 20_000
            print(f"\ncut-short insert: the server had {had} rows, {sent} sent again")
        finally:
            store.close()


@pytest.mark.integration
def test_a_write_whose_answer_was_lost_is_not_stored_twice(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stored the rows but the client never heard (the connection dropped after
    the INSERT): the retry finds them all and sends nothing."""
    if server_command() is None or importlib.util.find_spec("clickhouse_driver") is None:
        pytest.skip("clickhouse-server and clickhouse-driver needed")
    from shadowcast.store.clickhouse_io import Connection

    with local_servers(tmp_path) as (server,):
        store = ClickHouseStore([server.address], "lost", connect_timeout_s=1, timeout_s=5)
        try:
            rows = conform("od_series", random_table("od_series", 3000, seed=3))
            real = Connection.run
            lost = [True]

            def run(self: Connection, sql: str, *a: object, **kw: object) -> object:
                out = real(self, sql, *a, **kw)  # type: ignore[arg-type]
                if sql.startswith("INSERT") and lost[0]:
                    lost[0] = False
                    raise StoreError("write to 'od_series' failed: connection lost") from EOFError()
                return out

            monkeypatch.setattr(Connection, "run", run)
            with pytest.raises(StoreError):
                store.write("od_series", rows)
            store.write("od_series", rows.slice(0, 1000))  # the spool retries the head alone
            store.write("od_series", rows.slice(1000))  # then the rest
            assert store.count("od_series") == 3000
            settled = [r for r in caplog.records if r.getMessage() == "cut-short write settled"]
            assert [(r.__dict__["had"], r.__dict__["sent"]) for r in settled] == [
                (1000, 0),
                (2000, 0),
            ]
        finally:
            store.close()
