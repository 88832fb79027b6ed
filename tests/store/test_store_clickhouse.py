"""What only the ClickHouse backend promises: rollups, shards, migrations, credentials,
the null mapping, and the SQL each server version gets (the contract suite covers the rest).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from shadowcast.errors import StoreError
from shadowcast.store import clickhouse_query as q
from shadowcast.store.base import AggQuery
from shadowcast.store.clickhouse import ClickHouseStore
from shadowcast.store.clickhouse_io import Connection, parse_host
from shadowcast.store.clickhouse_local import server_command
from shadowcast.store.clickhouse_sql import Features, Layout, alter_ttl, create_table
from shadowcast.store.config import StoreConfig, open_store
from shadowcast.store.synth import DAY_MS, T0_MS, random_table, synthetic_flows

ConfigFor = Callable[..., StoreConfig]
CH = [pytest.param(p, marks=pytest.mark.integration) for p in ("clickhouse", "clickhouse:cluster")]
OLD = Features.detect((18, 16), set(), set())
NEW = Features.detect(
    (24, 3), {"insert_deduplication_token"}, {"non_replicated_deduplication_window"}
)


def ts(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def open_ch(config_for: ConfigFor, backend: str, **ch: object) -> ClickHouseStore:
    s = open_store(config_for(backend, clickhouse=ch))
    assert isinstance(s, ClickHouseStore)
    return s


# -- SQL per server version (no server) -------------------------------------------------------


def test_sql_differs_by_server_version_only_where_it_must() -> None:
    assert (OLD.ttl, OLD.dedup_token) == (False, False)
    assert (NEW.ttl, NEW.dedup_token) == (True, True)
    assert Features.detect((19, 6), set(), set()).ttl
    layout = Layout("db", "c1")
    old = create_table(layout, "flows", OLD, retention_days=7)
    new = create_table(layout, "flows", NEW, retention_days=7)
    assert len(old) == len(new) == 2  # the shard's MergeTree, then the Distributed table
    assert "TTL" not in old[0] and "dedup" not in old[0]  # 18.16 knows neither
    assert "TTL toDateTime" in new[0] and "toIntervalSecond(604800)" in new[0]
    assert "non_replicated_deduplication_window" in new[0]
    assert old[1] == new[1] and "cityHash64(`exporter`)" in old[1]
    assert "PARTITION BY toYYYYMMDD" in old[0] and "`db`.`flows_local`" in old[0]
    assert alter_ttl(layout, "od_series", 90, OLD) is None
    assert "MODIFY TTL" in str(alter_ttl(layout, "od_series", 90, NEW))
    single = create_table(Layout("db"), "od_series", OLD)
    assert len(single) == 1 and "`db`.`od_series`" in single[0]


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("ch1:9001", ("ch1", 9001)),
        ("ch1", ("ch1", 9000)),
        ("[::1]:9440", ("::1", 9440)),
        ("::1", ("::1", 9000)),
    ],
)
def test_parse_host(spec: str, want: tuple[str, int]) -> None:
    assert parse_host(spec) == want


@pytest.mark.parametrize("spec", ["ch1:x", "ch1:0", "ch1:70000", ":9000", "a b:1"])
def test_parse_host_rejects(spec: str) -> None:
    with pytest.raises(StoreError, match="ClickHouse host"):
        parse_host(spec)


def test_rollup_is_chosen_only_when_exact() -> None:
    t0 = ts(T0_MS // 3_600_000 * 3_600_000)
    assert q.rollup_step(AggQuery("flows", 300, by=["app"], values=["bytes"])) == 300
    assert q.rollup_step(AggQuery("flows", 86_400, by=["exporter"], values=["bytes"])) == 3600
    assert q.rollup_step(AggQuery("flows", 600, values=["bytes"], agg="avg", start=t0)) == 300
    assert q.rollup_step(AggQuery("flows", 120, agg="count")) == 60
    for query in (
        AggQuery("flows", 30, values=["bytes"]),  # finer than every rollup
        AggQuery("flows", 300, values=["bytes"], agg="max"),  # not kept
        AggQuery("flows", 300, by=["src_port"], values=["bytes"]),  # not a dimension
        AggQuery("flows", 300, values=["bytes"], where={"dst_as": "1"}),
        AggQuery("flows", 300, values=["bytes"], start=t0 + timedelta(seconds=1)),
        AggQuery("od_series", 300, values=["mbps"]),
    ):
        assert q.rollup_step(query) is None, query


# -- on a server and a two-shard cluster ------------------------------------------------------


def _queries(t0: datetime) -> list[AggQuery]:
    return [
        AggQuery("flows", 300, by=["app"], values=["bytes"]),
        AggQuery("flows", 3600, by=["exporter", "category"], values=["bytes", "packets"]),
        AggQuery("flows", 900, values=["bytes"], agg="avg", where={"app": "app01"}),
        AggQuery("flows", 60, by=["src_site"], agg="count", start=t0, end=t0 + timedelta(hours=3)),
        AggQuery("flows", 86_400, by=["proto"], values=["packets"], agg="count"),
    ]


def _same(a: pa.Table, b: pa.Table) -> None:
    assert a.schema == b.schema and a.num_rows == b.num_rows
    for name in a.column_names:
        x, y = a.column(name).to_pylist(), b.column(name).to_pylist()
        if pa.types.is_floating(a.schema.field(name).type):
            assert x == pytest.approx(y, rel=1e-9)
        else:
            assert x == y, name


@pytest.mark.parametrize("backend", CH)
def test_rollups_answer_like_the_raw_rows_also_after_retention(
    backend: str, config_for: ConfigFor
) -> None:
    cfg = config_for(backend)
    s = open_store(cfg)
    raw = open_store(cfg.model_copy(update={"clickhouse": cfg.clickhouse.model_copy(
        update={"rollups": False, "migrate_on_open": False})}))  # fmt: skip
    try:
        for batch in synthetic_flows(30_000, 7_000, seed=3, span_ms=2 * DAY_MS):
            s.write("flows", batch)
        t0 = ts((T0_MS // 3_600_000 + 2) * 3_600_000)
        for query in _queries(t0):
            _same(s.aggregate(query), raw.aggregate(query))
        cutoff = T0_MS + DAY_MS // 3 + 12_345  # not aligned to any rollup step
        deleted = s.retain(timedelta(days=1), now=ts(cutoff + DAY_MS))
        assert 0 < deleted["flows"] < 30_000
        assert s.count("flows") == 30_000 - deleted["flows"]
        for query in _queries(t0):
            _same(s.aggregate(query), raw.aggregate(query))
    finally:
        raw.close()
        s.close()


@pytest.mark.parametrize("backend", CH)
def test_nulls_become_defaults_and_addresses_keep_zero_bytes(
    backend: str, config_for: ConfigFor
) -> None:
    s = open_store(config_for(backend))
    data = random_table("flows", 4, seed=2)
    n = data.num_rows
    addr = pa.array([bytes(16), b"\x01" + bytes(15), bytes(15) + b"\x02", None], pa.binary(16))
    data = data.set_column(3, "src_addr", addr)
    for name in ("time_end", "src_as", "app", "app_confidence"):
        i = data.schema.get_field_index(name)
        data = data.set_column(i, name, pa.nulls(n, data.schema.field(name).type))
    s.write("flows", data)
    back = s.read("flows")
    assert back.column("time_end").null_count == n  # timestamps keep their nulls
    assert back.column("src_addr").to_pylist() == [*addr.to_pylist()[:3], bytes(16)]
    assert back.column("src_as").to_pylist() == [0] * n
    assert back.column("app").to_pylist() == [""] * n
    assert np.isnan(back.column("app_confidence").to_numpy()).all()
    assert back.column("bytes").equals(data.column("bytes"))
    s.close()


@pytest.mark.integration
def test_cluster_shards_rows_by_exporter(config_for: ConfigFor) -> None:
    s = open_ch(config_for, "clickhouse:cluster")
    for batch in synthetic_flows(20_000, 5_000, seed=4):
        s.write("flows", batch)
    assert len(s.servers) == 2
    per_shard = []
    for host, port in s.servers:
        conn = Connection(host, port)
        cols, _ = conn.run(
            f"SELECT exporter, count() FROM {s.layout.local('flows')} GROUP BY exporter"
        )
        conn.close()
        per_shard.append({e.decode(): int(c) for e, c in zip(*cols, strict=True)})
    assert all(per_shard), "every shard holds rows"
    assert not set(per_shard[0]) & set(per_shard[1]), "an exporter lives on one shard"
    assert sum(sum(d.values()) for d in per_shard) == s.count("flows") == 20_000
    s.close()


@pytest.mark.parametrize("backend", CH)
def test_transaction_is_sent_when_the_block_ends(backend: str, config_for: ConfigFor) -> None:
    s = open_store(config_for(backend))
    seen: list[int] = []
    with s.transaction():
        s.write("od_series", random_table("od_series", 10))
        t = threading.Thread(target=lambda: seen.append(s.count("od_series")))
        t.start()
        t.join(10)
        assert s.count("od_series") == 10  # this thread sees its buffered rows
        out = s.aggregate(AggQuery("od_series", 3600, values=["mbps"], agg="count"))
        assert sum(out.column("mbps").to_pylist()) == 10
    assert seen == [0]  # another thread sees nothing until the block ends
    assert s.count("od_series") == 10
    s.close()


@pytest.mark.parametrize("backend", CH)
def test_migrate_is_idempotent_adds_columns_and_refuses_the_rest(
    backend: str, config_for: ConfigFor
) -> None:
    cfg = config_for(backend)
    s = open_store(cfg)
    assert isinstance(s, ClickHouseStore)
    s.write("od_series", random_table("od_series", 5))
    again = s.migrate()
    assert len(again) == len(s.servers)
    assert all(r["created"] == [] and r["added_columns"] == [] for r in again.values())
    assert all(r["version_before"] == r["version"] == 1 for r in again.values())
    for host, port in s.servers:  # an older schema: a column missing on every server
        conn = Connection(host, port)
        for t in dict.fromkeys([s.layout.name("link_series"), s.layout.local("link_series")]):
            conn.run(f"ALTER TABLE {t} DROP COLUMN `utilisation`")
        conn.close()
    added = s.migrate()
    assert all("link_series.utilisation" in r["added_columns"] for r in added.values())
    s.write("link_series", random_table("link_series", 3))
    assert s.read("link_series").equals(random_table("link_series", 3))
    host, port = s.servers[0]
    conn = Connection(host, port)
    conn.run(f"INSERT INTO `{cfg.clickhouse.database}`._shadowcast_schema SELECT 99, 0, 'x'")
    conn.close()
    s.close()
    with pytest.raises(StoreError, match="schema version 99, newer"):
        open_store(cfg)


@pytest.mark.integration
def test_open_without_migration_needs_a_schema(config_for: ConfigFor) -> None:
    with pytest.raises(StoreError, match="store migrate"):
        open_ch(config_for, "clickhouse", migrate_on_open=False)


@pytest.mark.integration
def test_credentials_come_from_the_environment(
    config_for: ConfigFor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHADOWCAST_CLICKHOUSE_USER", "shadowcast")
    monkeypatch.setenv("SHADOWCAST_CLICKHOUSE_PASSWORD", "s3cret")
    s = open_ch(config_for, "clickhouse")
    s.write("alerts", random_table("alerts", 2))
    assert s.count("alerts") == 2
    s.close()
    monkeypatch.setenv("SHADOWCAST_CLICKHOUSE_PASSWORD", "wrong")
    with pytest.raises(StoreError, match="no ClickHouse server reachable") as err:
        open_ch(config_for, "clickhouse")
    assert "\n" not in str(err.value) and "wrong" not in str(err.value)


@pytest.mark.integration
def test_unreachable_servers_and_unknown_cluster(config_for: ConfigFor) -> None:
    with pytest.raises(StoreError, match="no ClickHouse server reachable"):
        open_ch(config_for, "clickhouse", hosts=["127.0.0.1:1"], connect_timeout_s=1)
    with pytest.raises(StoreError, match="'nope' is not in the remote_servers"):
        open_ch(config_for, "clickhouse", cluster="nope")


def test_credentials_are_not_settings() -> None:
    from shadowcast.settings import load_settings

    env = {
        "SHADOWCAST_CLICKHOUSE_USER": "u",
        "SHADOWCAST_CLICKHOUSE_PASSWORD": "pw-3141",
        "SHADOWCAST_STORE__BACKEND": "clickhouse",
        "SHADOWCAST_STORE__CLICKHOUSE__DATABASE": "net1",
    }
    store = load_settings(environ=env).store
    assert (store.backend, store.clickhouse.database) == ("clickhouse", "net1")
    assert "pw-3141" not in store.model_dump_json()


@pytest.mark.integration
def test_a_failed_send_names_the_tables_that_landed(config_for: ConfigFor) -> None:
    s = open_ch(config_for, "clickhouse")
    host, port = s.servers[0]
    with pytest.raises(StoreError, match=r"partly written \(tables sent: od_series\)"):
        with s.transaction():
            s.write("od_series", random_table("od_series", 4))
            s.write("alerts", random_table("alerts", 2))
            conn = Connection(host, port)  # the server loses a table before the block ends
            conn.run(f"DROP TABLE {s.layout.name('alerts')}")
            conn.close()
    assert s.count("od_series") == 4
    s.close()


@pytest.mark.integration
def test_a_server_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    if server_command() is None:
        pytest.skip("clickhouse-server not installed (apt-get install clickhouse-server)")
    code = (
        "import os, sys; from pathlib import Path\n"
        "from shadowcast.store.clickhouse_local import local_servers\n"
        "with local_servers(Path(sys.argv[1]), 1) as s:\n"
        "    print(s[0].pid, flush=True); os._exit(0)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    pid = int(res.stdout.strip())
    deadline = time.monotonic() + 20
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not Path(f"/proc/{pid}").exists(), "the orphaned server is still running"


@pytest.mark.parametrize("backend", CH)
def test_rollups_can_be_off_and_added_later(backend: str, config_for: ConfigFor) -> None:
    cfg = config_for(backend, clickhouse={"rollups": False})
    s = open_store(cfg)
    assert isinstance(s, ClickHouseStore)
    for batch in synthetic_flows(6_000, 3_000, seed=5):
        s.write("flows", batch)
    conn = Connection(*s.servers[0])
    cols, _ = conn.run(f"SELECT name FROM system.tables WHERE database = '{s.layout.database}'")
    conn.close()
    assert not any(n.startswith(b"flows_1") or n.startswith(b"flows_5") for n in cols[0])
    assert s.retain(timedelta(days=1), now=ts(T0_MS + DAY_MS + 3_600_000))["flows"] > 0
    left = s.count("flows")
    s.close()
    on = cfg.model_copy(update={"clickhouse": cfg.clickhouse.model_copy(update={"rollups": True})})
    s = open_store(on)  # migrates on open: rollups created and filled from the flows there
    query = AggQuery("flows", 300, by=["app"], values=["bytes"], agg="count")
    assert q.rollup_step(query) == 300
    out = s.aggregate(query)
    assert sum(out.column("bytes").to_pylist()) == left
    s.close()


@pytest.mark.parametrize("backend", CH)
def test_retention_with_a_filter_keeps_the_rollups_exact(
    backend: str, config_for: ConfigFor
) -> None:
    cfg = config_for(backend)
    s = open_store(cfg)
    raw = open_store(cfg.model_copy(update={"clickhouse": cfg.clickhouse.model_copy(
        update={"rollups": False, "migrate_on_open": False})}))  # fmt: skip
    try:
        data = pa.concat_tables(synthetic_flows(8_000, 8_000, seed=6))
        s.write("flows", data)
        app = data.column("app")[0].as_py()
        cutoff = T0_MS + DAY_MS // 2 + 777  # mid-bucket
        t = data.column("time_start").cast(pa.int64()).to_numpy()
        want = int(((t < cutoff) & (np.array(data.column("app").to_pylist()) == app)).sum())
        deleted = s.retain(
            timedelta(days=1), now=ts(cutoff + DAY_MS), tables=["flows"], where={"app": app}
        )
        assert deleted["flows"] == want > 0
        assert s.count("flows") == 8_000 - want
        for query in _queries(ts((T0_MS // 3_600_000 + 2) * 3_600_000)):
            _same(s.aggregate(query), raw.aggregate(query))
    finally:
        raw.close()
        s.close()
