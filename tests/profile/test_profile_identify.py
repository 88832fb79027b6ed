"""Layered identification: names, rules, model; bad input never drops a flow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from profile_flowgen import make_flows, one_flow

from shadowcast.errors import ConfigError, DataError
from shadowcast.profile.appmap import AppMap
from shadowcast.profile.config import ProfileConfig
from shadowcast.profile.identify import PROFILED_SCHEMA, Profiler
from shadowcast.profile.rules import RuleSet
from shadowcast.records import CATEGORIES


@pytest.mark.parametrize(
    ("name", "app", "category"),
    [
        ("TLS.NetFlix", "NetFlix", "video"),
        ("QUIC.YouTube", "YouTube", "video"),
        ("DNS.NetFlix", "DNS", "other"),  # the master protocol decides for DNS
        ("STUN.Zoom", "Zoom", "voip"),
        ("ms-teams", "ms-teams", "voip"),  # NBAR2 spelling
        ("Skype_TeamsCall", "Skype_TeamsCall", "voip"),
        ("BitTorrent", "BitTorrent", "bulk"),
        ("Steam", "Steam", "interactive"),
        ("secure-http", "secure-http", "web"),
        ("Unknown", "", "unknown"),
        ("NoSuchApp", "NoSuchApp", ""),
        ("", "", ""),
    ],
)
def test_app_map(name: str, app: str, category: str) -> None:
    assert AppMap.load().category_of(name) == (app, category)


def test_operator_app_map_overrides_and_validates(tmp_path: Path) -> None:
    f = tmp_path / "apps.yaml"
    f.write_text("categories:\n  bulk: [HTTP, corp-backup]\n")
    m = AppMap.load(f, set(CATEGORIES))
    assert m.category_of("HTTP")[1] == "bulk"
    assert m.category_of("Corp_Backup")[1] == "bulk"
    f.write_text("categories:\n  streaming: [Foo]\n")
    with pytest.raises(ConfigError, match=r"categories\.streaming"):
        AppMap.load(f, set(CATEGORIES))


def test_layers_and_sources(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text(
        "rules:\n"
        "  - {name: backup, app: corp-backup, category: bulk, cidrs: [10.9.0.0/16]}\n"
        "  - {app: rsync, ports: [873], proto: tcp}\n"
    )
    t = pa.concat_tables(
        [
            one_flow(app="TLS.NetFlix", app_source="exporter"),
            one_flow(app="Zoom", app_source="ndpi", app_confidence=0.8),
            one_flow(dst_addr="10.9.1.1"),
            one_flow(dst_port=873),
            one_flow(app="NoSuchApp", dst_addr="10.9.1.1", app_source="exporter"),
            one_flow(),  # left for the model
        ]
    )
    out = Profiler(ProfileConfig(rules_file=rules)).identify(t)
    assert out.schema == PROFILED_SCHEMA
    assert out.column("app_source").to_pylist() == [
        "exporter", "ndpi", "rules", "rules", "rules", "model"
    ]  # fmt: skip
    assert out.column("app").to_pylist()[:5] == [
        "NetFlix", "Zoom", "corp-backup", "rsync", "corp-backup"
    ]  # fmt: skip
    assert out.column("category").to_pylist()[:5] == ["video", "voip", "bulk", "bulk", "bulk"]
    conf = out.column("app_confidence").to_pylist()
    assert conf[0] == 1.0 and conf[1] == pytest.approx(0.8) and conf[2] == pytest.approx(0.95)
    assert out.column("category")[5].as_py() in CATEGORIES


def test_rules_override_puts_operator_first(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("rules:\n  - {app: cdn-video, category: video, ports: [443]}\n")
    t = one_flow(app="HTTP", app_source="exporter")
    plain = Profiler(ProfileConfig(rules_file=rules)).identify(t)
    over = Profiler(ProfileConfig(rules_file=rules, rules_override=True)).identify(t)
    assert plain.column("category")[0].as_py() == "web"
    assert over.column("category")[0].as_py() == "video"
    assert over.column("app_source")[0].as_py() == "rules"


def test_without_model_undecided_flows_are_unknown_not_dropped() -> None:
    t = make_flows(2000, seed=3)
    out = Profiler(ProfileConfig(use_model=False)).identify(t)
    assert out.num_rows == t.num_rows
    src = np.asarray(out.column("app_source").to_pylist(), dtype=object)
    cat = np.asarray(out.column("category").to_pylist(), dtype=object)
    assert set(cat[src == ""]) == {"unknown"}
    assert (src == "").sum() == (np.asarray(t.column("app").to_pylist(), dtype=object) == "").sum()


def test_every_flow_has_a_category_in_the_taxonomy() -> None:
    t = make_flows(5000, seed=4)
    out = Profiler().identify(t)
    assert out.num_rows == 5000
    assert set(out.column("category").to_pylist()) <= set(CATEGORIES)
    assert set(out.column("app_source").to_pylist()) <= {"exporter", "model", ""}


def test_missing_required_column_is_a_clear_error() -> None:
    t = make_flows(10).drop_columns(["bytes"])
    with pytest.raises(DataError, match="bytes"):
        Profiler(ProfileConfig(use_model=False)).identify(t)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("rules:\n  - {app: x, cidrs: [10.0.0.0/33]}\n", r"rules\[0\]\.cidrs"),
        ("rules:\n  - {app: x, ports: ['9-2']}\n", r"rules\[0\]\.ports"),
        ("rules:\n  - {app: x, proto: carrier-pigeon}\n", r"rules\[0\]\.proto"),
        ("rules:\n  - {app: x, colour: red}\n", r"rules\[0\]\.colour"),
        ("rules:\n  - {app: x}\n", r"rules\[0\]: a rule needs"),
        ("rules:\n  - {ports: [80]}\n", r"rules\[0\]\.app"),
        ("rules:\n  - {app: x, ports: [80], category: streaming}\n", r"rules\[0\]\.category"),
        ("rules: [\n", "not valid YAML"),
    ],
)
def test_malformed_rules_name_the_field(tmp_path: Path, text: str, field: str) -> None:
    f = tmp_path / "rules.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=field) as err:
        RuleSet.load(f, set(CATEGORIES))
    assert str(f) in str(err.value)


def test_rules_match_asn_and_server_name() -> None:
    from shadowcast.profile.rules import Rule

    rs = RuleSet(
        [
            Rule(app="by-asn", asns=[65001]),
            Rule(app="by-name", names=["*.video.example"]),
        ]
    )
    t = pa.concat_tables([one_flow(src_as=65001), one_flow(), one_flow()])
    t = t.append_column("server_name", pa.array(["", "a.video.example", "other.example"]))
    assert rs.match(t).rule.tolist() == [0, 1, -1]
    # a batch without server names never matches a name rule
    assert rs.match(t.drop_columns(["server_name"])).rule.tolist() == [0, -1, -1]


class _Constant:
    """A trivial CategoryModel: one category at a fixed confidence."""

    classes = ("bulk",)

    def __init__(self, confidence: float) -> None:
        self.confidence = confidence

    def predict(self, table: pa.Table, hide_rich: bool = False) -> object:
        from shadowcast.profile.base import Prediction

        n = table.num_rows
        return Prediction(np.full(n, "bulk", dtype=object), np.full(n, self.confidence, np.float32))


@pytest.mark.parametrize(("confidence", "category"), [(0.9, "bulk"), (0.1, "unknown")])
def test_model_confidence_floor(confidence: float, category: str) -> None:
    cfg = ProfileConfig(model_min_confidence=0.4)
    out = Profiler(cfg, model=_Constant(confidence)).identify(one_flow())  # type: ignore[arg-type]
    assert out.column("category")[0].as_py() == category
    assert out.column("app_source")[0].as_py() == "model"
    assert out.column("app_confidence")[0].as_py() == pytest.approx(confidence)
