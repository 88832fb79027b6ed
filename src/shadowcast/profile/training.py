"""Labelled captures -> training tables; nDPI expected results; file-wise splits."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shadowcast.errors import DataError
from shadowcast.profile.appmap import AppMap
from shadowcast.profile.pcap import PCAP_SCHEMA, flows_from_pcap

log = logging.getLogger(__name__)

PCAP_SUFFIXES = (".pcap", ".pcapng", ".cap")
_OUT_FLOW = re.compile(
    r"^\s*\d+\s+(?P<l4>\S+)\s+(?P<a>\S+?):(?P<ap>\d+)\s+<?->\s+(?P<b>\S+?):(?P<bp>\d+)\s+"
    r"(?:\[VLAN: \d+\]\s*)?\[proto: [\d.]+/(?P<proto>[^\]]+)\]"
)


@dataclass(frozen=True, slots=True)
class Labelled:
    """Flows of many captures with their nDPI-derived category and source file."""

    flows: pa.Table
    labels: npt.NDArray[np.object_]
    files: npt.NDArray[np.object_]


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
    return Labelled(flows, labels, np.asarray(files, dtype=object))


def file_split(
    files: npt.NDArray[np.object_], holdout: float = 0.3, seed: int = 7
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
    """Train / test row masks that never put flows of one capture on both sides."""
    names = np.array(sorted(set(files.tolist())), dtype=object)
    rng = np.random.default_rng(seed)
    test_names = set(rng.choice(names, size=max(1, round(holdout * len(names))), replace=False))
    test = np.array([f in test_names for f in files], dtype=bool)
    return ~test, test


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
