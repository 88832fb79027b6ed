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

# Per-flow statistical features from packet captures (nfstream/nDPI), keyed like the
# flow (time_start, exporter, addresses, ports, proto). SPLT: the first SPLT_LEN packets;
# ``splt_ps_i`` is the size signed by direction (+ src->dst, - dst->src, 0 none),
# ``splt_piat_ms_i`` the gap to the previous packet (-1 none). Added by collect/pcap.py.
SPLT_LEN = 10
_STAT_FIELDS = [
    (f"{d}_{s}", pa.float32())
    for d in ("bidirectional", "src2dst", "dst2src")
    for s in (
        "min_ps", "mean_ps", "stddev_ps", "max_ps",
        "min_piat_ms", "mean_piat_ms", "stddev_piat_ms", "max_piat_ms",
    )
]  # fmt: skip
FLOW_FEATURES_SCHEMA = pa.schema(
    [
        ("time_start", TS),
        ("time_end", TS),
        ("exporter", pa.string()),
        ("src_addr", pa.binary(16)),
        ("dst_addr", pa.binary(16)),
        ("src_port", pa.uint16()),
        ("dst_port", pa.uint16()),
        ("proto", pa.uint8()),
        ("app", pa.string()),
        ("category", pa.string()),
        ("ndpi_category", pa.string()),
        ("server_name", pa.string()),
        ("src2dst_packets", pa.uint64()),
        ("src2dst_bytes", pa.uint64()),
        ("dst2src_packets", pa.uint64()),
        ("dst2src_bytes", pa.uint64()),
        ("duration_ms", pa.int64()),
        *_STAT_FIELDS,
        *[(f"splt_ps_{i}", pa.int32()) for i in range(1, SPLT_LEN + 1)],
        *[(f"splt_piat_ms_{i}", pa.int32()) for i in range(1, SPLT_LEN + 1)],
    ]
)

# sFlow counter samples: interface octets/packets/speed per exporter (to reconcile flow
# totals against interface counters).
INTERFACE_COUNTERS_SCHEMA = pa.schema(
    [
        ("time", TS),
        ("exporter", pa.string()),
        ("if_index", pa.uint32()),
        ("if_speed", pa.uint64()),
        ("in_octets", pa.uint64()),
        ("out_octets", pa.uint64()),
        ("in_packets", pa.uint64()),
        ("out_packets", pa.uint64()),
    ]
)

# Behaviour series of the profiler (``profile/series.py``): per application and site pair
# (kind "app") or per ingress/egress edge pair (kind "edge"), one row per key and bucket of
# ``grain_s`` (the tiers: 1 min, 5 min, 1 h). ``size_idx``/``size_cnt`` are a mergeable
# transfer-size sketch (``profile/sketch.py``).
BEHAVIOUR_SCHEMA = pa.schema(
    [
        ("time", TS),
        ("grain_s", pa.int32()),
        ("kind", pa.string()),
        ("app", pa.string()),
        ("category", pa.string()),
        ("src", pa.string()),
        ("src_region", pa.string()),
        ("dst", pa.string()),
        ("dst_region", pa.string()),
        ("bytes", pa.int64()),
        ("packets", pa.int64()),
        ("bytes_var", pa.float64()),  # variance of the bytes estimate (sampling)
        ("bps_avg", pa.float64()),
        ("bps_peak", pa.float64()),
        ("bps_err", pa.float64()),  # +- on bps_avg (z * std)
        ("flow_minutes", pa.int64()),  # sum over minutes of flows active in the minute
        ("flows_active", pa.float64()),  # mean flows active per minute
        ("transfers", pa.int64()),  # flows that started in the bucket
        ("unclassified_bytes", pa.int64()),
        ("size_idx", pa.list_(pa.int16())),
        ("size_cnt", pa.list_(pa.int64())),
    ]
)

# Every decision of the service's plan stage, "nothing to do" included, with its reason;
# ``plan`` is the plan's JSON when one was made.
DECISION_SCHEMA = pa.schema(
    [
        ("time", TS),
        ("mode", pa.string()),  # observe | advise | auto
        ("action", pa.string()),  # none | proposed | applied | dry-run | rejected | failed
        ("plan_id", pa.string()),
        ("reason", pa.string()),
        ("predicted_peak", pa.float64()),
        ("mlu_current", pa.float64()),
        ("mlu_planned", pa.float64()),
        ("changes", pa.int64()),
        ("shaping", pa.int64()),
        ("reservations", pa.int64()),
        ("plan", pa.string()),
    ]
)

# The forecast ledger's scores (``feedback/ledger.py``): per target step, kind, model and
# horizon, the summed absolute error, actual and persistence error, and per interval
# level how many actuals fell inside (``covered``) and under the upper bound (``under``).
# The point figures repeat on each level's row; ``level`` 0 when the model gave none.
ACCURACY_SCHEMA = pa.schema(
    [
        ("time", TS),
        ("kind", pa.string()),  # "od" (class x OD series) | "link"
        ("model", pa.string()),
        ("horizon_s", pa.int64()),
        ("level", pa.float64()),
        ("n", pa.int64()),
        ("abs_err", pa.float64()),
        ("abs_actual", pa.float64()),
        ("abs_err_persist", pa.float64()),
        ("covered", pa.int64()),
        ("under", pa.int64()),
    ]
)

