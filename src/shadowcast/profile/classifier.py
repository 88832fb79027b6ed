"""Behavioural classifier: flow features -> category, for flows no name identified.

LightGBM multiclass on features every flow record has (duration, bytes, packets, mean
packet size, rates, protocol, ports class) plus, where a packet-level source gives them,
direction ratio and packet-size / inter-arrival statistics (NaN otherwise). Training sees
every flow three more times as a plain flow export would carry it, packet statistics
hidden: the two-way record, and each direction alone (what a unidirectional NetFlow/IPFIX
record of it holds, where the source gives per-direction counters), so the model also
works on plain flow exports. Rows can be weighted by group (capture or lab session) so a
session with thousands of flows does not outvote one with a few.
The model is a LightGBM text file; the shipped one is ``profile/data/behaviour.txt``.
"""

from __future__ import annotations

import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute

from shadowcast.errors import ConfigError, DataError
from shadowcast.parsing import load_json, one_line
from shadowcast.profile.base import Prediction

log = logging.getLogger(__name__)
pc: Any = pyarrow.compute

F64 = npt.NDArray[np.float64]
CLASSES: tuple[str, ...] = ("video", "bulk", "interactive", "voip", "web", "other")
BASE_FEATURES: tuple[str, ...] = (
    "duration_s",
    "log_bytes",
    "log_packets",
    "mean_ps",
    "log_pps",
    "log_bps",
    "iat_approx_ms",
    "proto",
)
PORT_FEATURES: tuple[str, ...] = ("ports_class",)
RICH_FEATURES: tuple[str, ...] = (
    "dir_ratio",
    "ps_std",
    "ps_min",
    "ps_max",
    "iat_mean_ms",
    "iat_std_ms",
    "iat_max_ms",
    "up_mean_ps",
    "down_mean_ps",
)
FEATURES: tuple[str, ...] = BASE_FEATURES + PORT_FEATURES + RICH_FEATURES
DEFAULT_MODEL = "data/behaviour.txt"
# LightGBM settings of the shipped model (seeded, single-threaded: reproducible). Few wide
# trees: prediction costs ~ the number of trees (30 rounds x 6 classes: ~6 us a flow)
PARAMS: dict[str, object] = {
    "learning_rate": 0.15,
    "num_leaves": 31,
    "min_data_in_leaf": 10,
    "feature_fraction": 0.9,
    "bagging_fraction": 0.9,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
}
NUM_ROUNDS = 30
ONE_WAY = ("up", "down")
__all__ = [
    "BehaviourModel",
    "Prediction",
    "features",
    "one_way",
    "CLASSES",
    "FEATURES",
    "MODELS",
    "PARAMS",
]


def _num(table: pa.Table, name: str) -> F64:
    if name not in table.column_names:
        return np.full(table.num_rows, np.nan)
    col = table.column(name)
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    return np.asarray(pc.fill_null(col.cast(pa.float64()), np.nan).to_numpy(), dtype=np.float64)


def features(table: pa.Table, hide_ports: bool = False, hide_rich: bool = False) -> F64:
    """Feature matrix ``[n, len(FEATURES)]`` of a flow table (NaN = not available)."""
    n = table.num_rows
    dur = np.maximum((_num(table, "time_end") - _num(table, "time_start")) / 1000.0, 0.0)
    byt = _num(table, "bytes")
    pkt = _num(table, "packets")
    safe_pkt = np.maximum(pkt, 1.0)
    safe_dur = np.maximum(dur, 1e-3)
    proto = _num(table, "proto")
    proto_cls = np.where(proto == 6, 0.0, np.where(proto == 17, 1.0, 2.0))
    out = np.empty((n, len(FEATURES)), dtype=np.float64)
    out[:, 0] = dur
    out[:, 1] = np.log1p(byt)
    out[:, 2] = np.log1p(pkt)
    out[:, 3] = byt / safe_pkt
    out[:, 4] = np.log1p(pkt / safe_dur)
    out[:, 5] = np.log1p(byt * 8 / safe_dur)
    out[:, 6] = np.where(pkt > 1, dur * 1000.0 / np.maximum(pkt - 1, 1), np.nan)
    out[:, 7] = proto_cls
    sp, dp = _num(table, "src_port"), _num(table, "dst_port")
    low = np.fmin(sp, dp)
    ports_cls = np.where(low < 1024, 0.0, np.where(low < 49152, 1.0, 2.0))
    out[:, 8] = np.nan if hide_ports else ports_cls
    for j, name in enumerate(RICH_FEATURES):
        out[:, 9 + j] = np.nan if hide_rich else _num(table, name)
    return out


