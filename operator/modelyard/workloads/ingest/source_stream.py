"""A source's bytes made safe to parse: compression undone within bounds, text encoding checked.

Compressed sources (gzip, bzip2, zstd) are recognised by their magic bytes, whatever the name,
and decompressed as a stream. Decompression is bounded: a stream that expands more than
MAX_RATIO times its compressed size (once past RATIO_GRACE_BYTES) is refused as a decompression
bomb, and any source past $MODELYARD_MAX_SOURCE_BYTES decompressed is refused; memory stays at
one read buffer either way. CSV and JSON Lines must be UTF-8: UTF-16/32 text and binary files
are refused up front with a message that says so, instead of a parse error about columns.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from typing import Any, BinaryIO, cast

import pyarrow as pa

from modelyard.api.dataset import DataFormat
from modelyard.reasons import Reason
from modelyard.workloads.common.termination import EXIT_INVALID_DATA, WorkloadError

PEEK_BYTES = 64 << 10
# Deflate tops out near 1000:1 on repeated bytes; real tables compress 3-20:1.
MAX_RATIO = 100
RATIO_GRACE_BYTES = 64 << 20
DEFAULT_MAX_SOURCE_BYTES = 1 << 40

_CODECS = {b"\x1f\x8b": "gzip", b"BZh": "bz2", b"\x28\xb5\x2f\xfd": "zstd"}
_ARCHIVES = {b"PK\x03\x04": "zip", b"7z\xbc\xaf": "7z"}
_BOMS = {
    b"\xff\xfe\x00\x00": "UTF-32",
    b"\x00\x00\xfe\xff": "UTF-32",
    b"\xff\xfe": "UTF-16",
    b"\xfe\xff": "UTF-16",
}


class _Reader(io.RawIOBase):
    """A read function as a file that can peek at its head; counts and checks what it pulls."""

    def __init__(
        self, read: Callable[[int], bytes], check: Callable[[int], None] | None = None
    ) -> None:
        super().__init__()
        self.source_read = read
        self.check = check
        self.pending = b""
        self.count = 0

    def readable(self) -> bool:
        return True

    def _pull(self, size: int) -> bytes:
        data = self.source_read(size)
        self.count += len(data)
        if self.check is not None:
            self.check(self.count)
        return data

    def peek_head(self) -> bytes:
        """The first PEEK_BYTES (fewer if the stream is shorter), still to be read."""
        while len(self.pending) < PEEK_BYTES:
            more = self._pull(PEEK_BYTES - len(self.pending))
            if not more:
                break
            self.pending += more
        return self.pending

    def read(self, size: int | None = -1) -> bytes:
        if not self.pending:
            return self._pull(-1 if size is None else size)
        data = self.pending if size is None or size < 0 else self.pending[:size]
        self.pending = self.pending[len(data) :]
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def open_source(stream: BinaryIO, data_format: DataFormat, name: str) -> BinaryIO:
    """`stream` decompressed if it is compressed, after checks that fail fast with a reason."""
    raw = _Reader(stream.read)
    head = raw.peek_head()
    for magic, archive in _ARCHIVES.items():
        if head.startswith(magic):
            raise WorkloadError(
                Reason.UnknownFormat,
                f"{name}: a {archive} archive; archives are not read, compress a single file "
                "with gzip, bzip2 or zstd instead",
                EXIT_INVALID_DATA,
            )
    codec = next((codec for magic, codec in _CODECS.items() if head.startswith(magic)), None)
    result = raw
    if codec is not None:
        decompressed = pa.CompressedInputStream(pa.PythonFile(raw, mode="r"), codec)
        limit = int(os.environ.get("MODELYARD_MAX_SOURCE_BYTES") or DEFAULT_MAX_SOURCE_BYTES)

        def check(count: int) -> None:
            _check_expansion(name, codec, count, raw.count, limit)

        result = _Reader(decompressed.read, check)
    if data_format is not DataFormat.PARQUET:
        _check_text(name, data_format, result.peek_head())
    return cast(BinaryIO, result)


def _check_expansion(name: str, codec: str, out: int, compressed: int, limit: int) -> None:
    if out > limit:
        raise WorkloadError(
            Reason.SourceTooLarge,
            f"{name}: more than {limit} bytes once decompressed ($MODELYARD_MAX_SOURCE_BYTES)",
            EXIT_INVALID_DATA,
        )
    if out > RATIO_GRACE_BYTES and out > MAX_RATIO * max(compressed, 1):
        raise WorkloadError(
            Reason.SourceTooLarge,
            f"{name}: {codec} data expanding more than {MAX_RATIO}x ({out >> 20} MiB from "
            f"{compressed >> 10} KiB so far) is refused as a decompression bomb",
            EXIT_INVALID_DATA,
        )


def _check_text(name: str, data_format: DataFormat, head: bytes) -> None:
    kind = data_format.value
    for bom, encoding in _BOMS.items():
        if head.startswith(bom):
            raise WorkloadError(
                Reason.UnreadableData,
                f"{name}: {encoding} text (byte-order mark); {kind} sources must be UTF-8, "
                "re-encode the file",
                EXIT_INVALID_DATA,
            )
    if b"\x00" in head:
        raise WorkloadError(
            Reason.UnreadableData,
            f"{name}: NUL bytes in the first {len(head)} bytes: not UTF-8 {kind} (UTF-16 "
            "without a byte-order mark, or a binary file); re-encode it as UTF-8 text",
            EXIT_INVALID_DATA,
        )
