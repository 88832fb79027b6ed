"""Packet input through nfstream (nDPI): pcap files and live interfaces.

nfstream meters packets into bidirectional flows, names the application (nDPI) and
computes per-flow statistics. Each flow becomes up to two ``flows`` rows (one per
direction that carried packets, as a flow exporter would send them) with
``app_source="ndpi"``, and one ``flow_features`` row (``store.schema.FLOW_FEATURES_SCHEMA``:
the flow key, per-direction packet-size and inter-arrival statistics, SPLT).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from shadowcast.collect.ipc import DONE, READY, encode_error, send_batch
from shadowcast.errors import DataError
from shadowcast.extras import need
from shadowcast.records import FLOW_SCHEMA
from shadowcast.store.base import Store
from shadowcast.store.schema import FLOW_FEATURES_SCHEMA, SPLT_LEN

log = logging.getLogger(__name__)

# nDPI category -> our taxonomy, used when the application map does not know the app.
NDPI_CATEGORIES: dict[str, str] = {
    "Streaming": "video",
    "Video": "video",
    "Media": "video",
    "Music": "video",
    "Download-FileTransfer-FileSharing": "bulk",
    "DataTransfer": "bulk",
    "FileSharing": "bulk",
    "SoftwareUpdate": "bulk",
    "Cloud": "bulk",
    "Game": "interactive",
    "RemoteAccess": "interactive",
    "Chat": "interactive",
    "Collaborative": "interactive",
    "VoIP": "voip",
    "Web": "web",
    "SocialNetwork": "web",
    "Shopping": "web",
    "Email": "web",
    "Advertisement": "web",
    "Unspecified": "unknown",
}
# nfstream application_confidence (0 unknown .. 6 DPI) -> confidence in [0, 1]
_CONFIDENCE = np.array([0.0, 0.5, 0.6, 0.8, 0.9, 1.0, 1.0, 1.0], dtype=np.float32)
_FLAGS = ("fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr")  # TCP flag bit order
_STATS = [f.name for f in FLOW_FEATURES_SCHEMA if f.type == pa.float32()]


def nfstreamer(source: str, splt: int = SPLT_LEN, **kw: Any) -> Any:
    """An NFStreamer with statistics and SPLT on (raises DataError naming the source)."""
    NFStreamer = need("nfstream", "packet input").NFStreamer  # noqa: N806
    try:
        return NFStreamer(
            source=source, statistical_analysis=True, splt_analysis=splt, n_meters=1, **kw
        )
    except (ValueError, OSError) as exc:
        raise DataError(f"{source}: nfstream cannot read it: {exc}") from exc


class _Categories:
    def __init__(self) -> None:
        self._map: Callable[[str], tuple[str, str]] | None = None
        try:
            from shadowcast.profile.appmap import AppMap

            self._map = AppMap.load().category_of
        except Exception:  # the profile stage is optional here
            log.debug("application map unavailable; using nDPI categories only")
        self._cache: dict[tuple[str, str], str] = {}

    def __call__(self, app: str, ndpi_category: str) -> str:
        key = (app, ndpi_category)
        hit = self._cache.get(key)
        if hit is None:
            cat = self._map(app)[1] if self._map is not None and app else ""
            if not cat or cat == "unknown":
                cat = NDPI_CATEGORIES.get(ndpi_category, "other" if app else "unknown")
            hit = self._cache[key] = cat
        return hit


def _packed(addrs: list[str]) -> pa.Array:
    cache: dict[str, bytes] = {}
    out = []
    for a in addrs:
        b = cache.get(a)
        if b is None:
            try:
                b = b"\0" * 10 + b"\xff\xff" + socket.inet_pton(socket.AF_INET, a)
            except OSError:
                try:
                    b = socket.inet_pton(socket.AF_INET6, a)
                except OSError:
                    b = b"\0" * 16
            cache[a] = b
        out.append(b)
    return pa.array(out, type=pa.binary(16))


def _col(flows: list[Any], name: str) -> list[Any]:
    return [getattr(f, name) for f in flows]


def _ms(values: list[int] | np.ndarray) -> pa.Array:
    return pa.array(np.asarray(values, dtype=np.int64), type=pa.timestamp("ms", tz="UTC"))


def flows_to_tables(
    flows: list[Any], exporter: str, categories: Callable[[str, str], str]
) -> tuple[pa.Table, pa.Table]:
    """nfstream flows -> (``flows`` rows, ``flow_features`` rows)."""
    n = len(flows)
    if n == 0:
        return FLOW_SCHEMA.empty_table(), FLOW_FEATURES_SCHEMA.empty_table()
    apps = [a or "" for a in _col(flows, "application_name")]
    ndpi_cats = [c or "" for c in _col(flows, "application_category_name")]
    cats = [categories(a, c) for a, c in zip(apps, ndpi_cats, strict=True)]
    conf = _CONFIDENCE[np.clip(np.asarray(_col(flows, "application_confidence")), 0, 7)]
    src, dst = _packed(_col(flows, "src_ip")), _packed(_col(flows, "dst_ip"))
    sport = np.asarray(_col(flows, "src_port"), dtype=np.uint16)
    dport = np.asarray(_col(flows, "dst_port"), dtype=np.uint16)
    proto = np.asarray(_col(flows, "protocol"), dtype=np.uint8)
    first = np.asarray(_col(flows, "bidirectional_first_seen_ms"), dtype=np.int64)
    last = np.asarray(_col(flows, "bidirectional_last_seen_ms"), dtype=np.int64)
    num = {
        k: np.asarray(_col(flows, k), dtype=np.int64)
        for d in ("src2dst", "dst2src")
        for k in (
            f"{d}_packets",
            f"{d}_bytes",
            f"{d}_first_seen_ms",
            f"{d}_last_seen_ms",
        )
    }
    exp = pa.array([exporter] * n, type=pa.string())
    directions = []
    for d, (a, b, pa_, pb) in {
        "src2dst": (src, dst, sport, dport),
        "dst2src": (dst, src, dport, sport),
    }.items():
        flags = np.zeros(n, dtype=np.uint8)
        for bit, fl in enumerate(_FLAGS):
            flags |= (np.asarray(_col(flows, f"{d}_{fl}_packets")) > 0).astype(np.uint8) << bit
        keep = num[f"{d}_packets"] > 0
        rows = pa.table(
            {
                "time_start": _ms(num[f"{d}_first_seen_ms"]),
                "time_end": _ms(num[f"{d}_last_seen_ms"]),
                "exporter": exp,
                "src_addr": a,
                "dst_addr": b,
                "src_port": pa_,
                "dst_port": pb,
                "proto": proto,
                "tcp_flags": flags,
                "tos": np.zeros(n, np.uint8),
                "src_as": np.zeros(n, np.uint32),
                "dst_as": np.zeros(n, np.uint32),
                "bytes": num[f"{d}_bytes"].astype(np.uint64),
                "packets": num[f"{d}_packets"].astype(np.uint64),
                "sampling_rate": np.ones(n, np.uint32),
                "in_if": np.zeros(n, np.uint32),
                "out_if": np.zeros(n, np.uint32),
                "app": pa.array(apps, pa.string()),
                "category": pa.array(cats, pa.string()),
                "app_source": pa.array(["ndpi"] * n, pa.string()),
                "app_confidence": conf,
                "src_site": pa.array([""] * n, pa.string()),
                "dst_site": pa.array([""] * n, pa.string()),
            },
            schema=FLOW_SCHEMA,
        )
        directions.append(rows.filter(pa.array(keep)))
    features = {
        "time_start": _ms(first),
        "time_end": _ms(last),
        "exporter": exp,
        "src_addr": src,
        "dst_addr": dst,
        "src_port": sport,
        "dst_port": dport,
        "proto": proto,
        "app": pa.array(apps, pa.string()),
        "category": pa.array(cats, pa.string()),
        "ndpi_category": pa.array(ndpi_cats, pa.string()),
        "server_name": pa.array([s or "" for s in _col(flows, "requested_server_name")]),
        "src2dst_packets": num["src2dst_packets"].astype(np.uint64),
        "src2dst_bytes": num["src2dst_bytes"].astype(np.uint64),
        "dst2src_packets": num["dst2src_packets"].astype(np.uint64),
        "dst2src_bytes": num["dst2src_bytes"].astype(np.uint64),
        "duration_ms": last - first,
    }
    for name in _STATS:
        features[name] = np.asarray(_col(flows, name), dtype=np.float32)
    ps, piat = _splt(flows)
    for i in range(SPLT_LEN):
        features[f"splt_ps_{i + 1}"] = ps[:, i]
        features[f"splt_piat_ms_{i + 1}"] = piat[:, i]
    return pa.concat_tables(directions), pa.table(features, schema=FLOW_FEATURES_SCHEMA)


def _splt(flows: list[Any]) -> tuple[np.ndarray, np.ndarray]:
    n = len(flows)

    def grid(name: str, fill: int) -> np.ndarray:
        out = np.full((n, SPLT_LEN), fill, dtype=np.int32)
        for i, f in enumerate(flows):
            vals = getattr(f, name, None) or []
            k = min(len(vals), SPLT_LEN)
            out[i, :k] = vals[:k]
        return out

    direction, size, piat = (
        grid("splt_direction", -1),
        grid("splt_ps", -1),
        grid("splt_piat_ms", -1),
    )
    signed = np.where(direction == 0, size, np.where(direction == 1, -size, 0)).astype(np.int32)
    signed[size < 0] = 0
    return signed, piat


def batched_tables(
    flows: Iterable[Any], exporter: str, batch_flows: int = 20_000
) -> Iterator[tuple[pa.Table, pa.Table]]:
    categories = _Categories()
    buf: list[Any] = []
    for f in flows:
        buf.append(f)
        if len(buf) >= batch_flows:
            yield flows_to_tables(buf, exporter, categories)
            buf = []
    if buf:
        yield flows_to_tables(buf, exporter, categories)


@dataclass(slots=True)
class IngestResult:
    files: int = 0
    flows: int = 0
    flow_rows: int = 0
    feature_rows: int = 0
    seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)


def ingest_pcaps(
    paths: Iterable[Path],
    store: Store,
    splt: int = SPLT_LEN,
    on_file: Callable[[Path, int], None] | None = None,
) -> IngestResult:
    """Meter each capture and write its flows and features; a bad file is reported in
    ``errors`` (by name) and the others still go in. Each file lands in one transaction."""
    res = IngestResult()
    t0 = time.perf_counter()
    for path in paths:
        if not Path(path).is_file():
            res.errors[str(path)] = "no such file"
            continue
        try:
            parts = list(batched_tables(nfstreamer(str(path), splt), f"pcap:{Path(path).name}"))
        except DataError as exc:
            res.errors[str(path)] = str(exc)
            continue
        except Exception as exc:  # nfstream reports unreadable captures many ways
            res.errors[str(path)] = f"{path}: nfstream failed: {exc}"
            continue
        with store.transaction():
            for rows, feats in parts:
                res.flow_rows += store.write("flows", rows)
                res.feature_rows += store.write("flow_features", feats)
                res.flows += feats.num_rows
        res.files += 1
        if on_file is not None:
            on_file(Path(path), sum(f.num_rows for _, f in parts))
    res.seconds = time.perf_counter() - t0
    return res


def capture_source(
    interface: str, flush_s: float, idle_timeout: int, conn: Connection, stop: Event
) -> None:
    """Collector source process: live capture on ``interface``; flows go to the writer
    as they expire (``idle_timeout`` s idle). Flows still active at shutdown are not sent."""
    pending: list[Any] = []
    lock = threading.Lock()
    failure: list[str] = []

    def meter() -> None:
        try:
            for f in nfstreamer(interface, idle_timeout=idle_timeout, active_timeout=60):
                with lock:
                    pending.append(f)
        except Exception as exc:
            failure.append(f"live capture on {interface}: {exc}")

    thread = threading.Thread(target=meter, name="nfstream", daemon=True)
    thread.start()
    categories = _Categories()
    ppid = os.getppid()
    conn.send_bytes(READY)
    try:
        while True:
            stopping = stop.wait(flush_s) or os.getppid() != ppid
            with lock:
                batch, pending[:] = list(pending), []
            if batch:
                rows, feats = flows_to_tables(batch, f"if:{interface}", categories)
                send_batch(conn, "flows", rows)
                send_batch(conn, "flow_features", feats)
            if failure:
                conn.send_bytes(encode_error(failure[0]))
                break
            if stopping:
                break
        conn.send_bytes(DONE)
    except OSError:
        return
