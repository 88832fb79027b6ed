"""Optional dependencies: which extra installs which module, and the error that says so."""

from __future__ import annotations

import importlib
from types import ModuleType

from shadowcast.errors import MissingExtraError

#: The name to ``pip install`` (the import and command name is ``shadowcast``).
DISTRIBUTION = "shadowcast-netops"
#: Optional dependency (top-level module) -> the extra that installs it.
EXTRAS: dict[str, str] = {
    "nfstream": "pcap",
    "dask": "dask",
    "distributed": "dask",
    "statsforecast": "stats",
    "matplotlib": "plot",
    "torch": "neural",
    "clickhouse_driver": "clickhouse",
    "fastapi": "api",
    "uvicorn": "api",
    "jinja2": "api",
    "python_multipart": "api",
}


def install_hint(module: str) -> str:
    """``pip install 'shadowcast-netops[EXTRA]'`` for an optional ``module``."""
    extra = EXTRAS.get(module.split(".")[0])
    if extra is None:
        return f"reinstall {DISTRIBUTION} (module {module!r} is missing)"
    return f"pip install '{DISTRIBUTION}[{extra}]'"


def need(module: str, what: str) -> ModuleType:
    """``module`` imported, or MissingExtraError saying which extra provides it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        name = exc.name or module
        raise MissingExtraError(f"{what} needs {name!r}: {install_hint(name)}") from None
