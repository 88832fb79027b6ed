"""Where flows come from and go to: sites, regions and ingress/egress edges.

A sites file looks like::

    sites:
      ams: {region: eu-west, prefixes: [10.1.0.0/16, "2001:db8:1::/48"]}
      nyc: {region: us-east, prefixes: [10.2.0.0/16]}
    exporters:                      # exporter as written in flow records
      192.0.2.1:
        site: ams                   # the router's site (its default edge name)
        interfaces: {10: ams-edge1:xe-0/0/1, 11: ams-edge1:xe-0/0/2}
    geo_regions: {NL: eu-west, US: us-east}   # GeoIP country -> region (optional)

Fallbacks, never a dropped flow:

- an address in no site prefix is looked up in the GeoIP database (MaxMind mmdb): site
  ``external``, region = ``geo_regions[country]`` or the ISO country code; without a
  database (not configured, or the file is missing: logged once) or without an answer it
  is site ``unknown``, region ``unknown``. A database that is not an mmdb, or is corrupt
  (it is walked once in a child process before use: a corrupt one can crash the C reader),
  is a ConfigError; a lookup that fails anyway is counted in ``stats.geoip_errors``;
- ingress edge = ``interfaces[in_if]`` of the flow's exporter, else the exporter's site;
  an exporter not in the file gives ``exporter:<name>`` (counted in ``stats``);
- egress edge = the destination's site when it is one of ours, else ``interfaces[out_if]``
  of the exporter, else ``unknown``.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from shadowcast.errors import ConfigError
from shadowcast.parsing import load_yaml, one_line, read_input
from shadowcast.profile.prefixes import U64, PrefixTable, split_addresses, to_text

log = logging.getLogger(__name__)
pc: Any = pyarrow.compute

Obj = npt.NDArray[np.object_]
UNKNOWN = "unknown"
EXTERNAL = "external"
#: Longest a GeoIP database may take to be checked (walked once in a child process).
WALK_TIMEOUT_S = 300


class SiteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    region: str = UNKNOWN
    prefixes: list[str] = Field(default_factory=list)


class ExporterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site: str
    interfaces: dict[int, str] = Field(default_factory=dict)


class SitesFile(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sites: dict[str, SiteSpec] = Field(default_factory=dict)
    exporters: dict[str, ExporterSpec] = Field(default_factory=dict)
    geo_regions: dict[str, str] = Field(default_factory=dict)

    @field_validator("exporters", mode="before")
    @classmethod
    def _str_keys(cls, v: Any) -> Any:
        return {str(k): x for k, x in v.items()} if isinstance(v, dict) else v


@dataclass
class WhereStats:
    unknown_exporters: dict[str, int] = field(default_factory=dict)
    geoip_missing: bool = False
    geoip_lookups: int = 0
    geoip_errors: int = 0  # lookups that failed on a corrupt database (answered "unknown")


@dataclass(frozen=True, slots=True)
class Placement:
    """Per-flow location columns (aligned with the input table)."""

    src_site: pa.Array
    src_region: pa.Array
    dst_site: pa.Array
    dst_region: pa.Array
    ingress: pa.Array
    egress: pa.Array


class Locator:
    """Maps addresses to site/region and (exporter, interface) to edges, column-wise."""

    def __init__(self, spec: SitesFile | None = None, geoip_db: Path | None = None) -> None:
        self.spec = spec or SitesFile()
        self.stats = WhereStats()
        self.site_names = sorted(self.spec.sites)
        self.regions = [self.spec.sites[s].region for s in self.site_names]
        self.prefixes = PrefixTable(
            [(p, i) for i, s in enumerate(self.site_names) for p in self.spec.sites[s].prefixes]
        )
        self._geo: Any = None
        self._geo_cache: dict[tuple[int, int], str] = {}
        if geoip_db is not None:
            self._geo = _open_geoip(Path(geoip_db), self.stats)

    @classmethod
    def from_files(cls, sites_file: Path | None, geoip_db: Path | None) -> Locator:
        if sites_file is None:
            return cls(None, geoip_db)
        data = read_input(sites_file, ConfigError, "sites file")
        doc = load_yaml(data, sites_file, ConfigError) or {}
        try:
            spec = SitesFile.model_validate(doc)
            PrefixTable([(p, 0) for s in spec.sites.values() for p in s.prefixes])
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = one_line(".".join(str(p) for p in err["loc"]), 120)
            raise ConfigError(f"{sites_file}: {loc}: {err['msg']}") from exc
        except ValueError as exc:
            raise ConfigError(f"{sites_file}: sites.*.prefixes: {exc}") from exc
        for name, e in spec.exporters.items():
            if e.site not in spec.sites:
                raise ConfigError(f"{sites_file}: exporters.{name}.site: no site {e.site!r}")
        return cls(spec, geoip_db)

    def close(self) -> None:
        if self._geo is not None:
            self._geo.close()

    def _addresses(self, col: pa.ChunkedArray | pa.Array) -> tuple[pa.Array, pa.Array]:
        hi, lo = split_addresses(col)
        idx = self.prefixes.lookup(hi, lo)
        ns = len(self.site_names)
        site = np.where(idx < 0, ns, idx)  # ns -> UNKNOWN
        region = site.copy()  # region codes: site regions, then UNKNOWN, then geo regions
        site_names = [*self.site_names, UNKNOWN, EXTERNAL]
        region_names = [*self.regions, UNKNOWN]
        miss = np.flatnonzero(idx < 0)
        if self._geo is not None and len(miss):
            geo_code, geo_names = self._geo_regions(hi[miss], lo[miss])
            found = geo_code >= 0
            site[miss[found]] = ns + 1
            region[miss[found]] = len(region_names) + geo_code[found]
            region_names.extend(geo_names)
        return _dict(site, site_names), _dict(region, region_names)

    def _geo_regions(self, hi: U64, lo: U64) -> tuple[npt.NDArray[np.int64], list[str]]:
        """Region code per address (-1: no answer) and the region names."""
        pairs = np.empty(len(hi), dtype=[("h", np.uint64), ("l", np.uint64)])
        pairs["h"], pairs["l"] = hi, lo
        uniq, inv = np.unique(pairs, return_inverse=True)
        names: dict[str, int] = {}
        codes = np.empty(len(uniq), dtype=np.int64)
        for i, (h, lw) in enumerate(uniq.tolist()):
            key = (int(h), int(lw))
            hit = self._geo_cache.get(key)
            if hit is None:
                hit = self._geo_lookup(to_text(h, lw))
                if len(self._geo_cache) > 1_000_000:
                    self._geo_cache.clear()
                self._geo_cache[key] = hit
            codes[i] = names.setdefault(hit, len(names)) if hit else -1
        return codes[inv.reshape(-1)], list(names)

    def _geo_lookup(self, address: str) -> str:
        self.stats.geoip_lookups += 1
        try:
            with warnings.catch_warnings():
                # maxminddb's C extension warns about its own API use on some records
                warnings.simplefilter("ignore", DeprecationWarning)
                rec = self._geo.get(address)
        except ValueError:
            return ""
        except RuntimeError as exc:  # maxminddb.InvalidDatabaseError: a corrupt data section
            if not self.stats.geoip_errors:
                log.warning("geoip database is corrupt, lookups fail", extra={"error": str(exc)})
            self.stats.geoip_errors += 1
            return ""
        if not isinstance(rec, dict):
            return ""
        code = ""
        for key in ("country", "registered_country", "continent"):
            part = rec.get(key)
            if isinstance(part, dict):
                code = str(part.get("iso_code") or part.get("code") or "")
            if code:
                break
        return self.spec.geo_regions.get(code, code)

    def locate(self, table: pa.Table) -> Placement:
        src_site, src_region = self._addresses(table.column("src_addr"))
        dst_site, dst_region = self._addresses(table.column("dst_addr"))
        ingress, egress = self._edges(table, dst_site)
        return Placement(src_site, src_region, dst_site, dst_region, ingress, egress)

    def _edges(self, table: pa.Table, dst_site: pa.Array) -> tuple[pa.Array, pa.Array]:
        n = table.num_rows
        exp = pc.dictionary_encode(pc.fill_null(table.column("exporter").combine_chunks(), ""))
        codes = np.asarray(exp.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
        in_if = np.asarray(pc.fill_null(table.column("in_if"), 0).to_numpy(), dtype=np.int64)
        out_if = np.asarray(pc.fill_null(table.column("out_if"), 0).to_numpy(), dtype=np.int64)
        edges: dict[str, int] = {UNKNOWN: 0}
        ingress = np.zeros(n, dtype=np.int64)
        egress = np.zeros(n, dtype=np.int64)
        for code, name in enumerate(exp.dictionary.to_pylist()):
            rows = np.flatnonzero(codes == code)
            spec = self.spec.exporters.get(str(name))
            if spec is None:
                self.stats.unknown_exporters[str(name)] = self.stats.unknown_exporters.get(
                    str(name), 0
                ) + len(rows)
                ingress[rows] = edges.setdefault(
                    f"exporter:{name}" if name else UNKNOWN, len(edges)
                )
                continue
            ingress[rows] = edges.setdefault(spec.site, len(edges))
            for ifindex, edge in spec.interfaces.items():
                e = edges.setdefault(edge, len(edges))
                ingress[rows[in_if[rows] == ifindex]] = e
                egress[rows[out_if[rows] == ifindex]] = e
        # egress: the destination's site when it is one of ours
        if self.site_names:
            ds = pc.dictionary_encode(dst_site)
            ds_codes = np.asarray(ds.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
            ours = set(self.site_names)
            remap = np.array(
                [
                    edges.setdefault(s, len(edges)) if s in ours else -1
                    for s in ds.dictionary.to_pylist()
                ]
                + [-1],
                dtype=np.int64,
            )
            site_edge = remap[ds_codes]
            egress = np.where(site_edge >= 0, site_edge, egress)
        names = list(edges)
        return _dict(ingress, names), _dict(egress, names)


def _dict(codes: npt.NDArray[np.int64], names: list[str]) -> pa.Array:
    """A dictionary<int32, string> column from integer codes into ``names``."""
    arr = pa.DictionaryArray.from_arrays(
        pa.array(codes.astype(np.int32)), pa.array(names, pa.string())
    )
    return arr


def _open_geoip(path: Path, stats: WhereStats) -> Any:
    if not path.exists():
        log.warning("geoip database missing, regions fall back to unknown", extra={"path": path})
        stats.geoip_missing = True
        return None
    try:
        import maxminddb
    except ImportError:
        log.warning("maxminddb not installed, regions fall back to unknown")
        stats.geoip_missing = True
        return None
    try:
        db = maxminddb.open_database(str(path))
    except (OSError, ValueError, maxminddb.InvalidDatabaseError) as exc:
        raise ConfigError(f"{path}: not a MaxMind mmdb database: {one_line(str(exc))}") from exc
    why = _walk_in_child(path)
    if why is not None:
        db.close()
        raise ConfigError(f"{path}: corrupt MaxMind mmdb database: {why}")
    return db


# A corrupt database can crash maxminddb's C extension (a segfault, not an exception: seen
# with maxminddb 3.2.0 and one byte deleted from the data section). So before a database is
# used, a child process walks every network and record of it with the same reader; the
# verdict is kept per (file, size, mtime) for the life of the process.
_WALK = """
import sys, warnings
import maxminddb
warnings.simplefilter("ignore")
with maxminddb.open_database(sys.argv[1]) as db:
    for _ in db:
        pass
"""
_walked: dict[tuple[str, int, int], str | None] = {}


def _walk_in_child(path: Path) -> str | None:
    """Why walking ``path`` failed in a child process, or None when it read cleanly."""
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _walked:
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _WALK, str(path)],
                capture_output=True,
                text=True,
                timeout=WALK_TIMEOUT_S,
                check=False,
            )
        except subprocess.TimeoutExpired:
            _walked[key] = f"reading it took over {WALK_TIMEOUT_S} s"
        else:
            err = proc.stderr.strip().splitlines()
            if proc.returncode < 0:
                _walked[key] = f"it crashes the reader (signal {-proc.returncode})"
            elif proc.returncode:
                _walked[key] = one_line(err[-1] if err else f"exit {proc.returncode}", 200)
            else:
                _walked[key] = None
    return _walked[key]
