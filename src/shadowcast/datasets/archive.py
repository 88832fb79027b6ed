"""Compressed inputs and tar archives, read streaming with bounded expansion.

A small file can expand to gigabytes (a "decompression bomb": 1 GiB of zeros gzips to 1 MB).
Everything a demand loader decompresses goes through :func:`open_expanding`, which counts the
bytes it hands out and refuses past a cap (:func:`expansion_limit`: ``MAX_EXPANDED_BYTES``, and
for a compressed file ``MAX_EXPANSION_RATIO`` times its size); :func:`iter_tar` reads a tar
archive member by member and refuses a member larger than ``MAX_DOCUMENT_BYTES``, or members
adding up past the cap, *from their headers*, before reading them, so the refusal costs
neither time nor memory. Extended headers (pax, GNU long names), which ``tarfile`` reads whole
into memory, are capped at ``MAX_TAR_HEADER_BYTES``. The caps are module constants of
``shadowcast.datasets._common`` (and keyword arguments here).
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import tarfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from shadowcast.datasets._common import (
    MAX_DOCUMENT_BYTES,
    MAX_EXPANDED_BYTES,
    MAX_EXPANSION_RATIO,
)
from shadowcast.errors import DataError
from shadowcast.parsing import clip, one_line

#: Largest extended tar header (pax records, GNU long name) read, in bytes.
MAX_TAR_HEADER_BYTES = 1 << 20
#: Exceptions a damaged compressed stream or tar archive raises from the standard library.
STREAM_ERRORS: tuple[type[Exception], ...] = (
    tarfile.TarError,
    EOFError,
    OSError,
    zlib.error,
    lzma.LZMAError,
)
_PROBE_ERRORS: tuple[type[Exception], ...] = (*STREAM_ERRORS, ValueError)
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


class _Capped(io.RawIOBase):
    """A read-only stream over ``inner`` that raises ``error`` once past ``limit`` bytes."""

    def __init__(
        self,
        inner: io.BufferedIOBase,
        raw: io.BufferedIOBase,
        limit: tuple[int, str],
        where: Path,
        error: type[DataError],
        slack: int = 0,
    ) -> None:
        super().__init__()
        self._inner = inner
        self._raw = raw
        self.limit = limit  # what the caller checks headers against
        self._left = limit[0] + slack  # what the stream allows (headers, padding)
        self._why = limit[1]
        self._where = where
        self._error = error

    def readable(self) -> bool:
        return True

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        data = self._inner.read(min(len(view), self._left + 1))
        n = len(data)
        if n > self._left:
            raise self._error(
                f"{self._where}: expands to more than {self._why}; refused (a decompression bomb?)"
            )
        self._left -= n
        view[:n] = data
        return n

    def close(self) -> None:
        try:
            self._inner.close()
        finally:
            self._raw.close()
            super().close()


def _decompressor(raw: io.BufferedReader) -> io.BufferedIOBase | None:
    magic = raw.read(6)
    raw.seek(0)
    if magic[:2] == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic[:3] == b"BZh":
        return bz2.BZ2File(raw)
    if magic == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(raw)
    return None


def expansion_limit(
    size: int, compressed: bool, limit: int, ratio: int = MAX_EXPANSION_RATIO
) -> tuple[int, str]:
    """Bytes a file of ``size`` bytes may expand to, and the reason in words.

    Anything is capped at ``limit``; a compressed file also at ``ratio`` times its size, but
    never below ``MAX_DOCUMENT_BYTES`` (real data compresses 5-20:1, zeros 1000:1).
    """
    if compressed:
        by_ratio = max(ratio * size, MAX_DOCUMENT_BYTES)
        if by_ratio < limit:
            return by_ratio, f"{by_ratio} bytes ({ratio} times its {size} compressed bytes)"
    return limit, f"{limit} bytes"


def open_expanding(
    path: Path,
    *,
    limit: int = MAX_EXPANDED_BYTES,
    ratio: int = MAX_EXPANSION_RATIO,
    error: type[DataError] = DataError,
    slack: int = 0,
) -> io.BufferedReader:
    """``path`` opened for reading, decompressed (gzip, bz2, xz: told by magic) and capped.

    Reading past :func:`expansion_limit` (plus ``slack`` bytes: room for a container's own
    headers) raises ``error``; the caller closes the stream.
    """
    raw = path.open("rb")
    try:
        inner = _decompressor(raw)
        cap = expansion_limit(os.fstat(raw.fileno()).st_size, inner is not None, limit, ratio)
    except BaseException:
        raw.close()
        raise
    capped = _Capped(inner if inner is not None else raw, raw, cap, path, error, slack)
    return io.BufferedReader(capped, buffer_size=1 << 16)


def is_tar(path: Path) -> bool:
    """Whether ``path`` is a tar archive: by its name, else by its first header."""
    if not path.is_file():
        return False
    if path.name.lower().endswith(_TAR_SUFFIXES):
        return True
    try:
        return tarfile.is_tarfile(path)
    except _PROBE_ERRORS:
        return False


class _BoundedTarInfo(tarfile.TarInfo):
    """TarInfo that refuses extended headers larger than MAX_TAR_HEADER_BYTES."""

    _EXTENDED = (
        tarfile.GNUTYPE_LONGNAME,
        tarfile.GNUTYPE_LONGLINK,
        tarfile.XHDTYPE,
        tarfile.XGLTYPE,
        tarfile.SOLARIS_XHDTYPE,
    )

    def _proc_member(self, tarfile_: tarfile.TarFile) -> Any:
        if self.type in self._EXTENDED and self.size > MAX_TAR_HEADER_BYTES:
            raise tarfile.HeaderError(
                f"extended header of {self.size} bytes (more than {MAX_TAR_HEADER_BYTES})"
            )
        return super()._proc_member(tarfile_)  # type: ignore[misc]


def iter_tar(
    path: Path,
    suffix: str,
    *,
    error: type[DataError],
    max_member_bytes: int = MAX_DOCUMENT_BYTES,
    max_total_bytes: int = MAX_EXPANDED_BYTES,
) -> Iterator[tuple[str, bytes]]:
    """``(path!member, bytes)`` of each regular member whose name ends with ``suffix``.

    One streaming pass. A wanted member larger than ``max_member_bytes``, or members adding up
    to more than :func:`expansion_limit` (``max_total_bytes``, or less for a small compressed
    file), are refused from their headers; the decompressed stream as a whole is capped there
    too. Any fault raises ``error`` naming ``path``.
    """
    total = 0
    _slack = max_total_bytes // 8 + 4 * MAX_TAR_HEADER_BYTES  # tar headers and padding
    try:
        with (
            open_expanding(path, limit=max_total_bytes, error=error, slack=_slack) as stream,
            tarfile.open(fileobj=stream, mode="r|", tarinfo=_BoundedTarInfo) as tf,
        ):
            assert isinstance(stream.raw, _Capped)
            limit, why = stream.raw.limit
            for member in tf:
                wanted = member.isfile() and member.name.lower().endswith(suffix)
                if wanted and member.size > max_member_bytes:
                    raise error(
                        f"{path}: member {clip(member.name)} is {member.size} bytes, more than "
                        f"{max_member_bytes}; refused (a decompression bomb?)"
                    )
                total += member.size
                if total > limit:
                    raise error(
                        f"{path}: members add up to more than {why} (at {clip(member.name)}); "
                        "refused (a decompression bomb?)"
                    )
                if not wanted:
                    continue
                fh = tf.extractfile(member)
                if fh is None:
                    continue
                yield f"{path}!{member.name}", fh.read(member.size)
    except STREAM_ERRORS as exc:
        raise error(f"{path}: unreadable or truncated archive ({one_line(str(exc), 120)})") from exc
