"""The operator's forecast cycle: series -> links (P(exceed), intervals) -> runout."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from shadowcast.errors import StoreError
from shadowcast.forecast.config import ForecastConfig
from shadowcast.forecast.outlook import (
    LinkInputs,
    ObservedLinks,
    forecast_outlook,
    links_from_store,
    series_from_store,
)
from shadowcast.network.routing import routing_matrix
from shadowcast.records import Link, SeriesFrame, Topology
from shadowcast.store.duckdb import DuckDBStore
from shadowcast.store.schema import TS

STEP = 900
DAY = 86400 // STEP


def _line() -> Topology:
    """A - B - C, 1 Gbit/s each way."""
    links = []
    for a, b in (("A", "B"), ("B", "C")):
        links += [Link(a, b, 1e9), Link(b, a, 1e9)]
    return Topology("line", ("A", "B", "C"), tuple(links))


def _frame(values: np.ndarray, keys: tuple[str, ...]) -> SeriesFrame:
    t0 = np.datetime64("2026-01-05T00:00:00", "s")
    times = t0 + np.arange(values.shape[0]) * np.timedelta64(STEP, "s")
    return SeriesFrame(times=times, keys=keys, values=values.astype(np.float64), step=STEP)


def _inputs(topo: Topology, frame: SeriesFrame) -> LinkInputs:
    pairs = [tuple(k.split("->")) for k in frame.keys]
    return LinkInputs(
        topo.link_names(),
        routing_matrix(topo, pairs),
        topo.capacities / 1e6,  # type: ignore[arg-type]
    )


def test_link_means_route_the_od_forecast_and_p_exceed_tracks_headroom() -> None:
    rng = np.random.default_rng(0)
    T = 3 * DAY
    keys = ("A->C", "A->B", "C->A")
    base = np.array([930.0, 20.0, 300.0])  # A->B carries 950 of 1000 Mbit/s; B->A 300
    vals = base[None, :] * (1 + 0.01 * rng.standard_normal((T, 3)))
    frame = _frame(vals, keys)
    topo = _line()
    cfg = ForecastConfig(model="persistence", horizons=["15m", "1h"], threshold=0.9)
    ol = forecast_outlook(frame, cfg, links=_inputs(topo, frame))
    names = list(ol.link_names)
    R = routing_matrix(topo, [("A", "C"), ("A", "B"), ("C", "A")])
    for label, steps in ol.horizons.items():
        lf = ol.links[label]
        np.testing.assert_allclose(lf.mean[:, 0], R @ ol.series.mean[:, steps - 1])
        assert lf.p_exceed is not None
        assert lf.p_exceed[names.index("A->B"), 0] > 0.9  # 95 % loaded, 90 % threshold
        assert lf.p_exceed[names.index("B->A"), 0] < 0.01  # 30 % loaded
        for lv in cfg.levels:
            assert (lf.lower[lv] <= lf.mean + 1e-9).all() and (lf.mean <= lf.upper[lv] + 1e-9).all()
    # intervals widen with the horizon on the loaded link
    e = names.index("A->B")
    w = {lb: ol.links[lb].upper[95.0][e, 0] - ol.links[lb].lower[95.0][e, 0] for lb in ol.links}
    assert w["1h"] >= w["15m"] > 0


def test_link_interval_is_narrower_than_summed_quantiles_for_independent_pairs() -> None:
    """Quantiles do not add: with independent OD noise the link's 95 % band is narrower
    than the sum of the OD bands (the comonotone worst case)."""
    rng = np.random.default_rng(1)
    T, n = 3 * DAY, 6
    keys = ("A->B", "A->C", "B->C", "C->A", "C->B", "B->A")
    vals = 100 + 10 * rng.standard_normal((T, n))
    frame = _frame(vals, keys)
    topo = _line()
    cfg = ForecastConfig(model="persistence", horizons=["15m"], link_samples=4000)
    ol = forecast_outlook(frame, cfg, links=_inputs(topo, frame))
    lf = ol.links["15m"]
    R = routing_matrix(topo, [tuple(k.split("->")) for k in keys])  # type: ignore[misc]
    fc = ol.series
    como = R @ (fc.upper[95.0][:, 0] - fc.lower[95.0][:, 0])
    width = lf.upper[95.0][:, 0] - lf.lower[95.0][:, 0]
    multi = np.asarray((R > 0).sum(axis=1)).ravel() >= 2
    assert multi.any()
    assert (width[multi] < 0.85 * como[multi]).all()


def test_runout_dates_a_linearly_growing_link() -> None:
    days = 10
    T = days * DAY
    t = np.arange(T)
    daily = 0.5 + 0.5 * np.sin(2 * np.pi * t / DAY)  # 0..1 within a day
    growth = 20.0  # Mbit/s per day on the daily peak
    ac = 400 + (200 + growth * t / DAY) * daily
    frame = _frame(np.stack([ac, np.full(T, 10.0)], axis=1), ("A->C", "C->A"))
    topo = _line()
    cfg = ForecastConfig(model="persistence", horizons=["15m"], runout_target=0.8)
    ol = forecast_outlook(frame, cfg, links=_inputs(topo, frame))
    assert ol.runout is not None
    e = list(ol.link_names).index("A->B")
    # peak of the last day ~ 400 + 200 + 20 * 9.9; target 800 Mbit/s
    last_peak = 600 + growth * (days - 1) + growth * 0.25
    expect = (800 - last_peak) / growth
    assert ol.runout.days[e] == pytest.approx(expect, abs=1.0)
    assert ol.runout.slope[e] == pytest.approx(growth, rel=0.05)
    assert not np.isfinite(ol.runout.days[list(ol.link_names).index("C->B")])


def test_observed_loads_drive_runout_without_a_topology() -> None:
    frame = _frame(np.full((3 * DAY, 1), 5.0), ("A->C",))
    times = frame.times
    loads = np.linspace(100, 700, len(times))[:, None]
    obs = ObservedLinks(times, loads, np.array([1000.0]), ["X->Y"])
    ol = forecast_outlook(frame, ForecastConfig(model="persistence"), observed=obs)
    assert ol.links == {} and ol.runout is not None and list(ol.link_names) == ["X->Y"]
    assert 0 < ol.runout.days[0] < 3


def _od_rows(times_s: list[int], src: str, dst: str, app: str, mbps: list[float]) -> pa.Table:
    return pa.table(
        {
            "time": pa.array(np.asarray(times_s, dtype=np.int64) * 1000).cast(TS),
            "src": [src] * len(times_s),
            "dst": [dst] * len(times_s),
            "app": [app] * len(times_s),
            "mbps": pa.array(mbps, type=pa.float64()),
        }
    )


def test_series_from_store_makes_a_dense_frame_with_gaps(tmp_path) -> None:  # type: ignore[no-untyped-def]
    st = DuckDBStore(str(tmp_path / "s.duckdb"))
    try:
        with pytest.raises(StoreError, match="no OD series"):
            series_from_store(st)
        t0 = 1_767_571_200  # 2026-01-05 00:00 UTC
        ts = [t0 + k * 300 for k in range(6)]
        st.write("od_series", _od_rows(ts, "A", "B", "", [1, 2, 3, 4, 5, 6]))
        st.write("od_series", _od_rows([ts[0], ts[1], ts[3]], "B", "A", "", [7, 8, 9]))
        st.write("od_series", _od_rows(ts, "A", "B", "web", [0.5] * 6))
        fr = series_from_store(st)
        assert fr.step == 300 and fr.keys == ("A->B", "B->A") and fr.values.shape == (6, 2)
        np.testing.assert_array_equal(fr.values[:, 0], [1, 2, 3, 4, 5, 6])
        assert np.isnan(fr.values[[2, 4, 5], 1]).all() and fr.values[3, 1] == 9
        apps = series_from_store(st, by_app=True)
        assert apps.keys == ("A->B/web",)
        assert links_from_store(st) is None
    finally:
        st.close()


def test_score_stored_forecasts_against_measurements(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from shadowcast.forecast.score import score_stored

    st = DuckDBStore(str(tmp_path / "s.duckdb"))
    try:
        with pytest.raises(StoreError, match="no link forecasts"):
            score_stored(st)
        t0 = 1_767_571_200
        ts = [t0 + k * 300 for k in range(3)]
        loads = {"X->Y": [100.0, 110.0, 120.0], "Y->X": [50.0, 40.0, 70.0]}
        st.write(
            "link_series",
            pa.table(
                {
                    "time": pa.array(np.array(ts * 2, dtype=np.int64) * 1000).cast(TS),
                    "link": ["X->Y"] * 3 + ["Y->X"] * 3,
                    "load_mbps": loads["X->Y"] + loads["Y->X"],
                    "capacity_mbps": [1000.0] * 6,
                    "utilisation": [v / 1000 for v in loads["X->Y"] + loads["Y->X"]],
                }
            ),
        )
        # issued at ts[0], 5 min ahead, for ts[1]; and one target not measured yet
        rows = [
            # target, subject, mean, lower, upper
            (ts[1], "X->Y", 100.0, 90.0, 105.0),  # actual 110: above the upper bound
            (ts[1], "Y->X", 50.0, 30.0, 60.0),  # actual 40: inside
            (ts[2] + 300, "X->Y", 120.0, 100.0, 140.0),  # pending
        ]
        n = len(rows)
        st.write(
            "forecasts",
            pa.table(
                {
                    "issued": pa.array(np.full(n, ts[0] * 1000, dtype=np.int64)).cast(TS),
                    "target": pa.array(np.array([r[0] for r in rows]) * 1000).cast(TS),
                    "horizon_s": pa.array(np.full(n, 300, dtype=np.int64)),
                    "kind": ["link"] * n,
                    "subject": [r[1] for r in rows],
                    "model": ["m"] * n,
                    "mean": [r[2] for r in rows],
                    "level": [80.0] * n,
                    "lower": [r[3] for r in rows],
                    "upper": [r[4] for r in rows],
                }
            ),
        )
        doc = score_stored(st, "link")
        (row,) = doc["rows"]
        assert row["scored"] == 2 and row["pending"] == 1
        assert row["nmae"] == pytest.approx((10 + 10) / (110 + 40))
        assert row["coverage_80"] == 0.5 and row["upper_coverage_80"] == 0.5
    finally:
        st.close()


def test_forecast_command_reads_series_and_shadow_inputs_from_a_store(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``shadowcast forecast --store`` (no topology): series from ``od_series``, shadow-path
    measurements attached as exogenous inputs, one JSON object."""
    import json

    from typer.testing import CliRunner

    from shadowcast.cli import app

    path = tmp_path / "s.duckdb"
    st = DuckDBStore(str(path))
    t0 = 1_767_571_200
    ts = [t0 + k * 300 for k in range(2 * 288)]
    rng = np.random.default_rng(5)
    st.write("od_series", _od_rows(ts, "A", "B", "", list(100 + rng.random(len(ts)))))
    st.write("od_series", _od_rows(ts, "B", "A", "", list(50 + rng.random(len(ts)))))
    m = len(ts) // 2
    st.write(
        "shadow",
        pa.table(
            {
                "time": pa.array(np.asarray(ts[m:], dtype=np.int64) * 1000 + 7).cast(TS),
                "tunnel": ["A->B"] * (len(ts) - m),
                "path": ["A>B"] * (len(ts) - m),
                "rtt_ms": [1.5] * (len(ts) - m),
                "owd_ms": [0.7] * (len(ts) - m),
                "jitter_ms": [0.1] * (len(ts) - m),
                "loss": [0.0] * (len(ts) - m),
                "abw_mbps": [900.0] * (len(ts) - m),
            }
        ),
    )
    st.close()
    res = CliRunner().invoke(
        app, ["forecast", "--store", str(path), "--model", "persistence", "--json"]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["series"] == 2 and doc["step_s"] == 300 and doc["history_steps"] == len(ts)
    # every shadow measurement by default (forecast.exog); geography of the keys (no
    # topology: the site names, no coordinates)
    assert doc["exog"] == ["abw_mbps", "jitter_ms", "loss", "owd_ms", "rtt_ms"]
    assert {"src_site", "dst_site", "distance_km"} <= set(doc["meta"])
    assert "bottleneck_mbps" not in doc["meta"]
    assert doc["links"] == [] and doc["runout"] == []
    assert [r["key"] for r in doc["top_series"]] == ["A->B", "B->A"]
    # --days trims the series at the source: the shadow inputs stay attached
    res = CliRunner().invoke(
        app,
        ["forecast", "--store", str(path), "--model", "persistence", "--days", "1", "--json"],
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["history_steps"] == 288 and len(doc["exog"]) == 5
    bad = CliRunner().invoke(app, ["forecast", "--store", str(tmp_path / "none.duckdb")])
    assert bad.exit_code == 2 and "no such file" in bad.output
    hz = CliRunner().invoke(app, ["forecast", "--store", str(path), "--horizon", "abc"])
    assert hz.exit_code == 2 and "forecast.horizons.0: " in " ".join(hz.output.split())
    csv = tmp_path / "d.csv"
    csv.write_text("time,src,dst,value\n2026-01-05T00:00:00Z,A,B,1\n")
    both = CliRunner().invoke(app, ["forecast", "--demands", str(csv), "--write"])
    assert both.exit_code == 2 and "use --store" in both.output


@pytest.mark.parametrize("name", ["persistence", "profile", "gbm", "auto"])
def test_horizons_longer_than_the_history_keep_honest_intervals(name: str) -> None:
    """A 7-day horizon on 2 days of history: no zero-width interval (the scale of
    unmeasurable horizons grows from the longest measurable one), wider than at 1 h."""
    from shadowcast.forecast.registry import make_model

    rng = np.random.default_rng(2)
    T = 2 * DAY
    t = np.arange(T)
    vals = (
        100
        * (1 + 0.3 * np.sin(2 * np.pi * t / DAY))[:, None]
        * (1 + 0.05 * rng.standard_normal((T, 4)))
    )
    frame = _frame(vals, ("A->B", "B->A", "A->C", "C->A"))
    m = make_model(name, horizons=["1h", "7d"]).fit(frame)
    H = 7 * DAY
    fc = m.predict(H, [80.0, 95.0])
    width = fc.upper[95.0] - fc.lower[95.0]
    assert np.isfinite(fc.mean).all() and (width > 0).all()
    assert (width[:, -1] > width[:, 3]).all()
    m.update(vals[-1:])  # online, the unmeasurable scales stay extrapolated
    w2 = m.predict(H, [95.0])
    assert ((w2.upper[95.0] - w2.lower[95.0])[:, -1] > 0).all()


def test_idle_series_are_retired_from_the_outlook() -> None:
    """``forecast.retire_after``: a pair silent for that long is not forecast any more;
    the link forecasts route the others only (and a store read zero-fills when told)."""
    rng = np.random.default_rng(2)
    T = 3 * DAY
    keys = ("A->B", "A->C", "C->A")
    vals = np.array([100.0, 200.0, 50.0])[None, :] * (1 + 0.01 * rng.standard_normal((T, 3)))
    vals[-DAY:, 1] = 0.0  # A->C silent for the last day
    frame = _frame(vals, keys)
    topo = _line()
    cfg = ForecastConfig(model="profile", horizons=["15m"], retire_after="12h")
    ol = forecast_outlook(frame, cfg, links=_inputs(topo, frame))
    assert ol.keys == ("A->B", "C->A") and ol.series.mean.shape == (2, 1)
    R = routing_matrix(topo, [("A", "B"), ("C", "A")])
    np.testing.assert_allclose(ol.links["15m"].mean[:, 0], R @ ol.series.mean[:, 0])
    kept = forecast_outlook(frame, ForecastConfig(model="profile", horizons=["15m"]))
    assert kept.keys == keys  # 7 days by default
    # every series idle: an empty outlook, not an error
    idle = forecast_outlook(_frame(np.zeros((T, 3)), keys), cfg)
    assert idle.keys == () and idle.series.mean.shape == (0, 1)


def test_series_from_store_missing_as_zero(tmp_path) -> None:  # type: ignore[no-untyped-def]
    st = DuckDBStore(str(tmp_path / "s.duckdb"))
    try:
        t0 = 1_767_571_200
        ts = [t0 + k * 300 for k in range(4)]
        st.write("od_series", _od_rows(ts, "A", "B", "", [1, 2, 3, 4]))
        st.write("od_series", _od_rows([ts[1]], "B", "A", "", [7]))
        gaps = series_from_store(st)
        zero = series_from_store(st, missing=0.0)
        assert np.isnan(gaps.values[[0, 2, 3], 1]).all()
        np.testing.assert_array_equal(zero.values[:, 1], [0, 7, 0, 0])
    finally:
        st.close()


def test_forecast_command_leaves_retired_series_out(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """``shadowcast forecast`` with ``forecast.retire_after``: the silent pair is neither
    forecast nor listed, and each listed series shows its own last value."""
    import json

    from typer.testing import CliRunner

    from shadowcast.cli import app
    from shadowcast.datasets import write_csv
    from shadowcast.records import DemandSeries

    T = 2 * DAY
    vals = np.tile(np.array([[5.0, 50.0, 20.0]], dtype=np.float32), (T, 1))
    vals[-20:, 1] = 0.0  # B->A silent for the last 5 hours
    times = _frame(vals, ("a", "b", "c")).times
    dem = DemandSeries(times, (("A", "B"), ("B", "A"), ("B", "C")), vals, STEP)
    csv = write_csv(dem, tmp_path / "d.csv", skip_zeros=True)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data_dir: {tmp_path}\nforecast:\n  model: persistence\n  retire_after: 4h\n")
    res = CliRunner().invoke(app, ["-c", str(cfg), "forecast", "--demands", str(csv), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert doc["series"] == 2
    assert {r["key"]: r["last"] for r in doc["top_series"]} == {"A->B": 5.0, "B->C": 20.0}


def test_forecast_exits_3_when_links_are_at_risk(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """cron/Nagios: status 3 when a link's mean or upper bound reaches forecast.threshold."""
    import json

    from typer.testing import CliRunner

    from shadowcast.cli import app
    from shadowcast.exitcodes import AT_RISK

    path = tmp_path / "s.duckdb"
    st = DuckDBStore(str(path))
    ts = [1_767_571_200 + k * 300 for k in range(2 * 288)]
    rng = np.random.default_rng(5)
    st.write("od_series", _od_rows(ts, "A", "B", "", list(100 + rng.random(len(ts)))))
    st.write("od_series", _od_rows(ts, "B", "A", "", list(50 + rng.random(len(ts)))))
    st.close()

    def run(capacity_bps: float) -> tuple[int, dict]:  # type: ignore[type-arg]
        topo = tmp_path / f"t{capacity_bps:g}.json"
        topo.write_text(
            json.dumps(
                {
                    "directed": True,
                    "multigraph": False,
                    "graph": {},
                    "nodes": [{"id": "A"}, {"id": "B"}],
                    "links": [
                        {"source": "A", "target": "B", "capacity": capacity_bps},
                        {"source": "B", "target": "A", "capacity": capacity_bps},
                    ],
                }
            )
        )
        res = CliRunner().invoke(
            app,
            ["forecast", "--store", str(path), "--topology", str(topo), "--model",
             "persistence", "--json"],
        )  # fmt: skip
        return res.exit_code, json.loads(res.stdout)

    code, doc = run(1e9)  # ~100 of 1000 Mbit/s
    assert code == 0 and doc["links_at_risk"] == [] and len(doc["links"]) == 2
    code, doc = run(1.05e8)  # ~100 of 105 Mbit/s: above 90 %
    assert code == AT_RISK and len(doc["links_at_risk"]) == 1
    assert doc["links_at_risk"][0] == doc["links"][0]["link"]  # the riskiest link first
