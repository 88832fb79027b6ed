"""Labelled flows -> training tables; nDPI expected results; splits that keep groups whole.

Two sources of labelled flows: the nDPI regression captures (label = category of nDPI's
application, group = capture file) and the lab traffic generator's flows
(:mod:`shadowcast.lab.trafficgen`; label = the generator that made the flow, group = the
session), shipped as ``profile/data/lab_flows.parquet``. Held-out evaluation never splits
a group: :func:`group_folds` assigns whole groups to folds.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shadowcast.errors import DataError
from shadowcast.profile.appmap import AppMap
from shadowcast.profile.base import CategoryModel
from shadowcast.profile.pcap import PCAP_SCHEMA, flows_from_pcap

log = logging.getLogger(__name__)

PCAP_SUFFIXES = (".pcap", ".pcapng", ".cap")
_OUT_FLOW = re.compile(
    r"^\s*\d+\s+(?P<l4>\S+)\s+(?P<a>\S+?):(?P<ap>\d+)\s+<?->\s+(?P<b>\S+?):(?P<bp>\d+)\s+"
    r"(?:\[VLAN: \d+\]\s*)?\[proto: [\d.]+/(?P<proto>[^\]]+)\]"
)


LAB_FLOWS = "data/lab_flows.parquet"


@dataclass(frozen=True, slots=True)
class Labelled:
    """Flows with a category each and their group (capture file or lab session)."""

    flows: pa.Table
    labels: npt.NDArray[np.object_]
    files: npt.NDArray[np.object_]  # the group: capture file name or lab session name
    sources: npt.NDArray[np.object_] | None = None  # "ndpi" | "lab" per row
    # "flow": a whole flow; "chunk": a record of a flow cut by an exporter's active timeout
    views: npt.NDArray[np.object_] | None = None

    def source_mask(self, source: str) -> npt.NDArray[np.bool_]:
        if self.sources is None:
            return np.full(len(self.labels), source == "ndpi")
        return np.asarray(self.sources == source, dtype=bool)

    def view_mask(self, view: str) -> npt.NDArray[np.bool_]:
        if self.views is None:
            return np.full(len(self.labels), view == "flow")
        return np.asarray(self.views == view, dtype=bool)


def list_pcaps(directory: Path) -> list[Path]:
    d = Path(directory)
    if not d.is_dir():
        raise DataError(f"{d}: not a directory of captures")
    return sorted(p for p in d.iterdir() if p.suffix in PCAP_SUFFIXES)


def load_labelled(
    directory: Path,
    appmap: AppMap,
    progress: Callable[[str], None] | None = None,
) -> Labelled:
    """Every capture in ``directory`` through nfstream; label = category of nDPI's app."""
    tables, files = [], []
    for p in list_pcaps(directory):
        if progress is not None:
            progress(p.name)
        try:
            t = flows_from_pcap(p)
        except DataError as exc:
            log.warning("skipping capture", extra={"file": str(p), "error": str(exc)})
            continue
        tables.append(t)
        files.extend([p.name] * t.num_rows)
    flows = pa.concat_tables(tables) if tables else PCAP_SCHEMA.empty_table()
    labels = np.asarray(appmap.resolve(flows.column("app")).category.to_numpy(False), dtype=object)
    return Labelled(flows, labels, np.asarray(files, dtype=object), _const("ndpi", len(labels)))


def _const(value: str, n: int) -> npt.NDArray[np.object_]:
    return np.full(n, value, dtype=object)


def load_lab(path: Path | None = None) -> Labelled:
    """Lab generator flows (``None``: the shipped set): label and session per flow."""
    import pyarrow.parquet

    pq: Any = pyarrow.parquet
    try:
        if path is None:
            where = f"shadowcast/profile/{LAB_FLOWS}"
            with resources.as_file(resources.files("shadowcast.profile") / LAB_FLOWS) as f:
                t = pq.read_table(f)
        else:
            where = str(path)
            t = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{path or LAB_FLOWS}: cannot read lab flows: {exc}") from exc
    missing = [c for c in ("label", "session", *PCAP_SCHEMA.names) if c not in t.column_names]
    if missing:
        raise DataError(f"{where}: not a lab flow file, missing columns {missing}")
    labels = np.asarray(t.column("label").to_pylist(), dtype=object)
    groups = np.asarray(t.column("session").to_pylist(), dtype=object)
    flows = t.select(PCAP_SCHEMA.names).cast(PCAP_SCHEMA)
    views = (
        np.asarray(t.column("view").to_pylist(), dtype=object)
        if "view" in t.column_names
        else _const("flow", t.num_rows)
    )
    return Labelled(flows, labels, groups, _const("lab", t.num_rows), views)


