"""Where the third-party data sets live: ``$SHADOWCAST_DATA``, else ``../shared/data``
beside the repository (or beside the working directory)."""

from __future__ import annotations

import os
from pathlib import Path

_REPO = Path(__file__).resolve().parents[3]


def find_data_dir() -> Path | None:
    """The data folder, or None when there is none (tests then skip with a reason)."""
    env = os.environ.get("SHADOWCAST_DATA")
    candidates = [Path(env)] if env else []
    candidates += [_REPO.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"]
    for c in candidates:
        if c.is_dir():
            return c
    return None
