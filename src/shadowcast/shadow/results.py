"""Probe results as store rows (``store.schema.SHADOW_SCHEMA``), one per tunnel and run."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from shadowcast.shadow.stamp import PathMetrics
from shadowcast.store.base import Store
from shadowcast.store.schema import SHADOW_SCHEMA


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One measurement of one tunnel; ``path`` is the verified router list."""

    time: float  # Unix seconds
    tunnel: str
    path: tuple[str, ...]
    metrics: PathMetrics
    abw_mbps: float = math.nan


def to_table(results: Sequence[ProbeResult]) -> pa.Table:
    """Arrow rows for the store's ``shadow`` table (the forecaster's exogenous inputs)."""
    ms = np.array([int(r.time * 1000) for r in results], dtype=np.int64)
    return pa.table(
        {
            "time": pa.array(ms, pa.int64()).cast(SHADOW_SCHEMA.field("time").type),
            "tunnel": [r.tunnel for r in results],
            "path": [">".join(r.path) for r in results],
            "rtt_ms": [r.metrics.rtt_ms for r in results],
            "owd_ms": [r.metrics.owd_fwd_ms for r in results],
            "jitter_ms": [r.metrics.jitter_ms for r in results],
            "loss": [r.metrics.loss for r in results],
            "abw_mbps": [r.abw_mbps for r in results],
        },
        schema=SHADOW_SCHEMA,
    )


def write(store: Store, results: Sequence[ProbeResult]) -> int:
    """Append probe results to the store's ``shadow`` table; rows written."""
    if not results:
        return 0
    return store.write("shadow", to_table(results))
