"""Store settings and the registry of backends."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from shadowcast.store.base import Store
from shadowcast.store.clickhouse import ClickHouseStore
from shadowcast.store.duckdb import DuckDBStore
from shadowcast.store.memory import MemoryStore
from shadowcast.store.schema import TABLES

log = logging.getLogger(__name__)

DEFAULT_RETENTION_DAYS: dict[str, float] = {
    "flows": 7,
    "od_series": 90,
    "link_series": 90,
    "shadow": 30,
    "forecasts": 30,
    "actions": 365,
    "alerts": 365,
    "interface_counters": 90,
    "flow_features": 7,
}


class ClickHouseConfig(BaseModel):
    """Where the clickhouse backend connects (YAML key ``store.clickhouse``).

    Credentials come from the environment, never from the settings file:
    ``SHADOWCAST_CLICKHOUSE_USER`` (default ``default``) and ``SHADOWCAST_CLICKHOUSE_PASSWORD``.
    """

    model_config = ConfigDict(extra="forbid")

    # Servers to connect to, "host:port" (native protocol, port 9000 by default); the
    # first that answers is used. With ``cluster``, the shards are read from the server's
    # remote_servers and every one of them gets the schema and retention.
    hosts: list[str] = Field(default_factory=lambda: ["127.0.0.1:9000"], min_length=1)
    database: str = Field(default="shadowcast", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # A cluster of remote_servers: rows kept in <table>_local on each shard, read and
    # written through Distributed tables. None: one server.
    cluster: str | None = Field(default=None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    # Keep flows rollups (1 min, 5 min, 1 h; materialised views, filled from the flows
    # already there when added) and read them in aggregate() when a query allows. They
    # cost most of a flows insert on the server: false for the fastest writes.
    rollups: bool = True
    migrate_on_open: bool = True  # create or upgrade the schema when the store is opened
    connect_timeout_s: float = Field(default=10.0, gt=0)
    timeout_s: float = Field(default=300.0, gt=0)

    @field_validator("hosts")
    @classmethod
    def _hosts(cls, value: list[str]) -> list[str]:
        from shadowcast.errors import StoreError
        from shadowcast.store.clickhouse_io import parse_host

        for spec in value:
            try:
                parse_host(spec)
            except StoreError as exc:
                raise ValueError(str(exc)) from None
        return value


class StoreConfig(BaseModel):
    """Where and how shadowcast keeps its data (YAML key ``store``)."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["duckdb", "memory", "clickhouse"] = "duckdb"
    data_dir: Path = Path("var")  # same default as the top-level data_dir
    # The DuckDB file; relative paths are under data_dir. ":memory:" keeps it in memory.
    path: str = "shadowcast.duckdb"
    # Rows older than this many days are deleted by retention, per table (tables not
    # listed are kept forever).
    retention_days: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_RETENTION_DAYS))
    # Rows per write when a stage batches its output (the collector's flush size).
    batch_size: int = Field(default=100_000, ge=1, le=10_000_000)
    # How the duckdb backend keeps flows and flow_features: "parquet" segment files under
    # <path>.segments/ named by a manifest in the database (about a third of the write
    # cost of a DuckDB insert), or "table" (plain DuckDB tables). Each reads the other's.
    flows_format: Literal["parquet", "table"] = "parquet"
    segment_compression: Literal["lz4", "zstd", "snappy", "none"] = "lz4"
    memory_limit: str | None = None  # DuckDB memory_limit, e.g. "4GB"
    threads: int | None = Field(default=None, ge=1)
    clickhouse: ClickHouseConfig = Field(default_factory=ClickHouseConfig)

    @field_validator("retention_days")
    @classmethod
    def _known_tables(cls, value: dict[str, float]) -> dict[str, float]:
        for table, days in value.items():
            if table not in TABLES:
                raise ValueError(f"unknown table {table!r} (known: {', '.join(sorted(TABLES))})")
            if not days > 0:
                raise ValueError(f"retention for {table!r} must be > 0 days, got {days}")
        return value

    def resolved_path(self) -> str:
        """The DuckDB file (``:memory:`` unchanged)."""
        if self.path == ":memory:":
            return self.path
        p = Path(self.path).expanduser()
        return str(p if p.is_absolute() else self.data_dir / p)


class Backend(Protocol):
    """A Store class the registry can build from a StoreConfig."""

    def from_config(self, config: StoreConfig) -> Store: ...


BACKENDS: dict[str, Backend] = {
    "duckdb": DuckDBStore,
    "memory": MemoryStore,
    "clickhouse": ClickHouseStore,  # clickhouse_driver is imported when one is opened
}


def open_store(config: StoreConfig | None = None) -> Store:
    """The configured backend, opened (tables created if missing)."""
    config = config or StoreConfig()
    backend = BACKENDS[config.backend]
    store = backend.from_config(config)
    log.info("store opened", extra={"backend": config.backend, "store": repr(store)})
    return store


def apply_retention(
    store: Store, config: StoreConfig, now: datetime | None = None
) -> dict[str, int]:
    """Delete, table by table, the rows older than ``config.retention_days``."""
    deleted: dict[str, int] = {}
    for table, days in config.retention_days.items():
        deleted.update(store.retain(timedelta(days=days), now, tables=[table]))
    return deleted
