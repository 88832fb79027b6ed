"""Where ``shadowcast replay`` writes: a store of its own, beside the configured one.

With the duckdb (or memory) backend the replay keeps a DuckDB file ``replay.duckdb`` under
the data folder, as it always has. With ``store.backend: clickhouse`` it uses a database of
its own on the same server or cluster, ``<database>_replay``, so a replay never mixes its
simulated rows with the production store's. Both are replaced by a new replay and kept by
``--resume``.

``shadowcast run --replay`` uses the same rule under another name (``live-replay.duckdb``,
``<database>_live_replay``), so a dashboard replay and ``shadowcast replay`` can run side by
side.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from shadowcast.store.base import Store
from shadowcast.store.config import StoreConfig, open_store


@dataclass(frozen=True, slots=True)
class ReplayTarget:
    """The replay's store settings and how the report names the store."""

    config: StoreConfig
    label: str
    path: Path  # the DuckDB file (or where its topology file goes beside a database)

    @property
    def server(self) -> bool:
        return self.config.backend == "clickhouse"


def replay_target(config: StoreConfig, data_dir: Path, name: str = "replay") -> ReplayTarget:
    """The replay's store for the configured ``config`` (see the module docstring)."""
    path = data_dir / f"{name}.duckdb"
    if config.backend != "clickhouse":
        return ReplayTarget(config.at(path), str(path), path)
    ch = config.clickhouse
    database = ch.database + "_" + name.replace("-", "_")
    ch_cfg = ch.model_copy(update={"database": database, "migrate_on_open": True})
    cfg = config.model_copy(update={"clickhouse": ch_cfg})
    where = f"cluster {ch.cluster}" if ch.cluster else ch.hosts[0]
    return ReplayTarget(cfg, f"clickhouse://{where}/{database}", path)


def reset(target: ReplayTarget) -> None:
    """Remove what an earlier replay left in the target (a new replay, not --resume)."""
    if target.server:
        from shadowcast.store.clickhouse import ClickHouseStore

        ClickHouseStore.from_config(target.config, to_migrate=True).drop_database()
        return
    p = target.path
    for f in (p, p.with_suffix(".duckdb.wal")):
        f.unlink(missing_ok=True)
    shutil.rmtree(p.with_suffix(".duckdb.segments"), ignore_errors=True)


def open_target(target: ReplayTarget) -> Store:
    return open_store(target.config)
