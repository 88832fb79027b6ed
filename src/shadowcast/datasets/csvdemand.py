"""Long-format demand CSV: ``time,src,dst,value`` (Mbit/s, ISO-8601 time, naive = UTC).

One row per time step and OD pair; a missing row means 0. Extra columns are ignored.
The file may be gzip, bz2 or xz compressed (told by its first bytes) and may expand to at most
``MAX_EXPANDED_BYTES``. A value is a finite number in ``[0, MAX_VALUE]`` (float32, the type of
a DemandSeries). Errors name the file and the line (the header is line 1).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pandas as pd

from shadowcast.datasets import archive
from shadowcast.errors import DemandError
from shadowcast.parsing import clip, one_line
from shadowcast.records import F64, DemandSeries

COLUMNS = ("time", "src", "dst", "value")
#: Largest demand value (Mbit/s) a DemandSeries holds: the float32 maximum.
MAX_VALUE = float(np.finfo(np.float32).max)


@dataclass(frozen=True, slots=True)
class Rows:
    """Parsed CSV rows, column-wise."""

    path: Path
    times: npt.NDArray[np.datetime64]
    src: npt.NDArray[np.str_]
    dst: npt.NDArray[np.str_]
    values: F64

    def where(self, i: int) -> str:
        return f"{self.path}:{i + 2}"


def read_rows(path: Path) -> Rows:
    """Read and validate a demand CSV; raises DemandError naming file, line and field."""
    try:
        with archive.open_expanding(path, error=DemandError) as stream:
            df = pd.read_csv(
                stream,
                dtype=str,
                keep_default_na=False,
                skip_blank_lines=False,
                skipinitialspace=True,
                engine="c",
            )
    except pd.errors.EmptyDataError as exc:
        raise DemandError(f"{path}: empty CSV (expected header {','.join(COLUMNS)})") from exc
    except pd.errors.ParserError as exc:
        raise DemandError(f"{path}: malformed CSV ({one_line(str(exc))})") from exc
    except UnicodeDecodeError as exc:
        raise DemandError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except archive.STREAM_ERRORS as exc:
        raise DemandError(f"{path}: unreadable or damaged file ({one_line(str(exc))})") from exc
    df.columns = [str(c).strip().lower() for c in df.columns]
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise DemandError(
            f"{path}:1: missing column(s) {', '.join(missing)}; "
            f"expected header {','.join(COLUMNS)}, got {clip(','.join(map(str, df.columns)))}"
        )
    rows = Rows(
        path, np.zeros(0, "datetime64[s]"), np.zeros(0, np.str_), np.zeros(0, np.str_), np.zeros(0)
    )
    for col in ("src", "dst"):
        empty = np.flatnonzero(df[col].str.strip().to_numpy() == "")
        if empty.size:
            raise DemandError(
                f"{rows.where(int(empty[0]))}: field {col!r} is empty (truncated or short row?)"
            )
    values = pd.to_numeric(df["value"].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values) | (values < 0) | (values > MAX_VALUE))
    if bad.size:
        i = int(bad[0])
        raw = df["value"].iat[i]
        raise DemandError(
            f"{rows.where(i)}: field 'value' = {clip(raw)} is not a finite number in "
            f"[0, {MAX_VALUE:.4g}] (Mbit/s)"
        )
    codes, uniques = pd.factorize(df["time"].str.strip())
    parsed = pd.to_datetime(pd.Index(uniques), format="ISO8601", utc=True, errors="coerce")
    nat = np.flatnonzero(parsed.isna())
    if nat.size:
        i = int(np.flatnonzero(codes == nat[0])[0])
        raise DemandError(
            f"{rows.where(i)}: field 'time' = {clip(df['time'].iat[i])} is not ISO-8601"
        )
    tvals = parsed.tz_convert(None).to_numpy(dtype="datetime64[s]")
    return Rows(
        path=path,
        times=tvals[codes],
        src=df["src"].str.strip().to_numpy(dtype=np.str_),
        dst=df["dst"].str.strip().to_numpy(dtype=np.str_),
        values=values,
    )


def write_csv(demands: DemandSeries, path: str | Path, *, skip_zeros: bool = False) -> Path:
    """Write ``demands`` as a long CSV readable by :func:`shadowcast.datasets.load_demands`."""
    p = Path(path)
    t, k = np.meshgrid(np.arange(demands.steps), np.arange(len(demands.od_pairs)), indexing="ij")
    vals = demands.values.reshape(-1)
    keep = vals != 0 if skip_zeros else np.ones(vals.size, dtype=bool)
    src = np.array([s for s, _ in demands.od_pairs], dtype=object)
    dst = np.array([d for _, d in demands.od_pairs], dtype=object)
    times = np.datetime_as_string(demands.times, unit="s")
    df = pd.DataFrame(
        {
            "time": np.char.add(times[t.reshape(-1)[keep]], "Z"),
            "src": src[k.reshape(-1)[keep]],
            "dst": dst[k.reshape(-1)[keep]],
            "value": vals[keep],
        }
    )
    df.to_csv(p, index=False, quoting=csv.QUOTE_MINIMAL, float_format="%.9g")
    return p
