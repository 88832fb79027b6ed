"""Behaviour series: per-minute bytes, bit rates, flows, transfers and size sketches.

Two kinds of series, one table (:data:`SERIES_SCHEMA`):

- ``kind="app"``: per (app, category, src site, src region, dst site, dst region);
- ``kind="edge"``: per (ingress edge ``src``, egress edge ``dst``).

A flow's bytes are spread over its duration in ``peak_s`` sub-buckets (integer shares that
add up exactly to the flow's bytes), so the per-minute ``bps_peak`` is the largest
sub-bucket rate, not an artefact of when the exporter cut the flow. Sampled flows
(``sampling_rate`` N > 1) arrive from the collector with bytes and packets already scaled up
by N (``FLOW_SCHEMA``'s contract); they carry a variance from the packet-sampling binomial
approximation (relative variance ``(1 - 1/N) / n`` for ``n = packets / N`` sampled packets).
``renormalise=True`` is for inputs that carry raw sampled counts instead (multiplied by N);
``bps_err`` is ``z * sqrt(bytes_var) * 8 / grain``. A flow longer than ``max_spread_s``
(broken or edited timestamps) is spread over its last ``max_spread_s`` only and counted
in ``clamped_flows``: memory stays bounded and its bytes are still all there.
Everything is numpy group-bys.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pyarrow as pa
import pyarrow.compute

from shadowcast.errors import DataError
from shadowcast.profile.sketch import LogSketch, Sketches
from shadowcast.store.schema import BEHAVIOUR_SCHEMA

pc: Any = pyarrow.compute

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
TS = pa.timestamp("ms", tz="UTC")

KEY_COLUMNS: tuple[str, ...] = ("app", "category", "src", "src_region", "dst", "dst_region")
KINDS: dict[str, tuple[str, ...]] = {
    # kind -> flow columns feeding KEY_COLUMNS in order ("" = constant empty)
    "app": ("app", "category", "src_site", "src_region", "dst_site", "dst_region"),
    "edge": ("", "", "ingress", "", "egress", ""),
}
SUM_COLUMNS: tuple[str, ...] = (
    "bytes",
    "packets",
    "bytes_var",
    "flow_minutes",
    "transfers",
    "unclassified_bytes",
)
SERIES_SCHEMA = BEHAVIOUR_SCHEMA  # the store's ``behaviour`` table


def _codes(table: pa.Table, names: tuple[str, ...]) -> tuple[I64, I64]:
    """Group id per row over ``names`` columns, and the first row of every group."""
    n = table.num_rows
    key = np.zeros(n, dtype=np.int64)
    radix = 1
    for name in names:
        if not name:
            continue
        chunked = table.column(name)
        col = (
            chunked.chunk(0)
            if isinstance(chunked, pa.ChunkedArray) and chunked.num_chunks == 1
            else chunked.combine_chunks()
            if not pa.types.is_dictionary(chunked.type)
            else chunked.cast(pa.string()).combine_chunks()
        )
        if pa.types.is_dictionary(col.type) and col.null_count == 0:
            codes = np.asarray(col.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
            size = len(col.dictionary)
        elif pa.types.is_integer(col.type):
            codes, uniq = pd.factorize(np.asarray(col.to_numpy(zero_copy_only=False)))
            size = len(uniq)
        else:
            enc = pc.dictionary_encode(pc.fill_null(col.cast(pa.string()), ""))
            codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
            size = len(enc.dictionary)
        if radix * (size + 1) > 2**40:  # keep the mixed radix small
            key = np.asarray(pd.factorize(key)[0], dtype=np.int64)
            radix = int(key.max()) + 1 if n else 1
        key = key * (size + 1) + codes
        radix *= size + 1
    codes, uniq = _factorize(key, radix)
    first = np.full(len(uniq), n, dtype=np.int64)
    np.minimum.at(first, codes, np.arange(n, dtype=np.int64))
    return np.asarray(codes, dtype=np.int64), first


def _factorize(key: I64, domain: int) -> tuple[I64, I64]:
    """Codes (0..k-1) and the distinct values of non-negative ``key`` < ``domain``;
    a dense remap when the domain is small, a hash table otherwise."""
    if 0 < domain <= max(4 * len(key), 1 << 16):
        seen = np.zeros(domain, dtype=bool)
        seen[key] = True
        uniq = np.flatnonzero(seen)
        remap = np.zeros(domain, dtype=np.int64)
        remap[uniq] = np.arange(len(uniq))
        return remap[key], uniq.astype(np.int64)
    codes, uniq = pd.factorize(key)
    return np.asarray(codes, dtype=np.int64), np.asarray(uniq, dtype=np.int64)


def _share(cum: F64, starts: I64) -> F64:
    """Per-row amounts from per-flow running totals (each flow starts at ``starts``)."""
    out = np.empty_like(cum)
    out[0] = cum[0]
    np.subtract(cum[1:], cum[:-1], out=out[1:])
    out[starts] = cum[starts]
    return out


def _ints(table: pa.Table, name: str) -> I64:
    col = table.column(name)
    if pa.types.is_timestamp(col.type):
        col = col.cast(pa.int64())
    return np.asarray(pc.fill_null(col, 0).to_numpy(), dtype=np.int64)


@dataclass(frozen=True, slots=True)
class _Expanded:
    fid: I64  # flow of every expanded row
    sb: I64  # sub-bucket number (since the epoch)
    alloc: F64  # bytes in the sub-bucket
    palloc: F64  # packets in the sub-bucket
    var: F64  # variance of alloc
    active: npt.NDArray[np.bool_]  # first sub-bucket of the flow in its minute
    starts: I64  # first expanded row of every flow
    size_bucket: I64  # sketch bucket of every flow's estimated bytes (its transfer size)


class SeriesBuilder:
    """Builds 1-minute series from profiled flows and rolls them up."""

    def __init__(
        self,
        peak_s: int = 10,
        renormalise: bool = False,
        error_z: float = 1.96,
        sketch_alpha: float = 0.02,
        max_spread_s: int = 86_400,
    ) -> None:
        if 60 % peak_s:
            raise ValueError("peak_s must divide 60")
        self.peak_s = peak_s
        self.max_spread_ms = max_spread_s * 1000
        self.clamped_flows = 0  # flows longer than max_spread_s (spread over their last part)
        self.renormalise = renormalise
        self.z = error_z
        self.sketch = LogSketch(sketch_alpha)

    def estimated_bytes(self, flows: pa.Table) -> I64:
        """Bytes each flow stands for (scaled by its sampling rate when ``renormalise``)."""
        rate = np.maximum(_ints(flows, "sampling_rate"), 1) if self.renormalise else 1
        return _ints(flows, "bytes") * rate

    def build(self, flows: pa.Table, kinds: tuple[str, ...] = ("app", "edge")) -> pa.Table:
        """1-minute series of every kind in ``kinds`` (a SERIES_SCHEMA table)."""
        for k in kinds:
            missing = [c for c in KINDS[k] if c and c not in flows.column_names]
            if missing:
                raise DataError(f"flows lack {missing} for '{k}' series: run identify first")
        if flows.num_rows == 0:
            return SERIES_SCHEMA.empty_table()
        ex = self._expand(flows)
        parts = [self._build_kind(flows, k, ex) for k in kinds]
        return pa.concat_tables(parts)

    def _expand(self, flows: pa.Table) -> _Expanded:
        """Every flow spread over its ``peak_s`` sub-buckets (integer byte shares)."""
        P = self.peak_s * 1000  # noqa: N806 - sub-bucket length in ms
        ts = _ints(flows, "time_start")
        te = np.maximum(_ints(flows, "time_end"), ts)
        too_long = te - ts > self.max_spread_ms
        if too_long.any():  # broken or edited timestamps: bounded memory, bytes still kept
            self.clamped_flows += int(too_long.sum())
            ts = np.where(too_long, te - self.max_spread_ms, ts)
        rate = np.maximum(_ints(flows, "sampling_rate"), 1)
        if self.renormalise:  # raw sampled counts: scale them up
            raw_pkts = _ints(flows, "packets")
            byt, pkt = _ints(flows, "bytes") * rate, raw_pkts * rate
        else:  # estimated totals (the collector's): the sampled packets were packets / N
            byt, pkt = _ints(flows, "bytes"), _ints(flows, "packets")
            raw_pkts = pkt // rate
        # binomial approximation of packet sampling (0 for unsampled flows)
        relvar = (1.0 - 1.0 / rate) / np.maximum(raw_pkts, 1)
        sb0 = ts // P
        sb1 = np.maximum(sb0, (te - 1) // P)
        k = sb1 - sb0 + 1
        starts = np.cumsum(k) - k
        te_eff = np.maximum(te, ts + 1)  # a zero-length flow is all in its first sub-bucket
        if int(k.max()) == 1:  # no flow crosses a sub-bucket: nothing to spread
            return _Expanded(
                np.arange(len(ts)), sb0, byt.astype(np.float64), pkt.astype(np.float64),
                byt * byt * relvar, np.ones(len(ts), bool), starts, self.sketch.bucket(byt),
            )  # fmt: skip
        fid = np.repeat(np.arange(len(ts)), k)
        within = np.arange(len(fid)) - starts[fid]  # sub-bucket number inside the flow
        sb = sb0[fid] + within
        # fraction of the flow's duration done at the end of every sub-bucket; shares are
        # differences of floor(total * fraction), so they add up exactly to the total
        # (the last fraction is end/end == 1.0 exactly in IEEE arithmetic)
        length = te_eff - ts
        hi = np.minimum((within + 1) * P + (sb0 * P - ts)[fid], length[fid])
        frac = hi / length.astype(np.float64)[fid]
        alloc = _share(np.floor(byt.astype(np.float64)[fid] * frac), starts)
        palloc = _share(np.floor(pkt.astype(np.float64)[fid] * frac), starts)
        var = alloc * alloc * relvar[fid]
        first = np.zeros(len(fid), dtype=bool)
        first[starts] = True
        active = first | (sb % (60 // self.peak_s) == 0)
        return _Expanded(fid, sb, alloc, palloc, var, active, starts, self.sketch.bucket(byt))

    def _build_kind(self, flows: pa.Table, kind: str, ex: _Expanded) -> pa.Table:
        per_min = 60 // self.peak_s
        g, first = _codes(flows, KINDS[kind])
        fid, sb = ex.fid, ex.sb
        # group by (series, sub-bucket), then by (series, minute)
        sbmin = int(sb.min())
        span = int(sb.max()) - sbmin + 1
        codes_sb, uniq_sb = _factorize(g[fid] * span + (sb - sbmin), len(first) * span)
        bytes_sb = np.bincount(codes_sb, weights=ex.alloc, minlength=len(uniq_sb))
        g_sb = uniq_sb // span
        minute_sb = (uniq_sb % span + sbmin) // per_min
        mmin = sbmin // per_min
        mspan = int(minute_sb.max()) - mmin + 1
        codes_m, uniq_m = _factorize(g_sb * mspan + (minute_sb - mmin), len(first) * mspan)
        nm = len(uniq_m)
        row_m = codes_m[codes_sb]  # series row of every expanded row
        out_bytes = np.rint(np.bincount(codes_m, weights=bytes_sb, minlength=nm)).astype(np.int64)
        peak = np.zeros(nm)
        np.maximum.at(peak, codes_m, bytes_sb * 8.0 / self.peak_s)
        out_pkts = np.rint(np.bincount(row_m, weights=ex.palloc, minlength=nm)).astype(np.int64)
        out_var = np.bincount(row_m, weights=ex.var, minlength=nm)
        flow_minutes = np.bincount(row_m, weights=ex.active, minlength=nm).astype(np.int64)
        frow = row_m[ex.starts]  # series row where each flow started
        transfers = np.bincount(frow, minlength=nm).astype(np.int64)
        sk = self.sketch.build_buckets(frow, ex.size_bucket, nm)
        grp = uniq_m // mspan
        minute = uniq_m % mspan + mmin
        return self._assemble(
            flows, kind, first[grp], minute * 60_000, 60,
            {
                "bytes": out_bytes,
                "packets": out_pkts,
                "bytes_var": out_var,
                "flow_minutes": flow_minutes,
                "transfers": transfers,
            },
            peak,
            sk,
        )  # fmt: skip

    def _assemble(
        self,
        src: pa.Table,
        kind: str,
        rows: I64,
        time_ms: I64,
        grain: int,
        sums: dict[str, npt.NDArray[np.int64] | F64],
        peak: F64,
        sk: Sketches,
    ) -> pa.Table:
        n = len(rows)
        idx = pa.array(rows)
        cols: dict[str, pa.Array] = {
            "time": pa.array(time_ms, pa.int64()).cast(TS),
            "grain_s": pa.array(np.full(n, grain, np.int32)),
            "kind": pa.array([kind] * n, pa.string()),
        }
        for out_name, src_name in zip(KEY_COLUMNS, KINDS.get(kind, KEY_COLUMNS), strict=True):
            if src_name and src_name in src.column_names:
                taken = pc.take(src.column(src_name), idx).combine_chunks()
                cols[out_name] = taken.cast(pa.string())
            else:
                cols[out_name] = pa.array([""] * n, pa.string())
        b = np.asarray(sums["bytes"], dtype=np.int64)
        cols["bytes"] = pa.array(b)
        cols["packets"] = pa.array(np.asarray(sums["packets"], np.int64))
        cols["bytes_var"] = pa.array(np.asarray(sums["bytes_var"], np.float64))
        cols["bps_avg"] = pa.array(b * 8.0 / grain)
        cols["bps_peak"] = pa.array(np.maximum(peak, b * 8.0 / grain))
        cols["bps_err"] = pa.array(self.z * np.sqrt(sums["bytes_var"]) * 8.0 / grain)
        fm = np.asarray(sums["flow_minutes"], np.int64)
        cols["flow_minutes"] = pa.array(fm)
        cols["flows_active"] = pa.array(fm / (grain / 60.0))
        cols["transfers"] = pa.array(np.asarray(sums["transfers"], np.int64))
        unknown = np.asarray(pc.equal(cols["category"], "unknown").to_numpy(False), dtype=bool)
        if "unclassified_bytes" in sums:
            cols["unclassified_bytes"] = pa.array(np.asarray(sums["unclassified_bytes"], np.int64))
        else:
            cols["unclassified_bytes"] = pa.array(np.where(unknown, b, 0).astype(np.int64))
        cols["size_idx"], cols["size_cnt"] = sk.to_arrow()
        return pa.table([cols[f.name] for f in SERIES_SCHEMA], schema=SERIES_SCHEMA)

    def rollup(self, series: pa.Table, grain_s: int) -> pa.Table:
        """Re-bucket ``series`` to ``grain_s`` (also merges duplicate rows of one grain).

        Sums add, peaks take the maximum (exact within one build; across separately built
        batches a peak is a lower bound of the true one), sketches merge by adding counts.
        """
        if series.num_rows == 0:
            return SERIES_SCHEMA.empty_table()
        t_ms = _ints(series, "time")
        bucket = t_ms // (grain_s * 1000) * (grain_s * 1000)
        with_bucket = series.append_column("_bucket", pa.array(bucket))
        g, first = _codes(with_bucket, ("kind", *KEY_COLUMNS, "_bucket"))
        n = len(first)
        sums: dict[str, npt.NDArray[np.int64] | F64] = {}
        for c in SUM_COLUMNS:
            w = np.asarray(series.column(c).to_numpy(), dtype=np.float64)
            s = np.bincount(g, weights=w, minlength=n)
            sums[c] = s if c == "bytes_var" else np.rint(s).astype(np.int64)
        peak = np.zeros(n)
        np.maximum.at(peak, g, np.asarray(series.column("bps_peak").to_numpy(), np.float64))
        sk = self.sketch.merge(
            Sketches.from_arrow(series.column("size_idx"), series.column("size_cnt")), g, n
        )
        # sources of key columns are already the series' own columns
        kinds = np.asarray(series.column("kind").to_numpy(), dtype=object)[first]
        out = self._assemble(series, "", first, bucket[first], grain_s, sums, peak, sk)
        return out.set_column(2, "kind", pa.array(kinds.tolist(), pa.string()))
