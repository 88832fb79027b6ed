"""Operator rules: CIDR / ASN / port / server-name lists -> application (+ category).

A rules file looks like::

    rules:
      - name: backups                  # for logs and errors
        app: site-backup               # application name given to matching flows
        category: bulk                 # optional when ``app`` is in the application map
        cidrs: [10.1.0.0/16, 2001:db8:1::/48]   # source OR destination address in one
        asns: [65001]                  # source OR destination AS
        ports: [873, "8000-8100"]      # source OR destination port
        proto: tcp                     # tcp | udp | icmp | a number
        names: ["*.backup.example.com"]  # SNI / DNS name (column ``server_name`` if present)
        confidence: 0.95

Conditions given in a rule must all hold; the values of one condition are alternatives.
The first rule that matches a flow wins. Flow exports without a ``server_name`` column
never match a rule that has ``names``. Errors name the file and the field.
"""

from __future__ import annotations

import fnmatch
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shadowcast.errors import ConfigError
from shadowcast.parsing import load_yaml, one_line, read_input
from shadowcast.profile.prefixes import PrefixTable, split_addresses

pc: Any = pyarrow.compute

Mask = npt.NDArray[np.bool_]
_PROTOS = {"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132, "gre": 47, "esp": 50}


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""
    app: str = Field(min_length=1)
    category: str | None = None
    cidrs: list[str] = Field(default_factory=list)
    asns: list[int] = Field(default_factory=list)
    ports: list[int | str] = Field(default_factory=list)
    proto: int | str | None = None
    names: list[str] = Field(default_factory=list)
    confidence: float = Field(default=0.95, ge=0.0, le=1.0)

    @field_validator("cidrs")
    @classmethod
    def _cidrs(cls, v: list[str]) -> list[str]:
        for i, c in enumerate(v):
            try:
                ipaddress.ip_network(c, strict=False)
            except ValueError as exc:
                raise ValueError(f"item {i}: {c!r} is not a CIDR prefix") from exc
        return v

    @field_validator("asns")
    @classmethod
    def _asns(cls, v: list[int]) -> list[int]:
        for i, a in enumerate(v):
            if not 0 <= a < 1 << 32:
                raise ValueError(f"item {i}: {a} is not an AS number (0..4294967295)")
        return v

    @field_validator("ports")
    @classmethod
    def _ports(cls, v: list[int | str]) -> list[int | str]:
        for i, p in enumerate(v):
            lo, hi = _port_range(p)
            if not (0 <= lo <= hi <= 65535):
                raise ValueError(f"item {i}: {p!r} is not a port or a range 'a-b' in 0..65535")
        return v

    @field_validator("proto")
    @classmethod
    def _proto(cls, v: int | str | None) -> int | str | None:
        if isinstance(v, str) and v.lower() not in _PROTOS:
            raise ValueError(f"{v!r} is not one of {sorted(_PROTOS)} or a number")
        if isinstance(v, int) and not 0 <= v <= 255:
            raise ValueError(f"{v} is not an IP protocol number")
        return v

    def has_condition(self) -> bool:
        return bool(self.cidrs or self.asns or self.ports or self.names or self.proto is not None)


class RulesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rules: list[Rule] = Field(default_factory=list)


def _port_range(p: int | str) -> tuple[int, int]:
    if isinstance(p, int):
        return p, p
    try:
        if "-" in p:
            a, b = p.split("-", 1)
            return int(a), int(b)
        return int(p), int(p)
    except ValueError:
        return 1, 0  # invalid: lo > hi


@dataclass(frozen=True, slots=True)
class RuleMatch:
    """Index of the first matching rule per flow (-1 = none), and the rules."""

    rule: npt.NDArray[np.int64]
    rules: tuple[Rule, ...]


class RuleSet:
    """Compiled operator rules, evaluated column-wise over an Arrow batch."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = tuple(rules)
        self._tables = [
            PrefixTable([(c, 1) for c in r.cidrs]) if r.cidrs else None for r in self.rules
        ]

    @classmethod
    def load(cls, path: Path, categories: set[str] | None = None) -> RuleSet:
        doc: Any = load_yaml(read_input(path, ConfigError, "rules file"), path, ConfigError)
        if doc is None:
            doc = {}
        try:
            parsed = RulesFile.model_validate(doc)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in err["loc"])
            raise ConfigError(f"{path}: {one_line(loc.lstrip('.'), 120)}: {err['msg']}") from exc
        for i, r in enumerate(parsed.rules):
            if not r.has_condition():
                raise ConfigError(f"{path}: rules[{i}]: a rule needs at least one condition")
            if categories is not None and r.category is not None and r.category not in categories:
                raise ConfigError(
                    f"{path}: rules[{i}].category: {r.category!r} is not in {sorted(categories)}"
                )
        return cls(parsed.rules)

    def match(self, table: pa.Table, todo: Mask | None = None) -> RuleMatch:
        n = table.num_rows
        out = np.full(n, -1, dtype=np.int64)
        left = np.ones(n, dtype=bool) if todo is None else todo.copy()
        if not self.rules or not left.any():
            return RuleMatch(out, self.rules)
        cols = _Columns(table)
        for i, (rule, ptable) in enumerate(zip(self.rules, self._tables, strict=True)):
            m = left.copy()
            if ptable is not None:
                m &= (ptable.lookup(*cols.src) >= 0) | (ptable.lookup(*cols.dst) >= 0)
            if rule.asns:
                asns = np.array(rule.asns, dtype=np.int64)
                m &= np.isin(cols.int("src_as"), asns) | np.isin(cols.int("dst_as"), asns)
            if rule.ports:
                sp, dp = cols.int("src_port"), cols.int("dst_port")
                pm = np.zeros(n, dtype=bool)
                for p in rule.ports:
                    lo, hi = _port_range(p)
                    pm |= ((sp >= lo) & (sp <= hi)) | ((dp >= lo) & (dp <= hi))
                m &= pm
            if rule.proto is not None:
                num = _PROTOS[rule.proto.lower()] if isinstance(rule.proto, str) else rule.proto
                m &= cols.int("proto") == num
            if rule.names:
                m &= cols.names_match(rule.names)
            out[m] = i
            left &= ~m
            if not left.any():
                break
        return RuleMatch(out, self.rules)


class _Columns:
    """Lazily converted columns of one batch."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self._ints: dict[str, npt.NDArray[np.int64]] = {}
        self._src: tuple[Any, Any] | None = None
        self._dst: tuple[Any, Any] | None = None

    @property
    def src(self) -> tuple[Any, Any]:
        if self._src is None:
            self._src = split_addresses(self.table.column("src_addr"))
        return self._src

    @property
    def dst(self) -> tuple[Any, Any]:
        if self._dst is None:
            self._dst = split_addresses(self.table.column("dst_addr"))
        return self._dst

    def int(self, name: str) -> npt.NDArray[np.int64]:
        if name not in self._ints:
            if name in self.table.column_names:
                col = pc.fill_null(self.table.column(name), 0)
                self._ints[name] = np.asarray(col.to_numpy(), dtype=np.int64)
            else:
                self._ints[name] = np.zeros(self.table.num_rows, dtype=np.int64)
        return self._ints[name]

    def names_match(self, patterns: list[str]) -> Mask:
        if "server_name" not in self.table.column_names:
            return np.zeros(self.table.num_rows, dtype=bool)
        col = pc.fill_null(self.table.column("server_name").combine_chunks(), "")
        enc = pc.dictionary_encode(col)
        pats = [p.lower() for p in patterns]
        hits = np.array(
            [
                bool(s) and any(fnmatch.fnmatchcase(str(s).lower(), p) for p in pats)
                for s in enc.dictionary.to_pylist()
            ]
            + [False],
            dtype=bool,
        )
        return np.asarray(hits[enc.indices.to_numpy(zero_copy_only=False)], dtype=bool)
