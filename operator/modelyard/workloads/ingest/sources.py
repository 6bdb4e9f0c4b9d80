"""Reads a Dataset source as a stream of Arrow record batches, never the whole file at once.

CSV and JSON Lines stream straight from S3 or HTTP. Parquet needs random access, so it is
spooled to a temporary file first (on disk, not in memory).
"""

from __future__ import annotations

import http.client
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from modelyard.api.dataset import BuiltinName, DataFormat, DatasetSource
from modelyard.reasons import Reason
from modelyard.storage.client import ObjectNotFound, Storage
from modelyard.storage.uri import S3Uri
from modelyard.workloads.common.termination import EXIT_INVALID_DATA, EXIT_USAGE, WorkloadError
from modelyard.workloads.ingest.address_policy import workload_policy
from modelyard.workloads.ingest.api_source import read_api
from modelyard.workloads.ingest.builtin import builtin_table
from modelyard.workloads.ingest.http_fetch import FetchFailed, FetchRefused, open_url
from modelyard.workloads.ingest.source_stream import open_source
from modelyard.workloads.ingest.sql_source import read_sql

BLOCK_BYTES = 1 << 20  # CSV/JSON block: bounds memory per batch; see docs/benchmarks/workloads.md
_EXTENSIONS = {
    ".csv": DataFormat.CSV,
    ".parquet": DataFormat.PARQUET,
    ".pq": DataFormat.PARQUET,
    ".jsonl": DataFormat.JSONL,
    ".ndjson": DataFormat.JSONL,
}
# Compressed copies name their format before this suffix (data.csv.gz); see source_stream.py.
COMPRESSED_SUFFIXES = (".gz", ".gzip", ".bz2", ".zst", ".zstd")


def infer_format(name: str, declared: DataFormat | None) -> DataFormat:
    if declared is not None:
        if DataFormat(declared) not in _EXTENSIONS.values():
            raise WorkloadError(
                Reason.UnknownFormat,
                f"spec.format: {declared} is not a file format; "
                "set spec.format to csv, parquet or jsonl",
                EXIT_USAGE,
            )
        return DataFormat(declared)
    lowered = name.lower()
    for suffix in COMPRESSED_SUFFIXES:
        lowered = lowered.removesuffix(suffix)
    for extension, data_format in _EXTENSIONS.items():
        if lowered.endswith(extension):
            return data_format
    raise WorkloadError(
        Reason.UnknownFormat,
        f"spec.format: cannot infer the format of {name!r} from its extension; "
        "set spec.format to csv, parquet or jsonl",
    )


def read_source(
    source: DatasetSource,
    data_format: DataFormat | None,
    storage: Storage,
    declared: frozenset[str] = frozenset(),
) -> tuple[DataFormat, Iterator[pa.RecordBatch]]:
    """The source's format and its rows as record batches.

    CSV columns named in `declared` (typed in spec.schema) are read as text, so that the caller
    converts them to the declared type and can name the column and value that do not fit.
    """
    types = {name: pa.string() for name in declared}
    if source.builtin is not None:
        return DataFormat.PARQUET, iter(
            builtin_table(BuiltinName(source.builtin.name)).to_batches()
        )
    if source.sql is not None:
        return DataFormat.SQL, read_sql(source.sql)
    if source.api is not None:
        return DataFormat.JSON, read_api(source.api, declared)
    if source.http is not None:
        url = source.http.url
        url_format = infer_format(url.split("?", 1)[0], data_format)
        return url_format, _read_http(url, url_format, types)
    assert source.s3 is not None
    uri = S3Uri.parse(source.s3.uri)
    objects = _s3_objects(storage, uri)
    first_format = infer_format(objects[0].key, data_format)
    return first_format, _read_s3(storage, objects, first_format, data_format, types)


def _s3_objects(storage: Storage, uri: S3Uri) -> list[S3Uri]:
    if not uri.is_prefix:
        if not storage.exists(uri):
            raise WorkloadError(Reason.SourceNotFound, f"spec.source.s3.uri: {uri} does not exist")
        return [uri]
    try:
        objects = [item for item in storage.list(uri) if not item.key.endswith("/")]
    except ObjectNotFound:
        objects = []
    if not objects:
        raise WorkloadError(Reason.SourceNotFound, f"spec.source.s3.uri: no objects under {uri}")
    return objects


def _read_s3(
    storage: Storage,
    objects: list[S3Uri],
    data_format: DataFormat,
    spec_format: DataFormat | None,
    types: dict[str, pa.DataType],
) -> Iterator[pa.RecordBatch]:
    schema: pa.Schema | None = None
    for uri in objects:
        if infer_format(uri.key, spec_format) != data_format:
            raise WorkloadError(
                Reason.MixedFormats,
                f"spec.source.s3.uri: {uri} is not {data_format.value} like the rest",
            )
        with storage.open(uri) as stream:
            for batch in _read_stream(stream, data_format, types, str(uri)):
                if schema is None:
                    schema = batch.schema
                elif batch.schema.names != schema.names:
                    raise WorkloadError(
                        Reason.SchemaMismatch,
                        f"spec.source.s3.uri: {uri} has columns {batch.schema.names}, "
                        f"the first object has {schema.names}",
                    )
                yield batch


