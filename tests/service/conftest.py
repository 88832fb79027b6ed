"""Fixtures: the small ring backbone (ringnet.py) and replay settings for service tests."""

from __future__ import annotations

import pytest
from ringnet import small_source

from shadowcast.replay.source import TrafficSource
from shadowcast.settings import load_settings


@pytest.fixture
def source() -> TrafficSource:
    return small_source()


@pytest.fixture
def settings():  # type: ignore[no-untyped-def]
    s = load_settings(None, environ={})
    replay = s.replay.model_copy(update={"warmup": "1d", "checkpoint_every": "6h"})
    return s.model_copy(update={"replay": replay})
