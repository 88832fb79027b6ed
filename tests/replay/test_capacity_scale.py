"""``--capacity-scale`` for ``replay`` and ``eval alerts``: a factor, ``auto``, or one error
line naming the option."""

from __future__ import annotations

import pytest

from shadowcast.errors import ConfigError
from shadowcast.replay.source import auto_capacity_scale, capacity_scale, load_source


def test_capacity_scale_factor_auto_and_bad_input() -> None:
    source = load_source(None, None, None, 0.05, 0)
    assert capacity_scale("2.5", source) == 2.5
    assert capacity_scale(" AUTO ", source) == pytest.approx(auto_capacity_scale(source))
    for bad, why in (("x", "not a number or auto"), ("0", "positive"), ("-1", "positive"),
                     ("nan", "positive"), ("inf", "finite"), ("", "not a number")):  # fmt: skip
        with pytest.raises(ConfigError, match=f"--capacity-scale.*{why}"):
            capacity_scale(bad, source)
