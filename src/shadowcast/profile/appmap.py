"""Application name -> category: the shipped map plus the operator's additions.

Names are resolved once per distinct name in a batch (dictionary-encoded), never per flow.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute
import yaml

from shadowcast.errors import ConfigError
from shadowcast.parsing import clip, load_yaml, read_input

log = logging.getLogger(__name__)
pc: Any = pyarrow.compute

_STRIP = re.compile(r"[-_ .]")


def norm(name: str) -> str:
    """The lookup key of an application name: lower case without ``-_ .``."""
    return _STRIP.sub("", name.lower())


@dataclass(frozen=True, slots=True)
class Resolved:
    """Per-row results of :meth:`AppMap.resolve` (arrays aligned with the input)."""

    app: pa.Array  # canonical application name ("" when none)
    category: pa.Array  # category, "" when the name is not in the map


class AppMap:
    """Maps application names (nDPI, NBAR2, nProbe) to categories."""

    def __init__(self, categories: Mapping[str, str], master_dominant: set[str]) -> None:
        self.by_key: dict[str, str] = dict(categories)  # norm(name) -> category
        self.master_dominant = {norm(m) for m in master_dominant}
        self._cache: dict[str, tuple[str, str]] = {}

    @classmethod
    def load(cls, extra: Path | None = None, taxonomy: set[str] | None = None) -> AppMap:
        """The shipped map, then ``extra`` (same YAML layout) on top of it."""
        text = resources.files("shadowcast.profile").joinpath("data/apps.yaml").read_text()
        cats, dominant = _parse(yaml.safe_load(text), "shipped apps.yaml", taxonomy)
        if extra is not None:
            data = read_input(extra, ConfigError, "application map")
            doc = load_yaml(data, extra, ConfigError)
            more, more_dom = _parse(doc, str(extra), taxonomy, allow_override=True)
            cats.update(more)
            dominant |= more_dom
        return cls(cats, dominant)

    def category_of(self, name: str) -> tuple[str, str]:
        """``(canonical app, category)`` of one name; category "" when unknown."""
        hit = self._cache.get(name)
        if hit is not None:
            return hit
        res = self._lookup(name)
        if len(self._cache) < 100_000:
            self._cache[name] = res
        return res

    def _lookup(self, name: str) -> tuple[str, str]:
        if not name:
            return "", ""
        whole = self.by_key.get(norm(name))
        if whole == "unknown":
            return "", "unknown"
        parts = [p for p in name.split(".") if p]
        if len(parts) > 1 and norm(parts[0]) in self.master_dominant:
            return parts[0], self.by_key.get(norm(parts[0]), "")
        if whole is not None and len(parts) <= 1:
            return name, whole
        for part in reversed(parts):  # the most specific known part wins
            cat = self.by_key.get(norm(part))
            if cat is not None and cat != "unknown":
                return part, cat
        if whole is not None:
            return name, whole
        if parts and all(self.by_key.get(norm(p)) == "unknown" for p in parts):
            return "", "unknown"
        return name, ""

    def resolve(self, names: pa.Array | pa.ChunkedArray) -> Resolved:
        """Vectorised over a string column: one lookup per distinct name."""
        arr = names.combine_chunks() if isinstance(names, pa.ChunkedArray) else names
        arr = pc.fill_null(arr, "")
        enc = pc.dictionary_encode(arr)
        dictionary = enc.dictionary.to_pylist()
        pairs = [self.category_of(str(n)) for n in dictionary]
        idx = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        apps = np.array([p[0] for p in pairs] or [""], dtype=object)
        cats = np.array([p[1] for p in pairs] or [""], dtype=object)
        return Resolved(
            app=pa.array(apps[idx], type=pa.string()),
            category=pa.array(cats[idx], type=pa.string()),
        )


def _parse(
    doc: Any, where: str, taxonomy: set[str] | None, allow_override: bool = False
) -> tuple[dict[str, str], set[str]]:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: expected a mapping with key 'categories'")
    unknown_keys = set(doc) - {"categories", "master_dominant"}
    if unknown_keys:
        raise ConfigError(f"{where}: unknown key(s) {clip(sorted(map(str, unknown_keys)))}")
    cats = doc.get("categories") or {}
    if not isinstance(cats, dict):
        raise ConfigError(f"{where}: 'categories' must map category -> list of names")
    out: dict[str, str] = {}
    for cat, names in cats.items():
        if taxonomy is not None and cat not in taxonomy:
            raise ConfigError(f"{where}: categories.{cat}: not in the taxonomy {sorted(taxonomy)}")
        if not isinstance(names, list):
            raise ConfigError(f"{where}: categories.{cat}: expected a list of names")
        for n in names:
            key = norm(str(n))
            prev = out.get(key)
            if prev is not None and prev != cat and not allow_override:
                raise ConfigError(f"{where}: categories.{cat}: {n!r} is already in {prev!r}")
            out[key] = str(cat)
    dom = doc.get("master_dominant") or []
    if not isinstance(dom, list):
        raise ConfigError(f"{where}: 'master_dominant' must be a list of names")
    return out, {str(d) for d in dom}
