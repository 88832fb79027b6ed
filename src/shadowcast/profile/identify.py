"""Layered identification of flows, column-wise over an Arrow batch.

Layers, first decision wins (``rules_override`` puts the operator rules first):

1. ``exporter`` - the application name the exporter sent (IPFIX IE 95/96, NBAR2, nProbe
   L7), through the application map;
2. ``ndpi`` - nDPI's name where packets were seen (flows with ``app_source="ndpi"``);
3. ``rules`` - the operator's CIDR / ASN / port / name rules;
4. ``model`` - the behavioural classifier (category only; below its confidence floor the
   category is ``unknown``).

Every flow comes out with ``category`` in the taxonomy, ``app_source`` naming the layer
(``""`` when none decided, then the category is ``unknown``) and ``app_confidence``.
No flow is ever dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute

from shadowcast.errors import DataError
from shadowcast.profile.appmap import AppMap
from shadowcast.profile.base import CategoryModel
from shadowcast.profile.classifier import BehaviourModel
from shadowcast.profile.config import ProfileConfig
from shadowcast.profile.rules import RuleSet
from shadowcast.profile.where import Locator, _dict
from shadowcast.records import FLOW_SCHEMA

log = logging.getLogger(__name__)
pc: Any = pyarrow.compute

Obj = npt.NDArray[np.object_]
PLACE_FIELDS: tuple[str, ...] = ("src_region", "dst_region", "ingress", "egress")
DICT_STRING = pa.dictionary(pa.int32(), pa.string())
# columns identify fills come back dictionary-encoded (cheap to group by); cast to
# FLOW_SCHEMA with to_flow_schema() before writing flows to the store
DICT_FIELDS: tuple[str, ...] = ("app", "category", "app_source", "src_site", "dst_site")
PROFILED_SCHEMA = pa.schema(
    [pa.field(f.name, DICT_STRING) if f.name in DICT_FIELDS else f for f in FLOW_SCHEMA]
    + [pa.field(n, DICT_STRING) for n in PLACE_FIELDS]
)


def to_flow_schema(profiled: pa.Table) -> pa.Table:
    """The FLOW_SCHEMA columns of a profiled table, as plain strings."""
    return profiled.select(FLOW_SCHEMA.names).cast(FLOW_SCHEMA)


LAYERS: tuple[str, ...] = ("exporter", "ndpi", "rules", "model", "")


@dataclass
class IdentifyStats:
    flows: int = 0
    by_layer: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LAYERS, 0))


class Profiler:
    """Identification (+ placement) of flow batches; construct once, call per batch."""

    def __init__(
        self,
        config: ProfileConfig | None = None,
        *,
        appmap: AppMap | None = None,
        rules: RuleSet | None = None,
        model: CategoryModel | None = None,
        locator: Locator | None = None,
    ) -> None:
        self.config = config or ProfileConfig()
        cfg = self.config
        taxonomy = set(cfg.taxonomy)
        self.appmap = appmap or AppMap.load(cfg.apps_file, taxonomy)
        if rules is None and cfg.rules_file is not None:
            rules = RuleSet.load(cfg.rules_file, taxonomy)
        self.rules = rules or RuleSet([])
        if model is None and cfg.use_model:
            model = BehaviourModel.load(cfg.model_file)
        self.model: CategoryModel | None = model
        self.locator = locator or Locator.from_files(cfg.sites_file, cfg.geoip_db)
        self.taxonomy = taxonomy
        self.stats = IdentifyStats()
        self._rule_cats = [self._rule_category(i) for i in range(len(self.rules.rules))]

    def _rule_category(self, i: int) -> str:
        r = self.rules.rules[i]
        if r.category is not None:
            return r.category
        cat = self.appmap.category_of(r.app)[1]
        return cat if cat in self.taxonomy and cat != "unknown" else "other"

    def identify(self, table: pa.Table) -> pa.Table:
        """``table`` (FLOW_SCHEMA columns, extra columns allowed) -> PROFILED_SCHEMA."""
        missing = [f.name for f in FLOW_SCHEMA if f.name not in table.column_names]
        required = {"time_start", "time_end", "src_addr", "dst_addr", "bytes", "packets"}
        if required & set(missing):
            raise DataError(f"flow batch lacks column(s) {sorted(required & set(missing))}")
        n = table.num_rows
        cats = sorted(self.taxonomy)
        cat_code = {c: i for i, c in enumerate(cats)}
        apps: dict[str, int] = {"": 0}
        # inputs as dictionary codes: one Python step per distinct value, none per flow
        app_idx, app_dict = _encode(table, "app")
        src_idx, src_dict = _encode(table, "app_source")
        conf_in = (
            np.asarray(pc.fill_null(table.column("app_confidence"), 0.0).to_numpy(), np.float32)
            if "app_confidence" in table.column_names
            else np.zeros(n, np.float32)
        )
        pairs = [self.appmap.category_of(name) for name in app_dict]
        u_app = np.array([apps.setdefault(name, len(apps)) for name in app_dict] + [0])
        u_canon = np.array([apps.setdefault(p[0], len(apps)) for p in pairs] + [0])
        u_cat = np.array(
            [cat_code.get(p[1], -1) if p[1] not in ("", "unknown") else -1 for p in pairs] + [-1]
        )
        u_ndpi = np.array([s == "ndpi" for s in src_dict] + [False])
        app = u_app[app_idx]
        cat = np.full(n, -1, dtype=np.int64)
        source = np.full(n, LAYERS.index(""), dtype=np.int64)
        conf = np.zeros(n, dtype=np.float32)

        def apply_rules() -> None:
            match = self.rules.match(table, cat < 0)
            hit = match.rule >= 0
            if hit.any():
                r_app = np.array([apps.setdefault(r.app, len(apps)) for r in self.rules.rules])
                r_cat = np.array([cat_code.get(c, -1) for c in self._rule_cats])
                r_conf = np.array([r.confidence for r in self.rules.rules], dtype=np.float32)
                app[hit] = r_app[match.rule[hit]]
                cat[hit] = r_cat[match.rule[hit]]
                source[hit] = LAYERS.index("rules")
                conf[hit] = r_conf[match.rule[hit]]

        if self.config.rules_override:
            apply_rules()
        # layers 1 and 2: names from the exporter or from nDPI
        named = (u_cat[app_idx] >= 0) & (cat < 0)
        app[named] = u_canon[app_idx[named]]
        cat[named] = u_cat[app_idx[named]]
        source[named] = np.where(
            u_ndpi[src_idx[named]], LAYERS.index("ndpi"), LAYERS.index("exporter")
        )
        conf[named] = np.where(conf_in[named] > 0, conf_in[named], 1.0)
        # an app name the map does not know stays; its category is left to later layers
        if not self.config.rules_override:
            apply_rules()
        todo = cat < 0
        unknown = cat_code.get("unknown", -1)
        if self.model is not None and todo.any():
            pred = self.model.predict(table.filter(pa.array(todo)))
            ok = pred.confidence >= self.config.model_min_confidence
            p_names, p_inv = np.unique(pred.category.astype(str), return_inverse=True)
            p_codes = np.array([cat_code.get(str(c), -1) for c in p_names], dtype=np.int64)
            codes = p_codes[p_inv.reshape(-1)]
            cat[todo] = np.where(ok & (codes >= 0), codes, unknown)
            source[todo] = LAYERS.index("model")
            conf[todo] = pred.confidence
        cat[cat < 0] = unknown
        self._count(source)

        place = self.locator.locate(table)
        cols: dict[str, pa.Array | pa.ChunkedArray] = {}
        for f in FLOW_SCHEMA:
            if f.name in table.column_names:
                cols[f.name] = table.column(f.name).cast(f.type)
            else:
                cols[f.name] = pa.nulls(n, f.type)
        cols["app"] = _dict(app, list(apps))
        cols["category"] = _dict(cat, cats)
        cols["app_source"] = _dict(source, list(LAYERS))
        cols["app_confidence"] = pa.array(conf, pa.float32())
        cols["src_site"] = place.src_site
        cols["dst_site"] = place.dst_site
        cols["src_region"] = place.src_region
        cols["dst_region"] = place.dst_region
        cols["ingress"] = place.ingress
        cols["egress"] = place.egress
        return pa.table([cols[f.name] for f in PROFILED_SCHEMA], schema=PROFILED_SCHEMA)

    def _count(self, source: npt.NDArray[np.int64]) -> None:
        self.stats.flows += len(source)
        counts = np.bincount(source, minlength=len(LAYERS))
        for name, c in zip(LAYERS, counts.tolist(), strict=True):
            self.stats.by_layer[name] = self.stats.by_layer.get(name, 0) + int(c)


def _encode(table: pa.Table, name: str) -> tuple[npt.NDArray[np.int64], list[str]]:
    """Dictionary codes of a string column (missing column or null -> "")."""
    if name not in table.column_names:
        return np.zeros(table.num_rows, dtype=np.int64), [""]
    col = pc.fill_null(table.column(name).combine_chunks().cast(pa.string()), "")
    enc = pc.dictionary_encode(col)
    idx = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    return idx, [str(x) for x in enc.dictionary.to_pylist()]

    def _count(self, source: Obj) -> None:
        self.stats.flows += len(source)
        names, counts = np.unique(source.astype(str), return_counts=True)
        for name, c in zip(names.tolist(), counts.tolist(), strict=True):
            self.stats.by_layer[name] = self.stats.by_layer.get(name, 0) + int(c)
