"""Demand series: one entry point over every format, and the assembly into a DemandSeries.

Formats (chosen by content, not only by name):

* SNDlib dynamic demand matrices: a folder of ``*.xml``, a ``.tar.gz``/``.tar`` archive of them
  (read streaming, members sorted by their time stamp), or one ``.xml`` matrix.
* A long CSV ``time,src,dst,value`` (value in Mbit/s, ISO-8601 time; naive times are UTC).

Every reader yields rows ``(time, src, dst, value)``; :func:`assemble` turns them into one
``DemandSeries``: float32 Mbit/s, OD pairs sorted by (src, dst) name, a regular step (a gap
raises DemandError unless ``fill_gaps=True``, which inserts rows of missing values).

Sparse input: a pair without a row at a step (a long CSV export usually omits its zero
rows; an SNDlib matrix lists only its demands) is *missing*: ``missing="zero"`` (the
default: what demand matrices mean) makes it 0, ``missing="nan"`` makes it NaN (unknown:
the forecasters skip it). Pairs are the union over every step; with ``all_pairs`` every
ordered pair of nodes, so that a pair that shows up later has a column from the start.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from shadowcast.datasets import csvdemand, sndlib
from shadowcast.errors import DemandError
from shadowcast.records import F64, DemandSeries, Topology

log = logging.getLogger(__name__)

Where = Callable[[int], str]


def _describe_gap(times: npt.NDArray[np.datetime64], i: int, step: int) -> str:
    gap = int((times[i + 1] - times[i]).astype(np.int64))
    return f"{times[i]} -> {times[i + 1]} ({gap} s, step {step} s)"


def regular_grid(
    times: npt.NDArray[np.datetime64],
    *,
    source: str,
    step: int | None,
    step_hint: int | None,
    fill_gaps: bool,
) -> tuple[npt.NDArray[np.datetime64], int]:
    """Sorted unique ``times`` -> (regular grid, step). Raises DemandError on gaps unless filled."""
    if len(times) == 1:
        s = step or step_hint
        if not s:
            raise DemandError(f"{source}: one time step only and no step given (pass step=...)")
        return times, int(s)
    diffs = np.diff(times).astype(np.int64)
    s = int(step) if step else int(diffs.min())
    if s <= 0:
        raise DemandError(f"{source}: step must be > 0 s, got {s}")
    bad = np.flatnonzero(diffs != s)
    if bad.size == 0:
        return times, s
    if not fill_gaps or (diffs % s != 0).any():
        i = int(bad[0])
        what = "irregular step" if fill_gaps else "gap or irregular step"
        raise DemandError(
            f"{source}: {what} at {_describe_gap(times, i, s)}; "
            f"{bad.size} such interval(s)"
            + ("" if fill_gaps else " (fill_gaps=True fills gaps with 0)")
        )
    grid = np.arange(times[0], times[-1] + np.timedelta64(s, "s"), np.timedelta64(s, "s"))
    log.warning(
        "filled demand gaps (missing rows)",
        extra={"source": source, "added": len(grid) - len(times)},
    )
    return grid.astype("datetime64[s]"), s


def assemble(
    times: npt.NDArray[np.datetime64],
    src: npt.NDArray[np.str_] | Sequence[str],
    dst: npt.NDArray[np.str_] | Sequence[str],
    values: F64,
    *,
    where: Where,
    source: str,
    nodes: Sequence[str] = (),
    topology: Topology | None = None,
    step: int | None = None,
    step_hint: int | None = None,
    fill_gaps: bool = False,
    all_pairs: bool = False,
    step_times: npt.NDArray[np.datetime64] | None = None,
    missing: float = 0.0,
) -> DemandSeries:
    """Rows ``(times[i], src[i], dst[i], values[i])`` -> DemandSeries.

    ``where(i)`` names the origin of row ``i`` (file, line) for error messages. Rows whose
    source equals their destination are dropped (they cross no link). With ``all_pairs`` every
    ordered pair of distinct nodes becomes a column, else only pairs that occur in the rows.
    ``step_times`` adds time steps that carry no rows (an empty matrix is a step of zeros).
    ``missing``: the value of a pair without a row at a step (0, or NaN for unknown).
    """
    s_codes, s_names = pd.factorize(np.asarray(src, dtype=object))
    d_codes, d_names = pd.factorize(np.asarray(dst, dtype=object))
    vals = np.asarray(values, dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(vals) | (vals < 0) | (vals > csvdemand.MAX_VALUE))
    if bad.size:
        i = int(bad[0])
        raise DemandError(
            f"{where(i)}: value {float(vals[i])!r} is negative, not finite or beyond float32 "
            f"(> {csvdemand.MAX_VALUE:.4g} Mbit/s)"
        )
    seen = {str(x) for x in s_names} | {str(x) for x in d_names}
    if topology is not None:
        universe = list(topology.nodes)
    else:
        universe = sorted(set(nodes) | seen)
    index = {n: i for i, n in enumerate(universe)}
    lookups = []
    for codes, names in ((s_codes, s_names), (d_codes, d_names)):
        for c, name in enumerate(names):
            if str(name) not in index:
                what = f"topology {topology.name!r}" if topology is not None else "the node list"
                i = int(np.flatnonzero(codes == c)[0])
                raise DemandError(f"{where(i)}: unknown node {name!r} (not in {what})")
        lut = np.array([index[str(x)] for x in names], dtype=np.int64)
        lookups.append(lut[codes])
    si, di = lookups
    n = len(universe)
    keep = si != di
    if not keep.all():
        log.info("dropped self demands", extra={"source": source, "rows": int((~keep).sum())})
    rows = np.flatnonzero(keep)

    all_t = np.asarray(times, dtype="datetime64[s]")
    if step_times is not None:  # steps that exist even when they carry no rows
        all_t = np.concatenate([all_t, np.asarray(step_times, dtype="datetime64[s]")])
    uniq_t = np.unique(all_t)
    if uniq_t.size == 0:
        raise DemandError(f"{source}: no time steps")
    grid, the_step = regular_grid(
        uniq_t, source=source, step=step, step_hint=step_hint, fill_gaps=fill_gaps
    )
    t_idx = np.searchsorted(grid, np.asarray(times, dtype="datetime64[s]")[rows])

    # OD pairs sorted by (src name, dst name).
    rank = np.argsort(np.array(universe, dtype=np.str_), kind="stable")
    pos = np.empty(n, dtype=np.int64)
    pos[rank] = np.arange(n)
    code = pos[si[rows]] * n + pos[di[rows]]
    if all_pairs:
        a, b = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
        cols = (a * n + b)[a != b].ravel()
    else:
        cols = np.unique(code)
    col_of = np.searchsorted(cols, code)
    flat = t_idx * len(cols) + col_of
    order = np.argsort(flat, kind="stable")
    dup = np.flatnonzero(np.diff(flat[order]) == 0)
    if dup.size:
        i, j = int(rows[order[dup[0]]]), int(rows[order[dup[0] + 1]])
        raise DemandError(
            f"{where(j)}: duplicate demand for the same time and OD pair as {where(i)}"
        )
    out = np.full((len(grid), len(cols)), missing, dtype=np.float32)
    out.reshape(-1)[flat] = vals[rows]
    sorted_names = [universe[int(r)] for r in rank]
    od_pairs = tuple((sorted_names[int(c) // n], sorted_names[int(c) % n]) for c in cols)
    return DemandSeries(
        times=grid,
        od_pairs=od_pairs,
        values=out,
        step=the_step,
        nodes=tuple(universe),
        source=source,
    )


def load_demands(
    path: str | Path,
    *,
    topology: Topology | None = None,
    step: int | None = None,
    fill_gaps: bool = False,
    all_pairs: bool = False,
    missing: str = "zero",
    trim_empty: bool = False,
) -> DemandSeries:
    """Load a demand series from SNDlib XML (folder, ``.tar.gz`` or one file) or a long CSV.

    ``topology``: check every node against it (unknown node -> DemandError naming the file and
    node) and take its node order for ``nodes``. ``step``: expected step in seconds (default:
    the smallest interval seen). ``fill_gaps``: insert rows of ``missing`` values for absent
    steps instead of raising. ``all_pairs``: one column per ordered node pair, not only the
    pairs seen. ``missing``: ``"zero"`` (default) or ``"nan"``, the value of a pair without
    a row at a step (see the module docstring). ``trim_empty``: drop the steps at the start
    and the end that carry no demand at all (an empty matrix: nothing was measured, not a
    backbone without traffic; the GEANT slice starts with two), see :func:`trim_empty_ends`.
    """
    series = _load(path, topology, step, fill_gaps, all_pairs, missing)
    return trim_empty_ends(series) if trim_empty else series


def trim_empty_ends(series: DemandSeries) -> DemandSeries:
    """``series`` without its leading and trailing steps of no demand (every value 0 or
    missing); DemandError if no step carries any."""
    v = np.asarray(series.values)
    busy = np.flatnonzero((np.nan_to_num(v) != 0).any(axis=1))
    if busy.size == 0:
        raise DemandError(f"{series.source}: no step carries any demand")
    a, b = int(busy[0]), int(busy[-1]) + 1
    if a or b < v.shape[0]:
        log.info(
            "dropped empty steps at the ends",
            extra={"source": series.source, "start": a, "end": v.shape[0] - b},
        )
    return series.slice(a, b)


def _load(
    path: str | Path,
    topology: Topology | None,
    step: int | None,
    fill_gaps: bool,
    all_pairs: bool,
    missing: str,
) -> DemandSeries:
    fill = missing_value(missing)
    p = Path(path)
    if not p.exists():
        raise DemandError(f"{p}: no such file or folder")
    source = str(p)
    if p.is_dir() or sndlib.is_archive(p) or _looks_xml(p):
        mats = sndlib.read_matrices(p)
        seen: dict[np.datetime64, str] = {}
        for m in mats:
            assert m.time is not None
            if m.time in seen:
                raise DemandError(
                    f"{m.where}: duplicate time stamp {m.time} (also in {seen[m.time]})"
                )
            seen[m.time] = m.where
        counts = np.array([len(m.src) for m in mats], dtype=np.int64)
        ends = np.cumsum(counts)
        wheres = [m.where for m in mats]

        def where(i: int) -> str:
            return wheres[int(np.searchsorted(ends, i, side="right"))]

        times = np.repeat(np.array([m.time for m in mats], dtype="datetime64[s]"), counts)
        names = sorted({n for m in mats for n in m.nodes})
        hints = [m.granularity_s for m in mats if m.granularity_s]
        series = assemble(
            times,
            [s for m in mats for s in m.src],
            [d for m in mats for d in m.dst],
            np.concatenate([m.values for m in mats]) if mats else np.zeros(0),
            where=where,
            source=source,
            nodes=names,
            topology=topology,
            step=step,
            step_hint=hints[0] if hints else None,
            fill_gaps=fill_gaps,
            all_pairs=all_pairs,
            step_times=np.array([m.time for m in mats], dtype="datetime64[s]"),
            missing=fill,
        )
        # Time stamps must be exactly the files' time stamps when no gaps were filled.
        if not fill_gaps and len(series.times) != len(mats):
            raise DemandError(f"{source}: {len(mats)} matrices but {len(series.times)} steps")
        return series
    rows = csvdemand.read_rows(p)
    return assemble(
        rows.times,
        rows.src,
        rows.dst,
        rows.values,
        where=rows.where,
        source=source,
        topology=topology,
        step=step,
        fill_gaps=fill_gaps,
        all_pairs=all_pairs,
        missing=fill,
    )


MISSING = {"zero": 0.0, "nan": float("nan")}


def missing_value(missing: str) -> float:
    """``"zero"`` -> 0.0, ``"nan"`` -> NaN; DemandError naming the choices otherwise."""
    try:
        return MISSING[missing]
    except KeyError:
        raise DemandError(f"missing={missing!r}: choose one of {sorted(MISSING)}") from None


def demand_coords(path: str | Path) -> dict[str, tuple[float, float]]:
    """Node coordinates ``{node: (lon, lat)}`` a demand file carries (SNDlib matrices list
    their nodes with coordinates; a CSV carries none: {})."""
    p = Path(path)
    if p.is_dir() or sndlib.is_archive(p) or (p.is_file() and _looks_xml(p)):
        return sndlib.read_coords(p)
    return {}


def _looks_xml(p: Path) -> bool:
    with p.open("rb") as fh:
        head = fh.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<")


def totals(demands: DemandSeries) -> F64:
    """Per-step total demand (Mbit/s, summed in float64 over OD pairs)."""
    out: F64 = demands.values.astype(np.float64).sum(axis=1)
    return out
