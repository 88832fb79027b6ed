"""Geography of OD series: sites, regions, coordinates, distance, local time; the
coordinates an SNDlib demand file carries; the GBM's local-time features."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from shadowcast.datasets import demand_coords
from shadowcast.errors import DemandError
from shadowcast.forecast.gbm import GlobalGBM, calendar_terms
from shadowcast.forecast.geo import GEO_KEYS, geo_meta, great_circle_km, od_ends, with_geo
from shadowcast.records import SeriesFrame

NYC = (-73.97, 40.78)
LAX = (-118.25, 34.05)
AMS = (4.90, 52.37)


def test_od_ends() -> None:
    assert od_ends("A->B") == ("A", "B")
    assert od_ends("A->B/video") == ("A", "B")
    assert od_ends("s7") is None and od_ends("->B") is None


def test_distance_is_the_great_circle() -> None:
    km = great_circle_km(
        np.array([NYC[0]]), np.array([NYC[1]]), np.array([LAX[0]]), np.array([LAX[1]])
    )
    assert 3900 < km[0] < 3970  # New York - Los Angeles, about 3,940 km
    assert (
        great_circle_km(np.array([1.0]), np.array([2.0]), np.array([1.0]), np.array([2.0]))[0] == 0
    )


def test_geo_meta_per_key() -> None:
    keys = ["nyc->lax", "lax->ams/web", "ams->xyz", "total"]
    meta = geo_meta(keys, {"nyc": NYC, "lax": LAX, "ams": AMS}, regions={"ams": "eu-west"})
    assert set(meta) == set(GEO_KEYS)
    assert list(meta["src_site"]) == ["nyc", "lax", "ams", ""]
    assert list(meta["dst_site"]) == ["lax", "ams", "xyz", ""]
    # a sites file's region wins; else the time-zone band of the longitude
    assert list(meta["src_region"]) == ["UTC-5", "UTC-8", "eu-west", ""]
    assert meta["dst_region"][2] == "unknown"  # no coordinates, no sites file entry
    np.testing.assert_array_equal(meta["src_utc_offset_h"][:3], [-5.0, -8.0, 0.0])
    assert np.isnan(meta["dst_utc_offset_h"][2]) and np.isnan(meta["distance_km"][3])
    assert meta["distance_km"][0] == pytest.approx(3937, abs=30)
    assert meta["src_lat"][1] == LAX[1] and meta["dst_lon"][1] == AMS[0]


def test_with_geo_leaves_non_od_frames_alone(frame: SeriesFrame) -> None:
    assert with_geo(frame, {"a": NYC}) is frame  # keys s0, s1, ...: not OD pairs
    f = SeriesFrame(frame.times, ("nyc->lax",), frame.values[:, :1], frame.step)
    assert with_geo(f, {"nyc": NYC, "lax": LAX}).meta["src_site"][0] == "nyc"


SNDLIB = """<?xml version="1.0" encoding="ISO-8859-1"?>
<network xmlns="http://sndlib.zib.de/network" version="1.0">
 <meta><granularity>5min</granularity><time>20040301-0000</time><unit>MBITPERSEC</unit></meta>
 <networkStructure><nodes coordinatesType="geographical">
  <node id="NYC"><coordinates><x>-73.97</x><y>40.78</y></coordinates></node>
  <node id="LAX"><coordinates><x>-118.25</x><y>34.05</y></coordinates></node>
 </nodes><links></links></networkStructure>
 <demands><demand id="NYC_LAX"><source>NYC</source><target>LAX</target>
 <demandValue>1.5</demandValue></demand></demands>
</network>
"""


def test_demand_coords_from_an_sndlib_matrix_and_none_from_a_csv(tmp_path: Path) -> None:
    xml = tmp_path / "m.xml"
    xml.write_text(SNDLIB)
    assert demand_coords(xml) == {"NYC": (-73.97, 40.78), "LAX": (-118.25, 34.05)}
    folder = tmp_path / "set"
    folder.mkdir()
    (folder / "a.xml").write_text(SNDLIB)
    assert demand_coords(folder)["LAX"] == (-118.25, 34.05)
    csv = tmp_path / "d.csv"
    csv.write_text("time,src,dst,value\n2026-01-05T00:00:00Z,A,B,1\n")
    assert demand_coords(csv) == {}
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DemandError, match="no .xml"):
        demand_coords(empty)


def test_demand_coords_of_the_shared_sets(data_dir: Path) -> None:
    tm = next((data_dir / "traffic_matrices" / "sndlib").glob("directed-abilene-*.tar.gz"))
    coords = demand_coords(tm)
    assert len(coords) == 12 and coords["NYCMng"] == (-73.9667, 40.7833)


def test_gbm_reads_the_local_time_of_each_end(frame: SeriesFrame) -> None:
    """With ``*_utc_offset_h`` meta the GBM adds each end's local time of day (computed from
    the target time and the offset), on top of the UTC calendar terms; the week's terms
    only from two weeks of history on (three days here)."""
    n = len(frame.keys)
    keys = tuple(f"a{i}->b{i % 3}" for i in range(n))
    lon = np.linspace(-120.0, 30.0, n)
    coords = {f"a{i}": (float(lon[i]), 40.0) for i in range(n)}
    coords |= {f"b{j}": (15.0 * j, 50.0) for j in range(3)}
    plain = SeriesFrame(frame.times, keys, frame.values, frame.step)
    geo = with_geo(plain, coords)
    m0 = GlobalGBM(rounds=5, max_rows=5000).fit(plain)
    m1 = GlobalGBM(rounds=5, max_rows=5000).fit(geo)
    assert m1._cycles == (True, False)
    o = np.array([500, 600], dtype=np.int64)
    i = np.array([0, n - 1], dtype=np.int64)
    h = np.array([3, 12], dtype=np.int64)
    x0, x1 = m0._features(m0._y, o, i, h), m1._features(m1._y, o, i, h)
    # 2 x 2 local time-of-day terms, then the meta columns
    assert x1.shape[1] == x0.shape[1] + 4 + m1._meta.shape[1]
    t = m1.time_of(o + h) + geo.meta["src_utc_offset_h"][i] * 3600.0
    local = calendar_terms(t, (1,), weekly=False)
    at = x0.shape[1] - 6  # the local terms follow the UTC calendar, before the 6 cross-series
    np.testing.assert_allclose(x1[:, at : at + 2], np.stack(local, axis=1))
    m2 = GlobalGBM(rounds=5, max_rows=5000, exclude=["geography"]).fit(geo)
    assert m2._features(m2._y, o, i, h).shape[1] == x0.shape[1]
    m3 = GlobalGBM(rounds=5, max_rows=5000, exclude=["calendar", "cross_series"]).fit(plain)
    assert m3._features(m3._y, o, i, h).shape[1] == x0.shape[1] - 4 - 6