def one_way(table: pa.Table) -> tuple[pa.Table, npt.NDArray[np.int64]]:
    """Each direction of every two-way flow as its own plain record (bytes, packets,
    duration of that direction; ports as that direction's sender and receiver see them),
    and for every record the row it came from. Directions without packets are left out;
    a table without per-direction counters gives no records."""
    names = ("time_start", "time_end", "src_port", "dst_port", "proto", "bytes", "packets")
    if not all(f"{d}_packets" in table.column_names for d in ONE_WAY):
        return pa.table({n: table.column(n).slice(0, 0) for n in names}), np.zeros(0, np.int64)
    start = _num(table, "time_start")
    parts, rows = [], []
    for d in ONE_WAY:
        pk = _num(table, f"{d}_packets")
        keep = np.flatnonzero(pk > 0)
        sp, dp = ("src_port", "dst_port") if d == "up" else ("dst_port", "src_port")
        t0 = start[keep].astype(np.int64)
        dur = np.maximum(_num(table, f"{d}_duration_ms")[keep], 0).astype(np.int64)
        idx = pa.array(keep)
        parts.append(
            pa.table(
                {
                    "time_start": pa.array(t0),
                    "time_end": pa.array(t0 + dur),
                    "src_port": table.column(sp).take(idx),
                    "dst_port": table.column(dp).take(idx),
                    "proto": table.column("proto").take(idx),
                    "bytes": table.column(f"{d}_bytes").take(idx),
                    "packets": table.column(f"{d}_packets").take(idx),
                }
            )
        )
        rows.append(keep)
    return pa.concat_tables(parts), np.concatenate(rows).astype(np.int64)


def group_weights(groups: npt.NDArray[np.object_] | None, n: int) -> F64:
    """``1 / sqrt(flows in the row's group)``: big groups count more, but sublinearly."""
    if groups is None:
        return np.ones(n)
    _, inv, counts = np.unique(groups.astype(str), return_inverse=True, return_counts=True)
    return np.asarray(1.0 / np.sqrt(counts[inv]), dtype=np.float64)


