"""Attacks on the collector from outside, small (``make faults`` runs them at scale).

Each scenario (scenarios.py) checks its own outcome; here they run at a size that keeps
``make test`` quick yet still far past what the unbounded collector survived.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import scenarios

pytestmark = pytest.mark.faults


def test_one_bad_record_does_not_lose_the_batch(tmp_path: Path) -> None:
    fig = scenarios.bad_record(tmp_path, n_good=10_000)
    assert fig["good_stored"] == 10_000 and fig["invalid_records"] == 1
    assert fig["store_errors"] == 0


def test_a_template_flood_stays_under_its_ceiling(tmp_path: Path) -> None:
    # 24,000 templates: the unbounded cache grew ~100 MB on them
    fig = scenarios.template_flood_attack(
        tmp_path, n_addrs=60, n_templates=400, max_templates=1024, ceiling_mb=32
    )
    assert fig["templates_held"] <= 1024 and fig["templates_evicted"] >= 22_976


def test_a_flood_of_data_without_templates_stays_under_its_ceiling_and_ages_out(
    tmp_path: Path,
) -> None:
    # 1,200 datagrams of 64 KB (78 MB): the unbounded queues held all of it
    fig = scenarios.pending_flood_attack(
        tmp_path, n_addrs=20, n_msgs=60, max_pending_mb=4, age_s=2.0, ceiling_mb=32
    )
    assert fig["pending_bytes_held_mb"] <= 4


def test_many_sources_fold_into_other(tmp_path: Path) -> None:
    fig = scenarios.exporter_flood(tmp_path, n_addrs=600, max_exporters=200)
    assert fig["tracked"] <= 200 and fig["evicted"] >= 400


def test_sources_outside_the_allow_list_are_counted_not_kept(tmp_path: Path) -> None:
    fig = scenarios.allow_list(tmp_path, n_addrs=200)
    assert fig["rejected_packets"] == 200


def test_a_store_outage_within_the_buffer_loses_nothing(tmp_path: Path) -> None:
    fig = scenarios.store_outage(tmp_path, 20_000, outage_s=2.0)
    assert fig["rows_stored"] == 20_000 and fig["rows_lost"] == 0
    assert fig["write_retries"] > 0


def test_past_memory_the_outage_waits_on_disk(tmp_path: Path) -> None:
    fig = scenarios.store_outage(
        tmp_path, 40_000, outage_s=2.0, buffer_bytes=1 << 20, spill_dir=tmp_path / "spill"
    )
    assert fig["rows_stored"] == 40_000 and fig["rows_spilled"] > 0 and fig["rows_lost"] == 0


def test_past_both_bounds_loss_is_counted_in_rows(tmp_path: Path) -> None:
    fig = scenarios.store_outage(tmp_path, 40_000, outage_s=2.0, buffer_bytes=1 << 20)
    assert 0 < fig["rows_lost"] < 40_000
    assert fig["rows_stored"] + fig["rows_lost"] == 40_000


@pytest.mark.slow
def test_after_kill_9_the_next_start_stores_what_was_left(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        mport = s.getsockname()[1]
    fig = scenarios.kill9(tmp_path, 6000, mport)
    assert fig["rows_stored"] == 6000 and fig["rows_left_by_the_dead_run"] == 6000
