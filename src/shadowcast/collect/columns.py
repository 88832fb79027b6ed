"""Column helpers shared by the decoders: numpy fields -> ``FLOW_SCHEMA`` Arrow tables."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from shadowcast.records import FLOW_SCHEMA

U64 = npt.NDArray[np.uint64]
U8 = npt.NDArray[np.uint8]

V4_PREFIX = np.array([0] * 10 + [0xFF, 0xFF], dtype=np.uint8)


def as_uint(col: npt.NDArray[np.generic]) -> U64:
    """An unsigned big-endian field of any width (numpy ``>uN`` or raw ``VN``) as uint64."""
    if col.dtype.kind == "u":
        return col.astype(np.uint64)
    n = len(col)
    width = col.dtype.itemsize
    raw = np.ascontiguousarray(col).view(np.uint8).reshape(n, width)
    if width > 8:
        raw = raw[:, width - 8 :]
        width = 8
    buf = np.zeros((n, 8), dtype=np.uint8)
    buf[:, 8 - width :] = raw
    return buf.view(">u8").reshape(n).astype(np.uint64)


_MAPPED = np.dtype([("prefix", "V12"), ("v4", "V4")])
_PREFIX = np.frombuffer(V4_PREFIX.tobytes(), dtype="V12")[0]


def v4_to_16(col: npt.NDArray[np.generic]) -> U8:
    """4-byte IPv4 addresses -> (n, 16) IPv4-mapped IPv6 (two field copies, no gathers)."""
    n = len(col)
    out = np.empty(n, dtype=_MAPPED)
    out["prefix"] = _PREFIX
    out["v4"] = col if col.dtype == np.dtype("V4") else np.asarray(col).view("V4").reshape(n)
    return out.view(np.uint8).reshape(n, 16)


def as_native(col: npt.NDArray[np.generic]) -> npt.NDArray[np.unsignedinteger]:
    """An unsigned field in native byte order at its own width (``>uN``), else as uint64."""
    if col.dtype.kind == "u":
        return col.astype(col.dtype.newbyteorder("="))
    return as_uint(col)


def v6_to_16(col: npt.NDArray[np.generic]) -> U8:
    n = len(col)
    return np.ascontiguousarray(col).view(np.uint8).reshape(n, 16).copy()


def uint32_to_16(col: npt.NDArray[np.uint32]) -> U8:
    """Host-order uint32 IPv4 addresses -> (n, 16) IPv4-mapped."""
    return v4_to_16(col.astype(">u4"))


def const_str(value: str, n: int) -> pa.Array:
    """A string column of ``n`` copies of ``value`` without a Python object per row."""
    data = value.encode()
    offsets = np.arange(n + 1, dtype=np.int32) * len(data)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets.tobytes()), pa.py_buffer(data * n)]
    )


def str_column(values: npt.NDArray[np.bytes_]) -> tuple[list[str], npt.NDArray[np.int32]]:
    """Fixed-width byte strings (NUL padded) -> (distinct names, index per row)."""
    uniq, inv = np.unique(values, return_inverse=True)
    names = [bytes(u).split(b"\x00", 1)[0].decode("utf-8", "replace").strip() for u in uniq]
    return names, inv.astype(np.int32).reshape(-1)


def dict_str(names: list[str], index: npt.NDArray[np.int32]) -> pa.Array:
    """Rows ``names[index]`` as a plain Arrow string column."""
    return pa.array(names, type=pa.string()).take(
        pa.Array.from_buffers(
            pa.int32(), len(index), [None, pa.py_buffer(np.ascontiguousarray(index, np.int32))]
        )
    )


def addr_array(addrs: U8) -> pa.Array:
    n = addrs.shape[0]
    buf = pa.py_buffer(np.ascontiguousarray(addrs, dtype=np.uint8))  # no copy
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(16), n, [None, buf])


_NUMERIC = {
    f.name: (f.type, np.dtype(f.type.to_pandas_dtype()))
    for f in FLOW_SCHEMA
    if pa.types.is_integer(f.type) or pa.types.is_floating(f.type)
}


def _fixed(typ: pa.DataType, arr: npt.NDArray[np.generic]) -> pa.Array:
    """A zero-copy Arrow array over a contiguous numpy array of the right width."""
    arr = np.ascontiguousarray(arr)
    return pa.Array.from_buffers(typ, len(arr), [None, pa.py_buffer(arr)])


def flow_table(
    n: int,
    cols: Mapping[str, npt.NDArray[np.generic]],
    exporter: str | pa.Array,
    strings: Mapping[str, pa.Array | str] | None = None,
) -> pa.Table:
    """Assemble a ``FLOW_SCHEMA`` table of ``n`` rows; absent columns are zeros / ""."""
    strings = strings or {}
    arrays: list[pa.Array] = []
    empty: pa.Array | None = None
    for f in FLOW_SCHEMA:
        name = f.name
        if name in ("time_start", "time_end"):
            ms = cols.get(name)
            arr = np.zeros(n, np.int64) if ms is None else np.asarray(ms, dtype=np.int64)
            arrays.append(_fixed(f.type, arr))
        elif name in ("src_addr", "dst_addr"):
            a = cols.get(name)
            if a is None:
                a = np.zeros((n, 16), dtype=np.uint8)
            arrays.append(addr_array(np.asarray(a, dtype=np.uint8)))
        elif name == "exporter":
            arrays.append(const_str(exporter, n) if isinstance(exporter, str) else exporter)
        elif name in _NUMERIC:
            c = cols.get(name)
            typ, dt = _NUMERIC[name]
            arr = np.zeros(n, dtype=dt) if c is None else np.asarray(c).astype(dt, copy=False)
            arrays.append(_fixed(typ, arr))
        else:
            s = strings.get(name, "")
            if s == "":
                if empty is None:
                    empty = const_str("", n)
                arrays.append(empty)
            else:
                arrays.append(const_str(s, n) if isinstance(s, str) else s)
    return pa.Table.from_arrays(arrays, schema=FLOW_SCHEMA)


def concat(tables: list[pa.Table]) -> pa.Table:
    if not tables:
        return FLOW_SCHEMA.empty_table()
    if len(tables) == 1:
        return tables[0]
    return pa.concat_tables(tables)
