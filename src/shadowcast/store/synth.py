"""Synthetic rows for the store's tests and benchmark (seeded, deterministic).

:func:`random_table` fills any table of the schema with random values;
:func:`synthetic_flows` makes flow records with realistic cardinalities (tens of
applications, thousands of addresses, a day of timestamps) in collector-sized batches.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from shadowcast.records import CATEGORIES, FLOW_SCHEMA
from shadowcast.store.schema import TABLES, TIME_COLUMN

T0_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z
DAY_MS = 86_400_000


def random_table(
    table: str, n: int, seed: int = 0, t0_ms: int = T0_MS, span_ms: int = DAY_MS
) -> pa.Table:
    """``n`` random rows of ``table``; time columns uniform over ``[t0_ms, t0_ms + span_ms)``,
    the table's own time column sorted."""
    rng = np.random.default_rng(seed)
    schema = TABLES[table]
    cols: list[pa.Array] = []
    for f in schema:
        t = f.type
        if pa.types.is_timestamp(t):
            v = t0_ms + rng.integers(0, span_ms, n)
            if f.name == TIME_COLUMN[table]:
                v = np.sort(v)
            cols.append(pa.array(v, pa.int64()).cast(t))
        elif pa.types.is_string(t):
            cols.append(pa.array([f"{f.name[:3]}{i}" for i in rng.integers(0, 5, n)], t))
        elif pa.types.is_fixed_size_binary(t):
            raw = rng.integers(0, 256, (n, t.byte_width), dtype=np.uint8)
            cols.append(pa.FixedSizeBinaryArray.from_buffers(t, n, [None, pa.py_buffer(raw)]))
        elif pa.types.is_floating(t):
            cols.append(pa.array(rng.normal(100, 30, n), pa.float64()).cast(t))
        elif pa.types.is_unsigned_integer(t):
            hi = min(int(np.iinfo(t.to_pandas_dtype()).max), 10**9)
            cols.append(pa.array(rng.integers(0, hi, n, dtype=np.uint64)).cast(t))
        elif pa.types.is_integer(t):
            cols.append(pa.array(rng.integers(-(10**6), 10**6, n), pa.int64()).cast(t))
        elif pa.types.is_list(t):
            sizes = rng.integers(0, 4, n)
            vals = rng.integers(0, 1000, int(sizes.sum()))
            offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int32)
            flat = pa.array(vals, pa.int64()).cast(t.value_type)
            cols.append(pa.ListArray.from_arrays(pa.array(offsets), flat).cast(t))
        else:
            raise TypeError(f"no generator for {f.name}: {t}")
    return pa.Table.from_arrays(cols, schema=schema)


def _addresses(rng: np.random.Generator, n: int, prefix: bytes) -> np.ndarray:
    """``n`` distinct-ish IPv4-mapped addresses (16 bytes each) as an [n, 16] uint8 array."""
    out = np.zeros((n, 16), dtype=np.uint8)
    out[:, 10:12] = 0xFF
    out[:, 12:14] = np.frombuffer(prefix, dtype=np.uint8)
    out[:, 14:16] = rng.integers(0, 256, (n, 2), dtype=np.uint8)
    return out


def synthetic_flows(
    rows: int,
    batch_size: int = 100_000,
    *,
    seed: int = 0,
    apps: int = 50,
    sources: int = 5_000,
    destinations: int = 20_000,
    t0_ms: int = T0_MS,
    span_ms: int = DAY_MS,
) -> Iterator[pa.Table]:
    """Flow records in time order, ``batch_size`` rows per table, as a collector emits them.

    Application popularity follows a Zipf law; bytes are log-normal; each batch covers the
    next slice of the day, with timestamps jittered inside it.
    """
    rng = np.random.default_rng(seed)
    src_pool = _addresses(rng, sources, b"\x0a\x00")
    dst_pool = _addresses(rng, destinations, b"\xc0\xa8")
    app_names = np.array([f"app{i:02d}" for i in range(apps)], dtype=object)
    cat_names = np.array(CATEGORIES[:5], dtype=object)
    app_cat = rng.integers(0, len(cat_names), apps)
    popularity = 1.0 / np.arange(1, apps + 1)
    popularity /= popularity.sum()
    exporters = np.array([f"rtr{i}" for i in range(8)], dtype=object)
    sites = np.array([f"pop{i}" for i in range(12)], dtype=object)
    for off in range(0, rows, batch_size):
        n = min(batch_size, rows - off)
        lo = t0_ms + span_ms * off // rows
        hi = t0_ms + span_ms * (off + n) // rows
        start = np.sort(rng.integers(lo, max(hi, lo + 1), n))
        dur = rng.integers(0, 60_000, n)
        app = rng.choice(apps, n, p=popularity)
        packets = rng.integers(1, 2_000, n).astype(np.uint64)
        nbytes = (rng.lognormal(9.0, 1.5, n).astype(np.uint64) + 40).astype(np.uint64)
        si, di = rng.integers(0, sources, n), rng.integers(0, destinations, n)
        cols: dict[str, pa.Array] = {
            "time_start": pa.array(start, pa.int64()).cast(FLOW_SCHEMA.field("time_start").type),
            "time_end": pa.array(start + dur, pa.int64()).cast(FLOW_SCHEMA.field("time_end").type),
            "exporter": pa.array(exporters[rng.integers(0, len(exporters), n)], pa.string()),
            "src_addr": _fixed16(src_pool[si]),
            "dst_addr": _fixed16(dst_pool[di]),
            "src_port": pa.array(rng.integers(1024, 65536, n).astype(np.uint16)),
            "dst_port": pa.array(rng.choice([443, 80, 53, 123, 3478, 8080], n).astype(np.uint16)),
            "proto": pa.array(rng.choice([6, 17], n).astype(np.uint8)),
            "tcp_flags": pa.array(rng.integers(0, 64, n).astype(np.uint8)),
            "tos": pa.array(np.zeros(n, dtype=np.uint8)),
            "src_as": pa.array(rng.integers(1, 65_000, n).astype(np.uint32)),
            "dst_as": pa.array(rng.integers(1, 65_000, n).astype(np.uint32)),
            "bytes": pa.array(nbytes),
            "packets": pa.array(packets),
            "sampling_rate": pa.array(np.full(n, 1000, dtype=np.uint32)),
            "in_if": pa.array(rng.integers(1, 64, n).astype(np.uint32)),
            "out_if": pa.array(rng.integers(1, 64, n).astype(np.uint32)),
            "app": pa.array(app_names[app], pa.string()),
            "category": pa.array(cat_names[app_cat[app]], pa.string()),
            "app_source": pa.array(np.full(n, "rules", dtype=object), pa.string()),
            "app_confidence": pa.array(rng.random(n).astype(np.float32)),
            "src_site": pa.array(sites[si % len(sites)], pa.string()),
            "dst_site": pa.array(sites[di % len(sites)], pa.string()),
        }
        yield pa.Table.from_arrays([cols[f.name] for f in FLOW_SCHEMA], schema=FLOW_SCHEMA)


def _fixed16(a: np.ndarray) -> pa.Array:
    data = np.ascontiguousarray(a, dtype=np.uint8)
    return pa.FixedSizeBinaryArray.from_buffers(
        pa.binary(16), len(data), [None, pa.py_buffer(data.tobytes())]
    )