def combine(*parts: Labelled) -> Labelled:
    """One labelled set from several (group names must not collide across parts)."""
    seen: set[str] = set()
    for p in parts:
        names = set(p.files.tolist())
        if names & seen:
            raise DataError(f"group names in more than one part: {sorted(names & seen)[:5]}")
        seen |= names
    src = [p.sources if p.sources is not None else _const("ndpi", len(p.labels)) for p in parts]
    views = [p.views if p.views is not None else _const("flow", len(p.labels)) for p in parts]
    return Labelled(
        pa.concat_tables([p.flows.select(PCAP_SCHEMA.names).cast(PCAP_SCHEMA) for p in parts]),
        np.concatenate([p.labels for p in parts]),
        np.concatenate([p.files for p in parts]),
        np.concatenate(src),
        np.concatenate(views),
    )


def file_split(
    files: npt.NDArray[np.object_], holdout: float = 0.3, seed: int = 7
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Train / test row masks that never put flows of one capture on both sides."""
    names = np.array(sorted(set(files.tolist())), dtype=object)
    rng = np.random.default_rng(seed)
    test_names = set(rng.choice(names, size=max(1, round(holdout * len(names))), replace=False))
    test = np.array([f in test_names for f in files], dtype=bool)
    return ~test, test


def group_folds(
    groups: npt.NDArray[np.object_], labels: npt.NDArray[np.object_], k: int = 5, seed: int = 7
) -> npt.NDArray[np.int64]:
    """Fold (``0..k-1``) of every row, all rows of a group in one fold. Groups are dealt
    by majority label, largest first, each to the fold with the fewest flows of that label
    so far (ties: fewest flows in all, then a seeded order), so every fold holds every class
    that has at least ``k`` groups."""
    names, inv = np.unique(groups.astype(str), return_inverse=True)
    if len(names) < k:
        raise DataError(f"{len(names)} groups cannot fill {k} folds")
    size = np.bincount(inv, minlength=len(names))
    major = np.empty(len(names), dtype=object)
    order = np.argsort(inv, kind="stable")
    for gi, rows in enumerate(np.split(order, np.cumsum(size)[:-1])):
        vals, counts = np.unique(labels[rows].astype(str), return_counts=True)
        major[gi] = vals[counts.argmax()]
    tie = np.random.default_rng(seed).permutation(len(names))
    fold_of = np.empty(len(names), dtype=np.int64)
    per_label: dict[str, npt.NDArray[np.int64]] = {}
    total = np.zeros(k, dtype=np.int64)
    for gi in sorted(range(len(names)), key=lambda i: (str(major[i]), -size[i], tie[i])):
        load = per_label.setdefault(str(major[gi]), np.zeros(k, dtype=np.int64))
        f = min(range(k), key=lambda j: (load[j], total[j], j))
        fold_of[gi] = f
        load[f] += size[gi]
        total[f] += size[gi]
    return fold_of[inv]


def class_report(
    y_true: npt.NDArray[np.object_], y_pred: npt.NDArray[np.object_]
) -> dict[str, dict[str, float]]:
    """Precision, recall, F1 and support of every class present in ``y_true``."""
    out = {}
    for c in sorted(set(y_true.tolist())):
        tp = float(np.sum((y_pred == c) & (y_true == c)))
        npred, ntrue = float(np.sum(y_pred == c)), float(np.sum(y_true == c))
        out[c] = {
            "precision": tp / npred if npred else 0.0,
            "recall": tp / ntrue if ntrue else 0.0,
            "f1": 2 * tp / (npred + ntrue) if npred + ntrue else 0.0,
            "support": ntrue,
        }
    return out


@dataclass(frozen=True, slots=True)
class CrossValidation:
    """Out-of-fold predictions: each flow predicted by the model that never saw its group."""

    labels: npt.NDArray[np.object_]
    sources: npt.NDArray[np.object_]
    folds: npt.NDArray[np.int64]
    full: npt.NDArray[np.object_]  # with packet-level features
    plain: npt.NDArray[np.object_]  # the two-way record without them
    one_way_rows: npt.NDArray[np.int64]  # flow of each one-way record
    one_way: npt.NDArray[np.object_]  # each direction alone as a plain record


def cross_validate(
    lab: Labelled,
    train: Callable[[pa.Table, npt.NDArray[np.object_], npt.NDArray[np.object_]], CategoryModel],
    k: int = 5,
    seed: int = 7,
    fit_mask: npt.NDArray[np.bool_] | None = None,
) -> CrossValidation:
    """Leave-groups-out: for each fold, ``train(flows, labels, groups)`` on the other folds
    (only rows in ``fit_mask``, when given), predict the fold in every view."""
    from shadowcast.profile.classifier import CLASSES, one_way

    scored = np.isin(lab.labels, CLASSES)
    folds = group_folds(lab.files, lab.labels, k, seed)
    full = np.full(len(lab.labels), "", dtype=object)
    plain = full.copy()
    ow, ow_rows = one_way(lab.flows)
    ow_pred = np.full(len(ow_rows), "", dtype=object)
    fit = np.ones(len(lab.labels), bool) if fit_mask is None else fit_mask
    for f in range(k):
        held = folds == f
        tr = ~held & fit & scored
        model = train(lab.flows.filter(pa.array(tr)), lab.labels[tr], lab.files[tr])
        test = lab.flows.filter(pa.array(held))
        full[held] = model.predict(test).category
        plain[held] = model.predict(test, hide_rich=True).category
        ow_held = held[ow_rows]
        if ow_held.any():
            ow_pred[ow_held] = model.predict(ow.filter(pa.array(ow_held)), hide_rich=True).category
    src = lab.sources if lab.sources is not None else np.full(len(full), "ndpi", dtype=object)
    return CrossValidation(lab.labels, src, folds, full, plain, ow_rows, ow_pred)


def expected_flows(out_file: Path) -> list[tuple[str, str, int, str, int, str]]:
    """nDPI's expected flows in a ``.out`` result: (l4, addr_a, port_a, addr_b, port_b,
    application as ``master.app``)."""
    rows = []
    for line in Path(out_file).read_text(errors="replace").splitlines():
        m = _OUT_FLOW.match(line)
        if m is None:
            continue
        a, b = m["a"].strip("[]"), m["b"].strip("[]")
        rows.append((m["l4"], a, int(m["ap"]), b, int(m["bp"]), m["proto"]))
    return rows


def macro_f1(y_true: npt.NDArray[np.object_], y_pred: npt.NDArray[np.object_]) -> float:
    """Macro-averaged F1 over the classes present in ``y_true``."""
    scores = []
    for c in sorted(set(y_true.tolist())):
        tp = float(np.sum((y_pred == c) & (y_true == c)))
        fp = float(np.sum((y_pred == c) & (y_true != c)))
        fn = float(np.sum((y_pred != c) & (y_true == c)))
        scores.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else 0.0


@dataclass(frozen=True, slots=True)
class Accuracy:
    matched: int  # expected flows found in our flows
    expected: int  # flows in the .out files
    correct: int  # matched flows whose category equals the expected one
    per_file: dict[str, tuple[int, int]]  # file -> (correct, expected)
    unclassified_bytes: int = 0  # bytes of our flows left in category "unknown"
    total_bytes: int = 0

    @property
    def accuracy(self) -> float:
        """Correct over ALL expected flows (an unmatched flow counts as wrong)."""
        return self.correct / self.expected if self.expected else 0.0


def _canon(addr: str) -> str:
    import ipaddress

    try:
        return str(ipaddress.ip_address(addr))
    except ValueError:
        return addr


def pipeline_accuracy(
    directory: Path, result_dir: Path, identify: Callable[[pa.Table], pa.Table], appmap: AppMap
) -> Accuracy:
    """Category of every flow nDPI's expected results list, ours vs theirs (both through
    the application map); flows are matched by 5-tuple in either direction."""
    from shadowcast.profile.prefixes import split_addresses, to_text

    matched = expected = correct = unknown_bytes = total_bytes = 0
    per_file: dict[str, tuple[int, int]] = {}
    l4 = {"TCP": 6, "UDP": 17, "ICMP": 1, "ICMPV6": 58}
    for p in list_pcaps(directory):
        out = Path(result_dir) / (p.name + ".out")
        if not out.exists():
            continue
        exp = expected_flows(out)
        t = identify(flows_from_pcap(p))
        shi, slo = split_addresses(t.column("src_addr"))
        dhi, dlo = split_addresses(t.column("dst_addr"))
        sp = t.column("src_port").to_pylist()
        dp = t.column("dst_port").to_pylist()
        pr = t.column("proto").to_pylist()
        cats = t.column("category").to_pylist()
        nbytes = t.column("bytes").to_pylist()
        total_bytes += sum(nbytes)
        unknown_bytes += sum(b for b, c in zip(nbytes, cats, strict=True) if c == "unknown")
        ours: dict[tuple[object, ...], str] = {}
        for i in range(t.num_rows):  # one capture's flows (hundreds), not a hot path
            a = to_text(int(shi[i]), int(slo[i]))
            b = to_text(int(dhi[i]), int(dlo[i]))
            ours.setdefault((pr[i], a, sp[i], b, dp[i]), cats[i])
            ours.setdefault((pr[i], b, dp[i], a, sp[i]), cats[i])
        ok = 0
        for proto, a, ap, b, bp, name in exp:
            want = appmap.category_of(name)[1] or "unknown"
            got = ours.get((l4.get(proto.upper(), -1), _canon(a), ap, _canon(b), bp))
            if got is None and proto.upper() not in l4:  # other IP protocols: no ports
                got = next(
                    (c for k, c in ours.items() if k[1] == _canon(a) and k[3] == _canon(b)), None
                )
            expected += 1
            if got is not None:
                matched += 1
                ok += int(got == want)
        correct += ok
        per_file[p.name] = (ok, len(exp))
    return Accuracy(matched, expected, correct, per_file, unknown_bytes, total_bytes)
