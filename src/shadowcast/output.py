"""What commands print: one JSON object with ``--json``, a rich table otherwise."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(stderr=True)  # progress, notes, errors
# tables and reports (stdout); piped output gets 200 columns rather than rich's 80
out = Console(width=None if sys.stdout.isatty() else 200)


def _clean(v: Any) -> Any:
    if isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v]
    return v


def _default(v: Any) -> Any:
    item = getattr(v, "item", None)  # numpy scalars -> int/float/bool
    if callable(item) and getattr(v, "shape", None) == ():
        return _clean(item())
    return str(v)


def emit_json(obj: Any) -> None:
    """Print one JSON object on stdout (NaN/inf become null; numpy scalars plain numbers)."""
    sys.stdout.write(json.dumps(_clean(obj), default=_default) + "\n")


def emit_record(obj: dict[str, Any], as_json: bool, title: str) -> None:
    """One record: JSON with ``as_json``, else a two-column table of its fields."""
    if as_json:
        emit_json(obj)
        return
    table = Table(title=title, show_header=False)
    for k, v in obj.items():
        table.add_row(k, f"{v:,.3f}" if isinstance(v, float) else str(v))
    out.print(table)
