"""Bounds on what a worker holds: templates and waiting data in all, exporters, allow-list."""

from __future__ import annotations

import time

from shadowcast.collect.base import DecoderStats, ExporterStats
from shadowcast.collect.bounds import OTHER, AllowList, ExporterBounds, fold, process_memory
from shadowcast.collect.decoders import FlowDecoder
from shadowcast.collect.pending import Pending, PendingSets
from shadowcast.collect.synth import build_stream
from shadowcast.collect.templates import TemplateCache, compile_layout
from shadowcast.collect.wire import data_set, ipfix_message, template_set

LAYOUT = compile_layout(((0, 8, 4), (0, 12, 4), (0, 1, 8)))
assert LAYOUT is not None


def test_the_template_cap_holds_across_exporters_least_recently_announced_first() -> None:
    cache = TemplateCache(max_per_exporter=100, ttl=60, max_total=5)
    for i in range(4):
        assert cache.put("a", 1, 256 + i, LAYOUT, False, now=float(i))[1] == []
    cache.put("a", 1, 256, LAYOUT, False, now=10.0)  # refreshed: now the newest
    _, victims = cache.put("b", 1, 300, LAYOUT, False, now=11.0)
    assert victims == []
    _, victims = cache.put("b", 1, 301, LAYOUT, False, now=12.0)
    assert victims == ["a"] and cache.get("a", 1, 257, 12.0) is None  # 257: the oldest
    assert cache.get("a", 1, 256, 12.0) is not None
    assert cache.total() == 5 and cache.count("a") == 3 and cache.count("b") == 2
    assert cache.forget("a") == 3 and cache.total() == 2 and cache.entries("a") is None


def test_templates_expire_on_the_clock_without_traffic() -> None:
    cache = TemplateCache(ttl=30, max_total=100)
    cache.put("a", 1, 256, LAYOUT, False, now=0.0)
    cache.put("b", 1, 256, LAYOUT, False, now=20.0)
    assert cache.expire(25.0) == 0
    assert cache.expire(40.0) == 1 and cache.count("a") == 0 and cache.count("b") == 1
    assert cache.expire(60.0) == 1 and cache.total() == 0


def held(i: int, size: int = 1000, at: float = 0.0) -> Pending:
    return Pending(1, 256 + i, bytes(size), 0, -1, at)


def test_waiting_sets_are_bounded_in_bytes_across_exporters_oldest_first() -> None:
    p = PendingSets(max_per_exporter=100, max_age=30, max_bytes=3500)
    p.add("a", held(0))
    p.add("b", held(1))
    p.add("a", held(2))
    p.add("c", held(3))  # 4000 bytes: a's first set goes
    assert p.bytes == 3000 and p.count() == 3
    assert p.drain_dropped() == {"a": 1}
    assert [x.tid for x in p.take("a", 1, 258, now=1.0)] == [258]
    assert p.take("a", 1, 256, now=1.0) == []
    assert p.bytes == 2000 and p.drain_dropped() == {}


def test_waiting_sets_age_out_on_the_timer_and_per_exporter_count_holds() -> None:
    p = PendingSets(max_per_exporter=2, max_age=30, max_bytes=1 << 20)
    for i in range(3):
        p.add("a", held(i, at=float(i)))
    assert p.count() == 2 and p.drain_dropped() == {"a": 1}
    p.add("b", held(9, at=20.0))
    assert p.expire(31.5) == 1  # a's set from t=1; a's t=2 set is 29.5 s old
    assert p.expire(60.0) == 2 and p.count() == 0 and p.bytes == 0
    assert p.drain_dropped() == {"a": 2, "b": 1}
    p.add("c", held(0))
    assert p.forget("c") == 1 and p.count() == 0 and p.drain_dropped() == {"c": 1}


def test_many_taken_sets_do_not_keep_their_bodies() -> None:
    p = PendingSets(max_per_exporter=10_000, max_age=30, max_bytes=1 << 30)
    for i in range(3000):
        p.add("a", held(i % 7))
        for item in p.take("a", 1, 256 + i % 7, now=0.0):
            assert len(item.body) == 1000  # the caller gets the data ...
    assert p.count() == 0 and p.bytes == 0
    assert len(p._all) <= 1024  # ... and the husks are compacted away


