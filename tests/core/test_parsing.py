"""parsing.py: JSON and YAML from outside give the caller's error, on one line, quickly."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hostile import EDITS, Edit, mutate, one_clear_line
from shadowcast.errors import ConfigError, PlanError
from shadowcast.parsing import MAX_DEPTH, clip, load_json, load_yaml, read_input

BOMB = b"a: &a [x, x, x, x, x, x, x, x, x]\n" + b"".join(
    b"%c: &%c [%s]\n" % (c, c, b", ".join([b"*%c" % (c - 1)] * 9)) for c in b"bcdefgh"
)  # nine to the eighth: 43 million nodes once expanded, 300 bytes on disk


def test_yaml_alias_bomb_is_refused_quickly() -> None:
    assert len(BOMB) < 400
    t0 = time.perf_counter()
    with pytest.raises(
        ConfigError, match=r"f.yaml: YAML aliases expand to more than 1000000"
    ) as ei:
        load_yaml(BOMB, "f.yaml", ConfigError)
    assert time.perf_counter() - t0 < 2.0
    one_clear_line(str(ei.value), "f.yaml")


def test_yaml_aliases_within_bounds_are_kept() -> None:
    doc = load_yaml(
        b"base: &p [80, 443]\nweb: {ports: *p}\nmerge: {<<: {a: 1}, b: 2}\n", "f", PlanError
    )
    assert doc == {"base": [80, 443], "web": {"ports": [80, 443]}, "merge": {"a": 1, "b": 2}}


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"a: &a [1, *a]\n", "recursive alias"),
        (b"a: " + b"[" * 5000, f"nested deeper than {MAX_DEPTH}"),
        (b"a: " + b"9" * 5000, "integer of 5000 digits"),
        (bytes(range(256)), r"f:.*not valid YAML \(unacceptable character"),
        (b"a: !!python/object:os.system x\n", r"f:1:4: not valid YAML \(could not determine"),
        (b"? [a]\n: 1\n", r"f:1:3: not valid YAML \(found unhashable key\)"),
        (b"a: [1, 2\n", r"f:2:1: not valid YAML"),
    ],
)
def test_hostile_yaml(text: bytes, match: str) -> None:
    with pytest.raises(ConfigError, match=match) as ei:
        load_yaml(text, "f", ConfigError)
    one_clear_line(str(ei.value), "f")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (b"[" * 100_000, "f: JSON nested too deeply"),
        (b'{"a": ' + b"9" * 5000 + b"}", "integer literal of 5000 digits"),
        (b'{"a": "\xc3"}', "not UTF-8 JSON text"),
        (b'{"a": 1,}', r"f:1:9: malformed JSON \(Expecting property name"),
    ],
)
def test_hostile_json(text: bytes, match: str) -> None:
    with pytest.raises(PlanError, match=match) as ei:
        load_json(text, "f", PlanError)
    one_clear_line(str(ei.value), "f")


def test_json_values_within_bounds() -> None:
    doc = load_json(
        b'{"a": -1234567890123456789, "b": [1e400, NaN], "c": "\\u00e9"}', "f", PlanError
    )
    assert doc["a"] == -1234567890123456789 and doc["b"][0] == float("inf") and doc["c"] == "é"


def test_read_input_caps_and_names(tmp_path: Path) -> None:
    p = tmp_path / "x"
    with p.open("wb") as fh:
        fh.truncate(10_000)
    with pytest.raises(ConfigError, match=r"x: rules is larger than 9999 bytes"):
        read_input(p, ConfigError, "rules", max_bytes=9999)
    assert len(read_input(p, ConfigError, "rules", max_bytes=10_000)) == 10_000
    with pytest.raises(ConfigError, match=r"absent: cannot read rules \(No such file"):
        read_input(tmp_path / "absent", ConfigError, "rules")


def test_clip_is_short_and_on_one_line() -> None:
    assert clip("abc") == "'abc'"
    long = clip("x\n" * 1000)
    assert "\n" not in long and len(long) < 90 and long.endswith("(3002 chars)")


@pytest.mark.fuzz
@given(doc=st.sampled_from([BOMB, b"a: &p [1]\nb: *p\n", b'{"a": [1, {"b": null}]}']), edits=EDITS)
@example(doc=b"a: 1\n", edits=[("ins", 0, 0, b"\xed\xa0\x80")]).via("discovered failure")
def test_only_the_callers_error(doc: bytes, edits: list[Edit]) -> None:
    data = mutate(doc, edits)
    for parse in (load_yaml, load_json):
        try:
            parse(data, "f", ConfigError)
        except ConfigError as exc:
            one_clear_line(str(exc), "f")
