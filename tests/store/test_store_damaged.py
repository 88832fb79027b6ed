"""A damaged Parquet segment: set aside on read, named by stats/check, repaired by check."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from shadowcast.store import segments
from shadowcast.store.base import AggQuery
from shadowcast.store.commands import app
from shadowcast.store.duckdb import DuckDBStore
from shadowcast.store.synth import random_table

runner = CliRunner()


def seg_files(path: Path, table: str = "flows") -> list[Path]:
    with DuckDBStore(path) as s:
        cur = s._cursor()
        names = [f for f, _ in s._segments.manifest(cur, table)]
    return [Path(str(path) + ".segments") / table / n for n in names]


def truncate(f: Path) -> None:
    f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])


def garble_footer(f: Path) -> None:
    data = bytearray(f.read_bytes())
    data[-20:-8] = b"\xff" * 12
    f.write_bytes(bytes(data))


def garble_page(f: Path, group: int = 0, column: str = "time_start") -> None:
    """Flip bytes inside the data of one column chunk (its pages' CRCs no longer match)."""
    meta = pq.ParquetFile(f).metadata
    col = meta.row_group(group).column(meta.schema.names.index(column))
    data = bytearray(f.read_bytes())
    mid = col.data_page_offset + col.total_compressed_size // 2
    for i in range(mid, mid + 16):
        data[i] ^= 0x5A
    f.write_bytes(bytes(data))


def three_segments(path: Path) -> list[pa.Table]:
    parts = [random_table("flows", 400 + 100 * i, seed=i) for i in range(3)]
    with DuckDBStore(path) as s:
        for p in parts:
            s.write("flows", p)
    return parts


@pytest.mark.parametrize("damage", [truncate, garble_footer], ids=["truncated", "footer"])
def test_queries_answer_with_the_other_segments(
    tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    path = tmp_path / "s.duckdb"
    parts = three_segments(path)
    bad = seg_files(path)[1]
    damage(bad)
    with DuckDBStore(path) as s:
        got = s.read("flows")
        assert got.equals(pa.concat_tables([parts[0], parts[2]]))
        assert s.count("flows") == parts[0].num_rows + parts[2].num_rows
        agg = s.aggregate(AggQuery("flows", 3600, values=["bytes"]))
        assert sum(agg.column("bytes").to_pylist()) == sum(got.column("bytes").to_pylist())
        [problem] = s._segments.damaged()
        assert problem.file == bad.name and problem.rows == parts[1].num_rows
        assert s.segment_counters() == {"damaged_found": 1, "queries_retried": 1}


def test_stats_check_and_repair_name_and_mend_the_segment(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    parts = three_segments(path)
    bad = seg_files(path)[1]
    truncate(bad)
    res = runner.invoke(app, ["stats", "--path", str(path), "--json"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.stdout)
    assert stats["tables"]["flows"]["rows"] == parts[0].num_rows + parts[2].num_rows
    [d] = stats["damaged_segments"]
    assert d["table"] == "flows" and d["file"] == bad.name and "magic" in d["reason"]
    res = runner.invoke(app, ["stats", "--path", str(path)])
    assert f"damaged segment flows/{bad.name}" in " ".join(res.stdout.split())
    res = runner.invoke(app, ["check", "--path", str(path)])
    assert res.exit_code == 1 and bad.name[:12] in res.stdout
    res = runner.invoke(app, ["check", "--path", str(path), "--repair", "--json"])
    assert res.exit_code == 0, res.output
    [r] = json.loads(res.stdout)["repaired"]
    assert (r["file"], r["action"], r["kept"]) == (bad.name, "dropped", 0)
    quarantined = Path(str(path) + ".segments") / "quarantine" / "flows" / bad.name
    assert Path(r["quarantined"]) == quarantined and quarantined.is_file() and not bad.exists()
    # a consistent store: check is clean, counts agree with the rows, reopen keeps all
    res = runner.invoke(app, ["check", "--path", str(path)])
    assert res.exit_code == 0 and "every segment file reads" in res.stdout
    with DuckDBStore(path) as s:
        assert s.count("flows") == s.read("flows").num_rows == 400 + 600
        assert s.read("flows").equals(pa.concat_tables([parts[0], parts[2]]))
        assert s._segments.damaged() == []
    assert quarantined.is_file()  # opening does not sweep the quarantine


def test_a_garbled_page_is_set_aside_on_read_and_the_rest_kept_on_repair(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(segments, "ROW_GROUP", 100)  # a segment of 3 row groups
    path = tmp_path / "s.duckdb"
    a, b = random_table("flows", 300, seed=7), random_table("flows", 50, seed=8)
    with DuckDBStore(path) as s:
        s.write("flows", a)
        s.write("flows", b)
    bad = seg_files(path)[0]
    garble_page(bad, group=1)  # lz4: DuckDB fails to decompress the page
    with DuckDBStore(path) as s:
        assert s.read("flows").equals(b)
        [p] = s.check_segments(full=True)
        assert p.file == bad.name and "unreadable" in p.reason
        [r] = s.repair_segments()
        assert (r.action, r.rows, r.kept) == ("rewritten", 300, 200)
        assert s.check_segments(full=True) == []
        kept = pa.concat_tables([a.slice(0, 100), a.slice(200, 100), b])
        assert s.read("flows").equals(kept) and s.count("flows") == 250
    with DuckDBStore(path) as s:
        assert s.read("flows").equals(kept)


def test_a_page_garbled_silently_is_found_by_its_checksum(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    a, b = random_table("flows", 300, seed=7), random_table("flows", 50, seed=8)
    with DuckDBStore(path, compression="none") as s:
        s.write("flows", a)
        s.write("flows", b)
    bad = seg_files(path)[0]
    garble_page(bad, column="bytes")  # any 64 bits are a byte count
    with DuckDBStore(path, compression="none") as s:
        got = s.read("flows")  # plain pages: DuckDB reads the flipped bytes as data
        assert got.num_rows == 350 and not got.equals(pa.concat_tables([a, b]))
        [p] = s.check_segments(full=True)
        assert p.file == bad.name and "CRC" in p.reason
        assert s.read("flows").equals(b)  # set aside from now on


def test_a_missing_segment_file_is_dropped_on_repair(tmp_path: Path) -> None:
    path = tmp_path / "s.duckdb"
    parts = three_segments(path)
    bad = seg_files(path)[2]
    bad.unlink()
    with DuckDBStore(path) as s:
        assert s.read("flows").equals(pa.concat_tables(parts[:2]))
        [r] = s.repair_segments()
        assert (r.action, r.quarantined) == ("dropped", None)
        assert s.count("flows") == 900 and s.check_segments() == []
