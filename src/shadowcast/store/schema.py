"""Arrow schemas of the store's tables. Every backend stores exactly these columns."""

from __future__ import annotations

import pyarrow as pa

from shadowcast.records import FLOW_SCHEMA

TS = pa.timestamp("ms", tz="UTC")

OD_SERIES_SCHEMA = pa.schema(
    [
        ("time", TS),
        ("src", pa.string()),
        ("dst", pa.string()),
        ("app", pa.string()),  # application or category; "" for all traffic
        ("mbps", pa.float64()),
    ]
)

LINK_SERIES_SCHEMA = pa.schema(
    [
        ("time", TS),
        ("link", pa.string()),
        ("load_mbps", pa.float64()),
        ("capacity_mbps", pa.float64()),
        ("utilisation", pa.float64()),
    ]
)

SHADOW_SCHEMA = pa.schema(
    [
        ("time", TS),
        ("tunnel", pa.string()),
        ("path", pa.string()),
        ("rtt_ms", pa.float64()),
        ("owd_ms", pa.float64()),
        ("jitter_ms", pa.float64()),
        ("loss", pa.float64()),
        ("abw_mbps", pa.float64()),
    ]
)

FORECAST_SCHEMA = pa.schema(
    [
        ("issued", TS),
        ("target", TS),
        ("horizon_s", pa.int64()),
        ("kind", pa.string()),  # "od", "link", "app"
        ("subject", pa.string()),
        ("model", pa.string()),
        ("mean", pa.float64()),
        ("level", pa.float64()),  # interval level in percent; 0 when no interval
        ("lower", pa.float64()),
        ("upper", pa.float64()),
    ]
)

ACTION_SCHEMA = pa.schema(
    [
        ("time", TS),
        ("plan_id", pa.string()),
        ("actuator", pa.string()),
        ("action", pa.string()),  # "apply", "rollback", "dry-run", ...
        ("status", pa.string()),  # "ok", "failed", "rolled-back"
        ("detail", pa.string()),  # JSON
    ]
)

ALERT_SCHEMA = pa.schema(
    [
        ("issued", TS),
        ("at", TS),
        ("name", pa.string()),
        ("subject", pa.string()),
        ("severity", pa.string()),
        ("value", pa.float64()),
        ("threshold", pa.float64()),
        ("lead_s", pa.int64()),
        ("message", pa.string()),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "flows": FLOW_SCHEMA,
    "od_series": OD_SERIES_SCHEMA,
    "link_series": LINK_SERIES_SCHEMA,
    "shadow": SHADOW_SCHEMA,
    "forecasts": FORECAST_SCHEMA,
    "actions": ACTION_SCHEMA,
    "alerts": ALERT_SCHEMA,
}

# The column that carries each table's time (for bucketing and retention).
TIME_COLUMN: dict[str, str] = {
    "flows": "time_start",
    "od_series": "time",
    "link_series": "time",
    "shadow": "time",
    "forecasts": "issued",
    "actions": "time",
    "alerts": "issued",
}
