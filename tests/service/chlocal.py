"""Local ClickHouse servers for the service tests (the store tests have their own fixtures)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from shadowcast.store.clickhouse_local import LocalServer, local_servers, server_command
from shadowcast.store.config import StoreConfig

CLUSTER = "svc_test"


@contextmanager
def servers(folder: Path, count: int = 1) -> Iterator[list[LocalServer]]:
    """``count`` throwaway servers (the shards of ``CLUSTER`` when more than one)."""
    if server_command() is None:
        pytest.skip("clickhouse-server not installed (apt-get install clickhouse-server)")
    if importlib.util.find_spec("clickhouse_driver") is None:
        pytest.skip("clickhouse-driver not installed (pip install 'shadowcast-netops[clickhouse]')")
    with local_servers(folder, count, cluster=CLUSTER if count > 1 else None) as found:
        yield found


def config(found: list[LocalServer], database: str, **clickhouse: Any) -> StoreConfig:
    ch: dict[str, Any] = {"hosts": [s.address for s in found], "database": database}
    if len(found) > 1:
        ch["cluster"] = CLUSTER
    return StoreConfig.model_validate({"backend": "clickhouse", "clickhouse": {**ch, **clickhouse}})