def template_msgs(exporter: int, n: int) -> list[bytes]:
    out = []
    for k in range(n):
        fields = ((8, 4), (12, 4), (1, 8), (2, 8), (1000 + exporter * 100 + k, 4))
        out.append(ipfix_message([template_set(2, 256 + k, fields)]))
    return out


def test_decoder_counts_template_evictions_on_the_exporter_that_lost_them() -> None:
    dec = FlowDecoder(max_templates=50)
    now = time.time()
    dec.decode([(m, "10.0.0.1") for m in template_msgs(1, 40)], now)
    dec.decode([(m, "10.0.0.2") for m in template_msgs(2, 30)], now)
    assert dec.usage()["templates"] == 50
    assert dec.stats.exporters["10.0.0.1"].templates_evicted == 20
    assert dec.stats.exporters["10.0.0.2"].templates_evicted == 0


def test_decoder_ages_out_waiting_data_without_any_later_packet() -> None:
    dec = FlowDecoder(pending_age=5.0, pending_bytes=1 << 20)
    msg = ipfix_message([data_set(999, bytes(4000))])
    now = time.time()
    dec.decode([(msg, "10.0.0.3")] * 10, now)
    assert dec.usage()["pending_sets"] == 10
    dec.expire(now + 1)
    assert dec.usage()["pending_sets"] == 10
    dec.expire(now + 6)
    assert dec.usage() == {"templates": 0, "pending_sets": 0, "pending_bytes": 0}
    assert dec.stats.exporters["10.0.0.3"].pending_dropped == 10


def test_least_recently_heard_exporters_are_evicted_and_fold_into_other() -> None:
    dec = FlowDecoder()
    bounds = ExporterBounds(max_exporters=2)
    streams = {f"10.1.0.{i}": build_stream("ipfix", 60, seed=i) for i in range(4)}
    now = time.time()
    for host, packets in streams.items():
        dec.decode([(p, host) for p in packets], now)
        evicted = bounds.heard([host], dec.stats, dec)
        if host == "10.1.0.2":
            assert evicted == ["10.1.0.0"]
    assert bounds.count() == 2 and bounds.evicted == 2
    assert set(dec.stats.exporters) == {"10.1.0.2", "10.1.0.3", OTHER}
    other = dec.stats.exporters[OTHER]
    assert other.records == 120 and other.packets == sum(len(streams[h]) for h in streams) // 2
    assert dec.nf.cache.entries("10.1.0.0") is None and "10.1.0.0" not in dec.nf.state


def test_fold_keeps_totals() -> None:
    stats = DecoderStats()
    stats.of("a").packets = 3
    stats.of(OTHER).packets = 4
    stats.of("a").invalid_records = 2
    fold(stats, "a")
    fold(stats, "missing")
    assert stats.exporters == {OTHER: ExporterStats(packets=7, invalid_records=2)}


def test_allow_list_drops_and_counts_other_sources_under_one_entry() -> None:
    allow = AllowList(["192.0.2.0/24", "2001:db8::/32"])
    assert allow.allows("192.0.2.77") and allow.allows("2001:db8::1")
    assert not allow.allows("198.51.100.1") and not allow.allows("not an address")
    bounds = ExporterBounds(10, ["192.0.2.0/24"])
    stats = DecoderStats()
    packets = [(b"x" * 10, "192.0.2.1"), (b"y" * 7, "198.51.100.1"), (b"z", "198.51.100.2")]
    assert bounds.admit(packets, stats) == packets[:1]
    assert stats.exporters == {OTHER: ExporterStats(packets=2, bytes=8, rejected_packets=2)}
    assert ExporterBounds(10).admit(packets, stats) is packets  # no list: everyone


def test_process_memory_reads_this_process() -> None:
    rss, peak = process_memory()
    assert 10 << 20 < rss <= peak
