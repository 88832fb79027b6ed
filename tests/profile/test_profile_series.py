"""Behaviour series: conservation, spreading, peaks, sampling error, rollups."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from profile_flowgen import make_flows, one_flow

from shadowcast.profile.config import ProfileConfig
from shadowcast.profile.identify import Profiler
from shadowcast.profile.series import SERIES_SCHEMA, SeriesBuilder


def _sum(t: pa.Table, col: str, kind: str) -> int:
    m = pc.equal(t.column("kind"), kind)
    return int(pc.sum(t.filter(m).column(col)).as_py() or 0)


@pytest.fixture(scope="module")
def profiled() -> pa.Table:
    return Profiler(ProfileConfig(use_model=False)).identify(make_flows(20_000, seed=11))


def test_conservation_synthetic(profiled: pa.Table) -> None:
    sb = SeriesBuilder()
    s = sb.build(profiled)
    assert s.schema == SERIES_SCHEMA
    want = int(sb.estimated_bytes(profiled).sum())
    # the collector's flows carry bytes already scaled by their sampling rate
    assert want == int(np.asarray(profiled.column("bytes").to_numpy(), np.int64).sum())
    for tier in (s, sb.rollup(s, 300), sb.rollup(sb.rollup(s, 300), 3600)):
        assert _sum(tier, "bytes", "app") == want
        assert _sum(tier, "bytes", "edge") == want
        assert _sum(tier, "transfers", "app") == profiled.num_rows
    # per key: each application's bytes equal its flows' bytes
    app_bytes = (
        s.filter(pc.equal(s.column("kind"), "app")).group_by("app").aggregate([("bytes", "sum")])
    )
    est = sb.estimated_bytes(profiled)
    apps = np.asarray(profiled.column("app").to_pylist(), dtype=object)
    for row in app_bytes.to_pylist():
        assert row["bytes_sum"] == int(est[apps == row["app"]].sum())


def test_renormalising_raw_sampled_counts(profiled: pa.Table) -> None:
    sb = SeriesBuilder(renormalise=True)
    s = sb.build(profiled)
    rate = np.maximum(np.asarray(profiled.column("sampling_rate").to_numpy(), np.int64), 1)
    raw = np.asarray(profiled.column("bytes").to_numpy(), np.int64)
    assert (rate > 1).any()
    assert _sum(s, "bytes", "app") == int((raw * rate).sum())


def test_long_flow_is_spread_and_peak_is_real() -> None:
    t0 = 1_700_000_020_000  # 40 s into a minute
    # 6 MB over 120 s (3 minutes touched), plus a 1 MB burst in one 10 s sub-bucket
    flows = pa.concat_tables(
        [
            one_flow(time_start=t0, time_end=t0 + 120_000, bytes=6_000_000, app="HTTP"),
            one_flow(time_start=t0 + 61_000, time_end=t0 + 62_000, bytes=1_000_000, app="HTTP"),
        ]
    )
    p = Profiler(ProfileConfig(use_model=False)).identify(flows)
    s = SeriesBuilder(peak_s=10).build(p, kinds=("app",)).sort_by("time")
    assert s.column("bytes").to_pylist() == [1_000_000, 3_000_000 + 1_000_000, 2_000_000]
    minute2 = s.slice(1, 1).to_pylist()[0]
    assert minute2["bps_avg"] == pytest.approx(4_000_000 * 8 / 60)
    # the burst sub-bucket holds 1 MB + 10 s of the long flow (500 kB)
    assert minute2["bps_peak"] == pytest.approx(1_500_000 * 8 / 10)
    assert minute2["transfers"] == 1 and minute2["flow_minutes"] == 2
    assert s.column("transfers").to_pylist() == [1, 1, 0]
    assert s.column("flows_active").to_pylist() == [1.0, 2.0, 1.0]


def test_sampled_flows_carry_error() -> None:
    flows = pa.concat_tables(
        [
            # 100 sampled packets at 1:1000, stored scaled up as the collector does
            one_flow(bytes=10_000_000, packets=100_000, sampling_rate=1000, app="Zoom"),
            one_flow(bytes=10_000, packets=100, sampling_rate=1, app="HTTP"),
        ]
    )
    p = Profiler(ProfileConfig(use_model=False)).identify(flows)
    s = SeriesBuilder(error_z=1.96).build(p, kinds=("app",))
    rows = {r["app"]: r for r in s.to_pylist()}
    assert rows["Zoom"]["bytes"] == 10_000_000
    assert rows["HTTP"]["bps_err"] == 0.0
    rel_std = np.sqrt((1 - 1 / 1000) / 100)  # binomial approximation, 100 sampled packets
    want = 1.96 * rel_std * 10_000_000 * 8 / 60
    assert rows["Zoom"]["bps_err"] == pytest.approx(want)
    # errors add in quadrature in rollups
    r = SeriesBuilder().rollup(s, 3600)
    assert r.filter(pc.equal(r.column("app"), "Zoom")).column("bps_err")[0].as_py() == (
        pytest.approx(want * 60 / 3600)
    )


def test_rollup_percentiles_equal_percentiles_of_all_transfers(profiled: pa.Table) -> None:
    sb = SeriesBuilder()
    s = sb.build(profiled, kinds=("app",))
    hour = sb.rollup(sb.rollup(s, 300), 3600)
    single = sb.rollup(hour, 10**9)  # everything in one bucket per key
    from shadowcast.profile.sketch import Sketches

    netflix = single.filter(pc.equal(single.column("app"), "NetFlix"))
    sk = Sketches.from_arrow(netflix.column("size_idx"), netflix.column("size_cnt"))
    sizes = sb.estimated_bytes(profiled)[
        np.asarray(profiled.column("app").to_pylist(), dtype=object) == "NetFlix"
    ]
    for q in (0.5, 0.9, 0.99):
        true = np.sort(sizes)[int(np.floor(q * (len(sizes) - 1)))]
        got = sb.sketch.quantile(sk, q)
        assert abs(float(got.sum()) - true) <= 0.021 * true


def test_empty_batch() -> None:
    p = Profiler(ProfileConfig(use_model=False)).identify(make_flows(0))
    assert SeriesBuilder().build(p).num_rows == 0


def test_conservation_real_pcap(data_dir: Path) -> None:
    pytest.importorskip("nfstream")
    from shadowcast.profile.pcap import flows_from_pcap

    flows = flows_from_pcap(data_dir / "pcaps/ndpi/pcap/netflix.pcap")
    assert flows.num_rows > 50
    p = Profiler().identify(flows)
    sb = SeriesBuilder()
    s = sb.build(p)
    want = int(np.asarray(flows.column("bytes").to_numpy(), np.int64).sum())
    for tier in (s, sb.rollup(s, 300), sb.rollup(s, 3600)):
        assert _sum(tier, "bytes", "app") == want
        assert _sum(tier, "bytes", "edge") == want
    video = s.filter(pc.equal(s.column("category"), "video"))
    assert _sum(video, "bytes", "app") > 0


def test_absurdly_long_flow_is_clamped_not_dropped() -> None:
    t0 = 1_600_000_000_000
    two_years = 2 * 365 * 86_400_000
    flows = pa.concat_tables(
        [
            one_flow(time_start=t0, time_end=t0 + two_years, bytes=123_456_789, app="HTTP"),
            one_flow(time_start=t0, time_end=t0 + 5000, bytes=1000, app="HTTP"),
        ]
    )
    p = Profiler(ProfileConfig(use_model=False)).identify(flows)
    sb = SeriesBuilder(max_spread_s=3600)
    s = sb.build(p, kinds=("app",))
    assert sb.clamped_flows == 1
    assert int(pc.sum(s.column("bytes")).as_py()) == 123_456_789 + 1000
    assert s.num_rows == 1 + 61  # the short flow's minute + the clamped hour (unaligned)