def _read_http(
    url: str, data_format: DataFormat, types: dict[str, pa.DataType]
) -> Iterator[pa.RecordBatch]:
    policy = workload_policy(os.environ)
    try:
        response = open_url(url, policy)
    except FetchRefused as error:
        raise WorkloadError(
            Reason.SourceAddressNotAllowed, f"spec.source.http.url: {url}: {error}", EXIT_USAGE
        ) from None
    except (FetchFailed, http.client.HTTPException, OSError) as error:
        raise _unreachable(url, error) from None
    with response:
        try:
            yield from _read_stream(response, data_format, types, url)
        except (http.client.HTTPException, OSError) as error:
            # The server went away part-way: worth a retry, unlike bad bytes.
            raise _unreachable(url, error) from None


def _unreachable(url: str, error: Exception) -> WorkloadError:
    if isinstance(error, http.client.HTTPException):
        # Their text can quote what the server sent (a status line, a header): name them only.
        detail = f"the server's answer is not valid HTTP ({type(error).__name__})"
    else:
        detail = str(error)
    return WorkloadError(Reason.SourceUnreachable, f"spec.source.http.url: {url}: {detail}")


def _read_stream(
    stream: BinaryIO, data_format: DataFormat, types: dict[str, pa.DataType], name: str
) -> Iterator[pa.RecordBatch]:
    stream = open_source(stream, data_format, name)
    try:
        if data_format is DataFormat.CSV:
            yield from _read_csv(stream, types, name)
        elif data_format is DataFormat.JSONL:
            with pa_json.open_json(
                stream, read_options=pa_json.ReadOptions(block_size=BLOCK_BYTES)
            ) as reader:
                yield from reader
        else:
            with ExitStack() as stack:
                spool = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "source.parquet"
                with spool.open("wb") as out:
                    shutil.copyfileobj(stream, out, BLOCK_BYTES)
                yield from pq.ParquetFile(spool).iter_batches(batch_size=65536)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise WorkloadError(
            Reason.UnreadableData,
            f"{name}: not valid {data_format.value}: {_explain(error)}",
            EXIT_INVALID_DATA,
        ) from None


def _read_csv(
    stream: BinaryIO, types: dict[str, pa.DataType], name: str
) -> Iterator[pa.RecordBatch]:
    reader = pa_csv.open_csv(
        stream,
        read_options=pa_csv.ReadOptions(block_size=BLOCK_BYTES),
        # Empty strings are nulls in CSV, as they are in Parquet and JSON: same data,
        # same version.
        convert_options=pa_csv.ConvertOptions(strings_can_be_null=True, column_types=types),
    )
    # Closed explicitly: a reader left to the garbage collector after an error can still have
    # read-ahead running at interpreter exit, which aborts the process.
    with reader:
        try:
            for batch in reader:
                # pyarrow reads a column whose first block is not UTF-8 as binary.
                binary = [f.name for f in batch.schema if pa.types.is_binary(f.type)]
                if binary:
                    raise _not_utf8(name, binary[0])
                yield batch
        except pa.ArrowInvalid as error:
            raise _type_change(error, reader.schema.names, name) from None


def _not_utf8(name: str, column: str) -> WorkloadError:
    return WorkloadError(
        Reason.UnreadableData,
        f"{name}: column {column!r} holds bytes that are not UTF-8 (Latin-1 or another "
        "legacy encoding?); re-encode the file as UTF-8",
        EXIT_INVALID_DATA,
    )


def _type_change(error: pa.ArrowInvalid, names: list[str], name: str) -> WorkloadError:
    """A CSV column whose later rows do not fit the type inferred from its first rows."""
    match = re.search(r"CSV column #(\d+): CSV conversion error to (\w+): (.*)", str(error))
    if match is None:
        return WorkloadError(
            Reason.UnreadableData,
            f"{name}: not valid csv: {_explain(error)}",
            EXIT_INVALID_DATA,
        )
    column = names[int(match.group(1))]
    if "invalid UTF8" in match.group(3):
        return _not_utf8(name, column)
    return WorkloadError(
        Reason.SchemaMismatch,
        f"column {column!r} changes type part-way: {match.group(2)} expected from its first "
        f"rows, then {match.group(3)}; declare its type in spec.schema.columns",
        EXIT_INVALID_DATA,
    )


def _explain(error: Exception) -> str:
    """pyarrow's parse errors in the user's terms."""
    text = _first_line(error)
    ragged = re.search(r"Expected (\d+) columns, got (\d+): ?(.*)", text)
    if ragged:
        return (
            f"a row has {ragged.group(2)} fields where the header has {ragged.group(1)} "
            f"(a ragged row, or a file cut short): {ragged.group(3)[:200]!r}"
        )
    if "straddling object" in text:
        return (
            f"a single row (or JSON object) is longer than {BLOCK_BYTES >> 20} MiB, the most "
            "a row may hold; or a quoted field is never closed"
        )
    return text


def _first_line(error: Exception) -> str:
    return str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
