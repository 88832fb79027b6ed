"""A served service with data: the small ring backbone replayed in advise mode (plans wait
for an operator), then kept for the API and dashboard tests."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from shadowcast.api.state import ApiState
from shadowcast.replay.driver import run_replay
from shadowcast.settings import load_settings
from shadowcast.store.config import StoreConfig, open_store
from shadowcast.store.shared import SharedStore

READ_TOKEN = "read-token-0123456789"
ADMIN_TOKEN = "admin-token-9876543210"


def _ringnet() -> Any:
    path = Path(__file__).resolve().parents[1] / "service" / "ringnet.py"
    spec = importlib.util.spec_from_file_location("ringnet_for_api", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def token_settings(rate_per_minute: float = 6000) -> Any:
    s = load_settings(None, environ={})
    tokens = [
        {"name": "noc", "scope": "read", "sha256": hashlib.sha256(READ_TOKEN.encode()).hexdigest()},
        {
            "name": "ops",
            "scope": "admin",
            "sha256": hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest(),
        },
    ]
    api = s.api.model_validate(
        {"listen": "127.0.0.1:0", "tokens": tokens, "rate_per_minute": rate_per_minute}
    )
    replay = s.replay.model_copy(update={"warmup": "1d", "checkpoint_every": "6h"})
    alert = s.alert.model_copy(update={"teams": {"A->*": "west", "*": "core"}})
    return s.model_copy(update={"api": api, "replay": replay, "alert": alert})


def served(tmp: Path) -> ApiState:
    """The ring replayed for 3 days in advise mode, its service attached to an ApiState."""
    settings = token_settings()
    store = SharedStore(open_store(StoreConfig(data_dir=tmp, path="served.duckdb")))
    run = run_replay(
        settings, _ringnet().small_source(), store, tmp / "state", ipfix=False, mode="advise"
    )
    state = ApiState(settings, store)
    state.attach(run.service)
    return state


def served_acting(tmp: Path) -> ApiState:
    """The ring replayed for 3 days in auto mode (plans are applied, their effect judged
    into ``action_outcomes``), its service attached to an ApiState."""
    settings = token_settings()
    store = SharedStore(open_store(StoreConfig(data_dir=tmp, path="acting.duckdb")))
    run = run_replay(settings, _ringnet().small_source(), store, tmp / "state", ipfix=False)
    state = ApiState(settings, store)
    state.attach(run.service)
    return state
