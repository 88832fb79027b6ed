"""Property tests: hostile rules, application maps, sites, behaviour models and GeoIP files.

Each loader gives a ConfigError on one line naming the file, or a result that then works on
flows: a file that loads must never fail later, when its rules or sites meet a batch.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, example, given, settings
from profile_flowgen import one_flow

from hostile import EDITS, Edit, mutate, one_clear_line
from shadowcast.errors import ConfigError
from shadowcast.profile.appmap import AppMap
from shadowcast.profile.classifier import DEFAULT_MODEL, BehaviourModel
from shadowcast.profile.rules import RuleSet
from shadowcast.profile.where import Locator

pytestmark = pytest.mark.fuzz

FUZZ = settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

RULES = b"""rules:
  - name: backups
    app: site-backup
    category: bulk
    cidrs: [10.1.0.0/16, "2001:db8:1::/48"]
    asns: [65001]
    ports: [873, "8000-8100"]
    proto: tcp
    names: ["*.backup.example.com"]
    confidence: 0.9
  - {app: dns, ports: [53], proto: 17}
"""
APPS = b"""categories:
  video: [YouTube, Netflix]
  bulk: [rsync, site-backup]
master_dominant: [TLS, QUIC]
"""
SITES = b"""sites:
  ams: {region: eu-west, prefixes: [10.1.0.0/16, "2001:db8:1::/48"]}
  nyc: {region: us-east, prefixes: [10.2.0.0/16]}
exporters:
  192.0.2.1:
    site: ams
    interfaces: {1: ams-edge1:xe-0/0/1, 2: ams-core:et-1}
geo_regions: {US: us-east}
"""


def _flows() -> pa.Table:
    return pa.concat_tables(
        [
            one_flow(src_addr="10.1.5.9", dst_addr="10.2.0.1", in_if=1, out_if=2),
            one_flow(src_addr="8.8.8.8", dst_addr="2001:db8:1::5", dst_port=873),
            one_flow(src_addr="193.0.3.4", dst_addr="1.1.1.1", exporter="198.51.100.9"),
        ]
    )


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    p = tmp_path / name
    p.write_bytes(data)
    return p


@FUZZ
@given(edits=EDITS)
@example(edits=[("ins", 0, 0, b"\xff\xfe\x00")]).via("discovered failure")
@example(edits=[("put", RULES.index(b"65001"), 0, b"9" * 5000)]).via("discovered failure")
@example(edits=[("ins", RULES.index(b"65001"), 0, b"9999999999999999")]).via("make fuzz")
@example(edits=[("ins", RULES.index(b"[873"), 0, b"[" * 1200)]).via("discovered failure")
def test_rules_file(tmp_path: Path, edits: list[Edit]) -> None:
    p = _write(tmp_path, "rules.yaml", mutate(RULES, edits))
    try:
        rules = RuleSet.load(p)
    except ConfigError as exc:
        one_clear_line(str(exc), str(p))
    else:
        rules.match(_flows())


@FUZZ
@given(edits=EDITS)
@example(edits=[("ins", 0, 0, b"\xc3")]).via("discovered failure")
@example(edits=[("ins", 0, 0, b"~: 1\nx: 2\n")]).via("discovered failure")
def test_application_map(tmp_path: Path, edits: list[Edit]) -> None:
    p = _write(tmp_path, "apps.yaml", mutate(APPS, edits))
    try:
        amap = AppMap.load(p)
    except ConfigError as exc:
        one_clear_line(str(exc), str(p))
    else:
        amap.resolve(pa.array(["YouTube", "TLS.Netflix", "rsync", None, "x" * 300]))


@FUZZ
@given(edits=EDITS)
@example(edits=[("ins", 0, 0, b"\xed\xa0\x80")]).via("discovered failure")
@example(edits=[("ins", 0, 0, b"x: " + b"9" * 5000 + b"\n")]).via("discovered failure")
def test_sites_file(tmp_path: Path, edits: list[Edit]) -> None:
    p = _write(tmp_path, "sites.yaml", mutate(SITES, edits))
    try:
        loc = Locator.from_files(p, None)
    except ConfigError as exc:
        one_clear_line(str(exc), str(p))
    else:
        loc.locate(_flows())


MODEL = resources.files("shadowcast.profile").joinpath(DEFAULT_MODEL).read_bytes()
HEAD, _, BODY = MODEL.partition(b"\n")


@FUZZ
@given(edits=EDITS)
@example(edits=[("put", HEAD.index(b'"classes"'), 0, b'"glasses"')]).via("discovered failure")
@example(edits=[("ins", len(HEAD), 0, b"\xff")]).via("discovered failure")
def test_behaviour_model_header(tmp_path: Path, edits: list[Edit]) -> None:
    # only the header is mutated: the body is LightGBM's own format, parsed by its C++ code
    p = _write(tmp_path, "model.txt", mutate(HEAD, edits) + b"\n" + BODY)
    try:
        BehaviourModel.load(p)
    except ConfigError as exc:
        one_clear_line(str(exc), str(p))


@pytest.fixture(scope="module")
def mmdb_bytes(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    mmdb_writer = pytest.importorskip("mmdb_writer")
    netaddr = pytest.importorskip("netaddr")
    w = mmdb_writer.MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country")
    w.insert_network(netaddr.IPSet(["8.8.8.0/24"]), {"country": {"iso_code": "US"}})
    w.insert_network(netaddr.IPSet(["193.0.0.0/16"]), {"country": {"iso_code": "NL"}})
    path = tmp_path_factory.mktemp("geo") / "geo.mmdb"
    w.to_db_file(str(path))
    return path.read_bytes()


# each example that opens walks the database in a child process: a fifth of the examples
@settings(FUZZ, max_examples=max(10, settings().max_examples // 5))
@given(edits=EDITS)
@example(edits=[("flip", 60, 3, b"")]).via("discovered failure")
@example(edits=[("put", 824, 0, b"\x00\x00\x00")]).via("make fuzz")
@example(edits=[("del", 853, 0, b"")]).via("make fuzz: segfault in maxminddb's C reader")
def test_geoip_database(tmp_path: Path, mmdb_bytes: bytes, edits: list[Edit]) -> None:
    p = _write(tmp_path, "geo.mmdb", mutate(mmdb_bytes, edits))
    try:
        loc = Locator(None, p)
    except ConfigError as exc:
        one_clear_line(str(exc), str(p))
        return
    try:
        loc.locate(_flows())  # a corrupt data section is counted, never raised
        assert loc.stats.geoip_lookups >= 1
    finally:
        loc.close()
