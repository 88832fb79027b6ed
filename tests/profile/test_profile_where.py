"""Sites, regions, edges and GeoIP (a small mmdb built here), with their fallbacks."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest
from profile_flowgen import one_flow

from shadowcast.errors import ConfigError
from shadowcast.profile.config import ProfileConfig
from shadowcast.profile.identify import Profiler
from shadowcast.profile.where import Locator

SITES = """
sites:
  ams: {region: eu-west, prefixes: [10.1.0.0/16, "2001:db8:1::/48"]}
  nyc: {region: us-east, prefixes: [10.2.0.0/16]}
  ams-lab: {region: eu-west, prefixes: [10.1.5.0/24]}
exporters:
  192.0.2.1:
    site: ams
    interfaces: {1: ams-edge1:xe-0/0/1, 2: ams-core:et-1}
geo_regions: {US: us-east}
"""


@pytest.fixture()
def mmdb(tmp_path: Path) -> Path:
    mmdb_writer = pytest.importorskip("mmdb_writer")
    netaddr = pytest.importorskip("netaddr")
    w = mmdb_writer.MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country")
    w.insert_network(netaddr.IPSet(["8.8.8.0/24"]), {"country": {"iso_code": "US"}})
    w.insert_network(netaddr.IPSet(["193.0.0.0/16"]), {"country": {"iso_code": "NL"}})
    w.insert_network(netaddr.IPSet(["2a00:1450::/32"]), {"country": {"iso_code": "IE"}})
    path = tmp_path / "geo.mmdb"
    w.to_db_file(str(path))
    return path


def _sites(tmp_path: Path) -> Path:
    f = tmp_path / "sites.yaml"
    f.write_text(SITES)
    return f


def _flows() -> pa.Table:
    return pa.concat_tables(
        [
            one_flow(src_addr="10.1.5.9", dst_addr="10.2.0.1", in_if=1, out_if=2),
            one_flow(src_addr="10.1.0.9", dst_addr="8.8.8.8", in_if=7, out_if=2),
            one_flow(src_addr="2001:db8:1::5", dst_addr="193.0.3.4", in_if=2),
            one_flow(src_addr="2a00:1450::1", dst_addr="1.1.1.1", exporter="198.51.100.9"),
        ]
    )


def test_sites_regions_edges_and_geoip(tmp_path: Path, mmdb: Path) -> None:
    loc = Locator.from_files(_sites(tmp_path), mmdb)
    p = loc.locate(_flows())
    assert p.src_site.to_pylist() == ["ams-lab", "ams", "ams", "external"]  # longest prefix
    assert p.src_region.to_pylist() == ["eu-west", "eu-west", "eu-west", "IE"]
    assert p.dst_site.to_pylist() == ["nyc", "external", "external", "unknown"]
    assert p.dst_region.to_pylist() == ["us-east", "us-east", "NL", "unknown"]
    assert p.ingress.to_pylist() == [
        "ams-edge1:xe-0/0/1", "ams", "ams-core:et-1", "exporter:198.51.100.9"
    ]  # fmt: skip
    assert p.egress.to_pylist() == ["nyc", "ams-core:et-1", "ams-core:et-1", "unknown"]
    assert loc.stats.unknown_exporters == {"198.51.100.9": 1}
    loc.close()


def test_missing_geoip_database_falls_back_to_unknown(tmp_path: Path) -> None:
    loc = Locator.from_files(_sites(tmp_path), tmp_path / "absent.mmdb")
    p = loc.locate(_flows())
    assert loc.stats.geoip_missing
    assert p.dst_site.to_pylist() == ["nyc", "unknown", "unknown", "unknown"]
    assert p.dst_region.to_pylist() == ["us-east", "unknown", "unknown", "unknown"]


def test_corrupt_geoip_database_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.mmdb"
    bad.write_bytes(b"not a database at all" * 10)
    with pytest.raises(ConfigError, match="bad.mmdb"):
        Locator.from_files(None, bad)


def test_profiler_keeps_every_flow_with_unknown_exporter_and_no_geoip(tmp_path: Path) -> None:
    cfg = ProfileConfig(sites_file=_sites(tmp_path), geoip_db=tmp_path / "none.mmdb")
    out = Profiler(cfg).identify(_flows())
    assert out.num_rows == 4
    assert out.column("src_site").to_pylist() == ["ams-lab", "ams", "ams", "unknown"]
    assert out.column("ingress")[3].as_py() == "exporter:198.51.100.9"


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("sites:\n  a: {prefixes: [10.0.0.0/40]}\n", "prefixes"),
        ("sites:\n  a: {region: x, colour: y}\n", r"sites\.a\.colour"),
        ("exporters:\n  1.2.3.4: {site: nowhere}\n", r"exporters\.1\.2\.3\.4\.site"),
        ("sites: [\n", "not valid YAML"),
    ],
)
def test_malformed_sites_file(tmp_path: Path, text: str, field: str) -> None:
    f = tmp_path / "sites.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=field):
        Locator.from_files(f, None)
