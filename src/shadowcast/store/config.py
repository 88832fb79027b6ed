"""Store settings and the registry of backends."""

from __future__ import annotations

import importlib
import logging
import os
import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

if TYPE_CHECKING:
    from shadowcast.store.base import Store

log = logging.getLogger(__name__)

#: The store's tables (the keys of ``store.schema.TABLES``, spelt here so that loading the
#: settings does not import pyarrow; a test keeps the two equal).
TABLE_NAMES: tuple[str, ...] = (
    "flows",
    "od_series",
    "link_series",
    "shadow",
    "forecasts",
    "actions",
    "alerts",
    "interface_counters",
    "flow_features",
    "behaviour",
    "decisions",
    "accuracy",
    "accuracy_groups",
    "drift_events",
    "model_events",
    "audit",
    "action_outcomes",
    "alert_tuning",
)
#: DuckDB threads allowed in the settings: four per CPU of this machine (at least 16).
MAX_THREADS = max(16, (os.cpu_count() or 1) * 4)
_MEMORY = re.compile(r"^\s*\d+(\.\d+)?\s*(B|KB|KiB|MB|MiB|GB|GiB|TB|TiB|%)\s*$", re.IGNORECASE)

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
    "behaviour": 400,
    "decisions": 365,
    "accuracy": 90,
    "accuracy_groups": 90,
    "drift_events": 365,
    "model_events": 730,
    "audit": 730,
    "action_outcomes": 365,
    "alert_tuning": 365,
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
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)
    timeout_s: float = Field(default=300.0, gt=0, le=86_400)

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
    # How the duckdb backend keeps flows and flow_features: "parquet" segment files under
    # <path>.segments/ named by a manifest in the database (about a third of the write
    # cost of a DuckDB insert), or "table" (plain DuckDB tables). Each reads the other's.
    flows_format: Literal["parquet", "table"] = "parquet"
    segment_compression: Literal["lz4", "zstd", "snappy", "none"] = "lz4"
    # How a write of flows/flow_features becomes a segment (duckdb, parquet mode): "parquet"
    # at once, or "arrow": an Arrow IPC file (about half the writer's CPU per row), compacted
    # into Parquet in the background at the lowest CPU priority (readers see both).
    # "auto": arrow in a process that collects from the network (collect, run), else parquet.
    fresh_segments: Literal["auto", "arrow", "parquet"] = "auto"
    memory_limit: str | None = None  # DuckDB memory_limit, e.g. "4GB" or "50%"
    threads: int | None = Field(default=None, ge=1)
    clickhouse: ClickHouseConfig = Field(default_factory=ClickHouseConfig)

    @field_validator("retention_days")
    @classmethod
    def _known_tables(cls, value: dict[str, float]) -> dict[str, float]:
        for table, days in value.items():
            if table not in TABLE_NAMES:
                known = ", ".join(sorted(TABLE_NAMES))
                raise ValueError(f"unknown table {table!r} (known: {known})")
            if not 0 < days <= 36_500:
                raise ValueError(f"retention for {table!r} must be in (0, 36500] days, got {days}")
        return value

    @field_validator("threads")
    @classmethod
    def _threads(cls, value: int | None) -> int | None:
        if value is not None and value > MAX_THREADS:
            raise ValueError(
                f"at most {MAX_THREADS} threads ({os.cpu_count()} CPUs here), got {value}"
            )
        return value

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        if value is not None and not _MEMORY.match(value):
            raise ValueError(f"expected a size like 4GB, 512MiB or 50%, got {value[:40]!r}")
        return value

    def at(self, path: str | Path) -> StoreConfig:
        """These settings for the DuckDB file ``path`` (a ``--store``/``--path`` option)."""
        p = str(path) if str(path) == ":memory:" else str(Path(path).resolve())
        return self.model_copy(update={"backend": "duckdb", "path": p})

    def collecting(self) -> StoreConfig:
        """These settings for a process that stores what it collects from the network:
        ``fresh_segments: auto`` becomes ``arrow``."""
        if self.fresh_segments != "auto":
            return self
        return self.model_copy(update={"fresh_segments": "arrow"})

    def resolved_path(self) -> str:
        """The DuckDB file (``:memory:`` unchanged)."""
        if self.path == ":memory:":
            return self.path
        p = Path(self.path).expanduser()
        return str(p if p.is_absolute() else self.data_dir / p)


class Backend(Protocol):
    """A Store class the registry can build from a StoreConfig."""

    def from_config(self, config: StoreConfig) -> Store: ...


# name -> "module:Class", imported when a store of that kind is opened.
BACKENDS: dict[str, str] = {
    "duckdb": "shadowcast.store.duckdb:DuckDBStore",
    "memory": "shadowcast.store.memory:MemoryStore",
    "clickhouse": "shadowcast.store.clickhouse:ClickHouseStore",
}


def backend_class(name: str) -> Backend:
    """The Store class registered as ``name``."""
    module, _, attr = BACKENDS[name].partition(":")
    cls: Backend = getattr(importlib.import_module(module), attr)
    return cls


def open_store(config: StoreConfig | None = None) -> Store:
    """The configured backend, opened (tables created if missing)."""
    config = config or StoreConfig()
    store = backend_class(config.backend).from_config(config)
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