class BehaviourModel:
    """A trained LightGBM booster plus the class list and the feature policy."""

    def __init__(self, booster: object, classes: tuple[str, ...], use_ports: bool) -> None:
        self.booster = booster
        self.classes = classes
        self.use_ports = use_ports

    @classmethod
    def train(
        cls,
        table: pa.Table,
        labels: npt.NDArray[np.object_],
        *,
        seed: int = 7,
        use_ports: bool = False,
        num_rounds: int = NUM_ROUNDS,
        groups: npt.NDArray[np.object_] | None = None,
        params: dict[str, object] | None = None,
        one_way_copies: bool = True,
        weights: F64 | None = None,
    ) -> BehaviourModel:
        """Fit on ``table`` with one category per row (rows labelled outside CLASSES are
        left out); ``groups`` (capture or session per row) weights rows by group size,
        ``weights`` multiplies each row's weight. Seeded and single-threaded, so the same
        input gives the same model."""
        import lightgbm as lgb

        keep = np.isin(labels, CLASSES)
        if keep.sum() < 10:
            raise DataError(f"need at least 10 labelled flows in {CLASSES}, got {keep.sum()}")
        t = table.filter(pa.array(keep))
        y = np.array([CLASSES.index(c) for c in labels[keep]], dtype=np.int64)
        g = group_weights(None if groups is None else groups[keep], len(y))
        if weights is not None:
            g = g * weights[keep]
        xs = [features(t, hide_ports=not use_ports), features(t, hide_ports=not use_ports,
                                                              hide_rich=True)]  # fmt: skip
        ys, gs = [y, y], [g, g]
        if one_way_copies:
            ow, rows = one_way(t)
            if len(rows):
                xs.append(features(ow, hide_ports=not use_ports, hide_rich=True))
                ys.append(y[rows])
                gs.append(g[rows] / 2)  # two records per flow: one flow's weight in all
        x, y2, g2 = np.vstack(xs), np.concatenate(ys), np.concatenate(gs)
        # balance classes: every class gets the same total weight
        totals = np.bincount(y2, weights=g2, minlength=len(CLASSES))
        w = g2 * (g2.sum() / (len(CLASSES) * np.maximum(totals, 1e-9)))[y2]
        full = {
            "objective": "multiclass",
            "num_class": len(CLASSES),
            **(PARAMS if params is None else params),
            "seed": seed,
            "deterministic": True,
            "num_threads": 1,
            "verbose": -1,
        }
        data = lgb.Dataset(x, label=y2, weight=w, feature_name=list(FEATURES))
        booster = lgb.train(full, data, num_boost_round=num_rounds)
        return cls(booster, CLASSES, use_ports)

    def predict_proba(self, table: pa.Table, hide_rich: bool = False) -> F64:
        x = features(table, hide_ports=not self.use_ports, hide_rich=hide_rich)
        if len(x) == 0:
            return np.zeros((0, len(self.classes)))
        p = self.booster.predict(x)  # type: ignore[attr-defined]
        return np.asarray(p, dtype=np.float64).reshape(len(x), len(self.classes))

    def predict(self, table: pa.Table, hide_rich: bool = False) -> Prediction:
        p = self.predict_proba(table, hide_rich=hide_rich)
        best = p.argmax(axis=1) if len(p) else np.zeros(0, dtype=np.int64)
        cats = np.array(self.classes, dtype=object)[best]
        conf = p.max(axis=1).astype(np.float32) if len(p) else np.zeros(0, np.float32)
        return Prediction(cats, conf)

    def save(self, path: Path) -> None:
        text = self.booster.model_to_string()  # type: ignore[attr-defined]
        meta = json.dumps({"classes": list(self.classes), "use_ports": self.use_ports})
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(f"# shadowcast-behaviour {meta}\n{text}")

    @classmethod
    def load(cls, path: Path | None = None) -> BehaviourModel:
        """Load a saved model; ``None`` loads the one shipped in the package."""
        import lightgbm as lgb

        try:
            if path is None:
                text = resources.files("shadowcast.profile").joinpath(DEFAULT_MODEL).read_text()
                where = f"shadowcast/profile/{DEFAULT_MODEL}"
            else:
                text = Path(path).read_text()
                where = str(path)
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read behaviour model: {one_line(str(exc))}") from exc
        head, _, body = text.partition("\n")
        if not head.startswith("# shadowcast-behaviour "):
            raise ConfigError(f"{where}: not a shadowcast behaviour model (missing header)")
        meta = load_json(head.removeprefix("# shadowcast-behaviour "), where, ConfigError)
        classes = meta.get("classes") if isinstance(meta, dict) else None
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ConfigError(f"{where}: corrupt behaviour model: header has no 'classes' list")
        try:
            booster = lgb.Booster(model_str=body)
        except (ValueError, lgb.basic.LightGBMError) as exc:
            raise ConfigError(f"{where}: corrupt behaviour model: {one_line(str(exc))}") from exc
        return cls(booster, tuple(classes), bool(meta.get("use_ports", False)))


# model backends by name (the shipped one is LightGBM)
MODELS: dict[str, type[BehaviourModel]] = {"lightgbm": BehaviourModel}
