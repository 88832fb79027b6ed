"""Collector accounting: kernel socket drops, merged counters, Prometheus exposition."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from pydantic import ValidationError

from shadowcast.collect.base import ExporterStats
from shadowcast.collect.config import CollectConfig
from shadowcast.collect.metrics import (
    CollectSnapshot,
    make_registry,
    merge_exporters,
    read_udp_drops,
    socket_drops,
    socket_inode,
)
from shadowcast.store.spool import SpoolStats


def test_kernel_drops_of_a_full_socket_are_read_from_proc() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as rx:
        rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the kernel's minimum
        rx.bind(("127.0.0.1", 0))
        port = rx.getsockname()[1]
        assert read_udp_drops()[socket_inode(rx)] == 0
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as tx:
            for _ in range(500):
                tx.sendto(b"x" * 1000, ("127.0.0.1", port))
        time.sleep(0.05)
        drops = socket_drops({port: [rx]})[port]
        assert 300 < drops < 500  # a few fit in the buffer, the rest were dropped


def test_counters_of_workers_add_up() -> None:
    a = {"10.0.0.1": {"packets": 3, "records": 90}, "10.0.0.2": {"packets": 1}}
    b = {"10.0.0.1": {"packets": 2, "decode_errors": 1}}
    merged = merge_exporters([a, b])
    assert merged["10.0.0.1"] == ExporterStats(packets=5, records=90, decode_errors=1)
    assert merged["10.0.0.2"].packets == 1


def test_prometheus_exposition() -> None:
    snap = CollectSnapshot(
        exporters={"192.0.2.1": ExporterStats(packets=7, records=210, template_misses=2)},
        socket_drops={2055: 4},
        rows_stored=200,
    )
    text = generate_latest(make_registry(lambda: snap)).decode()
    assert 'shadowcast_collect_records_total{exporter="192.0.2.1"} 210.0' in text
    assert 'shadowcast_collect_template_misses_total{exporter="192.0.2.1"} 2.0' in text
    assert 'shadowcast_collect_socket_drops_total{port="2055"} 4.0' in text
    assert "shadowcast_collect_stored_rows_total 200.0" in text
    assert snap.to_json()["totals"] == {**snap.to_json()["exporters"]["192.0.2.1"]}  # type: ignore[index]


def test_config_defaults_and_rejections() -> None:
    cfg = CollectConfig()
    assert [(lc.protocol, lc.port) for lc in cfg.listeners] == [
        ("netflow", 2055),
        ("ipfix", 4739),
        ("sflow", 6343),
    ]
    assert cfg.flush_interval_s <= 1.0
    with pytest.raises(ValidationError, match="bind"):
        CollectConfig(bind="localhost")
    with pytest.raises(ValidationError, match="sampling override"):
        CollectConfig(sampling_overrides={"192.0.2.1": 0})
    with pytest.raises(ValidationError, match="extra"):
        CollectConfig(flush_rowz=5)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="not a CIDR prefix"):
        CollectConfig(allow_exporters=["10.0.0.0/8", "ten"])
    with pytest.raises(ValidationError, match="max_record_age_s"):
        CollectConfig(max_record_age_s=0)
    assert CollectConfig(max_record_age_s=None, spill_dir="/x").spill_dir == Path("/x")


def test_write_buffer_and_worker_figures_are_exposed() -> None:
    snap = CollectSnapshot(
        exporters={"other": ExporterStats(packets=9, rejected_packets=9, invalid_records=2)},
        store_errors=4,
        spool=SpoolStats(write_retries=4, rows_spilled=1000, rows_lost=30, queued_rows=12),
        workers={0: {"templates": 17, "exporters_evicted": 3, "peak_rss_bytes": 1 << 27}},
        rows_recovered=5,
    )
    text = generate_latest(make_registry(lambda: snap)).decode()
    for line in (
        "shadowcast_collect_store_errors_total 4.0",
        "shadowcast_collect_write_retries_total 4.0",
        "shadowcast_collect_rows_spilled_total 1000.0",
        "shadowcast_collect_rows_lost_total 30.0",
        "shadowcast_collect_rows_recovered_total 5.0",
        "shadowcast_collect_buffered_rows 12.0",
        'shadowcast_collect_worker_templates{worker="0"} 17.0',
        'shadowcast_collect_worker_exporters_evicted_total{worker="0"} 3.0',
        'shadowcast_collect_worker_peak_rss_bytes{worker="0"} 1.34217728e+08',
        'shadowcast_collect_rejected_packets_total{exporter="other"} 9.0',
        'shadowcast_collect_invalid_records_total{exporter="other"} 2.0',
    ):
        assert line in text, line
    doc = snap.to_json()
    assert doc["rows_lost"] == 30 and doc["write_retries"] == 4 and doc["rows_recovered"] == 5
    assert doc["workers"] == {
        "0": {"templates": 17, "exporters_evicted": 3, "peak_rss_bytes": 1 << 27}
    }