# The feedback loop (``feedback/``).
# Rolling accuracy per grouping (class, volume decile, link, ...), long form, every
# ``feedback.summary_every``: metric is nmae, mase, bias, coverage_L, interval_score_L, ...
ACCURACY_GROUPS_SCHEMA = pa.schema(
    [
        ("time", TS),
        ("kind", pa.string()),
        ("model", pa.string()),
        ("horizon_s", pa.int64()),
        ("grouping", pa.string()),  # "all", "class", "decile", "link", ...
        ("subject", pa.string()),  # the group
        ("metric", pa.string()),
        ("value", pa.float64()),
    ]
)

# Drift detected on a group of series, and what the service did about it.
DRIFT_SCHEMA = pa.schema(
    [
        ("time", TS),
        ("kind", pa.string()),  # "od" | "link"
        ("subject", pa.string()),  # the group (e.g. "medium@FR>", a link)
        ("direction", pa.int64()),  # +1: actuals above the forecasts, -1 below
        ("statistic", pa.float64()),
        ("scaled_error", pa.float64()),
        ("series", pa.int64()),
        ("action", pa.string()),  # adapt | retrain | adapt+retrain | none
    ]
)

# The models' lives: fit, retrain, promote, demote, rollback, with the figures behind each.
MODEL_EVENTS_SCHEMA = pa.schema(
    [
        ("time", TS),
        ("event", pa.string()),
        ("model", pa.string()),
        ("version", pa.int64()),
        ("previous", pa.int64()),  # the champion's version before the event (-1: none)
        ("reason", pa.string()),
        ("champion_score", pa.float64()),
        ("challenger_score", pa.float64()),
        ("detail", pa.string()),  # JSON
    ]
)

# Every applied action judged by its effect (``feedback/actions.py``): per action, horizon
# and link, the load the plan expected after it against the load realised at the target.
ACTION_OUTCOMES_SCHEMA = pa.schema(
    [
        ("time", TS),  # the target step
        ("issued", TS),  # when the plan was applied
        ("plan_id", pa.string()),
        ("horizon_s", pa.int64()),
        ("link", pa.string()),
        ("predicted_mbps", pa.float64()),
        ("realised_mbps", pa.float64()),
        ("capacity_mbps", pa.float64()),
        ("superseded", pa.int64()),  # 1: the routing changed again before the target
    ]
)

# The alert tuner's choices (``alert/tuner.py``), one row per (tuning, link class, p of the
# grid): the curve behind each choice as rows, the p chosen for the class after it (NaN: the
# class has no p with the evidence yet) and ``chosen`` = 1 on that p's row.
ALERT_TUNING_SCHEMA = pa.schema(
    [
        ("time", TS),  # when the tuner ran (the service's clock)
        ("link_class", pa.string()),
        ("p", pa.float64()),
        ("chosen", pa.int64()),
        ("chosen_p", pa.float64()),
        ("target_precision", pa.float64()),
        ("alerts", pa.int64()),  # judged alerts at p
        ("true_alerts", pa.int64()),
        ("episodes", pa.int64()),
        ("announced", pa.int64()),
        ("precision", pa.float64()),  # NaN: no alert judged
        ("recall", pa.float64()),  # NaN: no episode
        ("lead_steps_median", pa.float64()),  # NaN: none announced
        ("history_steps", pa.int64()),
    ]
)

# Every admin action of the REST API (``api/audit.py``): who (the token's name), what
# (approve, reject, apply, rollback), on what, and how it ended.
AUDIT_SCHEMA = pa.schema(
    [
        ("time", TS),
        ("token", pa.string()),
        ("action", pa.string()),
        ("target", pa.string()),  # a plan id, or "" when the action names none
        ("status", pa.string()),  # ok | rejected | failed
        ("detail", pa.string()),  # JSON
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
    "interface_counters": INTERFACE_COUNTERS_SCHEMA,
    "flow_features": FLOW_FEATURES_SCHEMA,
    "behaviour": BEHAVIOUR_SCHEMA,
    "decisions": DECISION_SCHEMA,
    "accuracy": ACCURACY_SCHEMA,
    "accuracy_groups": ACCURACY_GROUPS_SCHEMA,
    "drift_events": DRIFT_SCHEMA,
    "model_events": MODEL_EVENTS_SCHEMA,
    "audit": AUDIT_SCHEMA,
    "action_outcomes": ACTION_OUTCOMES_SCHEMA,
    "alert_tuning": ALERT_TUNING_SCHEMA,
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
    "interface_counters": "time",
    "flow_features": "time_start",
    "behaviour": "time",
    "decisions": "time",
    "accuracy": "time",
    "accuracy_groups": "time",
    "drift_events": "time",
    "model_events": "time",
    "audit": "time",
    "action_outcomes": "time",
    "alert_tuning": "time",
}
