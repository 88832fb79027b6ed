from __future__ import annotations

from pathlib import Path

import pytest

from shadowcast.errors import ConfigError
from shadowcast.settings import load_settings
from shadowcast.units import format_duration, horizon_steps, parse_duration

REPO = Path(__file__).resolve().parents[2]


def test_defaults_load() -> None:
    s = load_settings(environ={})
    assert s.alert.utilisation_threshold == 0.9
    assert s.replay.horizons == ["15m", "1h"]


def test_example_file_is_valid() -> None:
    s = load_settings(REPO / "shadowcast.yaml.example", environ={})
    assert s.replay.models[0] == "profile"


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("alert:\n  utilisation_threshold: lots\n")
    with pytest.raises(ConfigError) as err:
        load_settings(f, environ={})
    assert "alert.utilisation_threshold" in str(err.value)
    assert str(f) in str(err.value)


def test_unknown_key_rejected(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("replay:\n  wekks: 2\n")
    with pytest.raises(ConfigError, match="replay.wekks"):
        load_settings(f, environ={})


def test_not_yaml_and_not_mapping(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("alert: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(f, environ={})
    f.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_settings(f, environ={})
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml", environ={})


def test_env_overrides_file(tmp_path: Path) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("alert:\n  utilisation_threshold: 0.8\n")
    s = load_settings(f, environ={"SHADOWCAST_ALERT__UTILISATION_THRESHOLD": "0.7"})
    assert s.alert.utilisation_threshold == 0.7
    with pytest.raises(ConfigError, match="alert.utilisation_threshold"):
        load_settings(f, environ={"SHADOWCAST_ALERT__UTILISATION_THRESHOLD": "-1"})


def test_durations() -> None:
    assert parse_duration("15m") == 900
    assert parse_duration("1h") == 3600
    assert parse_duration("2d") == 172800
    assert format_duration(900) == "15m" and format_duration(3600) == "1h"
    assert horizon_steps("1h", 300) == 12
    with pytest.raises(ConfigError):
        parse_duration("soon")
    with pytest.raises(ConfigError):
        horizon_steps("7m", 300)


def test_store_follows_data_dir_unless_set(tmp_path: Path) -> None:
    s = load_settings(environ={"SHADOWCAST_DATA_DIR": str(tmp_path)})
    assert Path(s.store.data_dir) == tmp_path  # type: ignore[attr-defined]
    f = tmp_path / "s.yaml"
    f.write_text(f"data_dir: {tmp_path}\nstore:\n  data_dir: /srv/db\n")
    assert str(load_settings(f, environ={}).store.data_dir) == "/srv/db"  # type: ignore[attr-defined]
