"""Bad source files: each is refused with a stable reason and a message naming what is wrong,
nothing is published, and the worker's memory stays bounded however large the bad part is.

The worker runs as a child process, as in a pod, so that its own peak RSS can be checked. The
bound is a memory-safety net (a reader that slurps a 100 MB field or a 2 GiB decompression bomb
whole would cross it), not a performance figure.
"""

from __future__ import annotations

import gzip
import io
import zipfile
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from modelyard.exitcodes import EXIT_INVALID_DATA
from modelyard.reasons import Reason
from modelyard.storage.client import Storage
from modelyard.storage.uri import S3Uri
from tests.workers import ProcessResult, run_worker_process

pytestmark = pytest.mark.integration

MIB = 1 << 20
# The ingest worker's own floor (interpreter, pyarrow, boto3) is ~120 MiB, and a bad file
# costs at most a few MiB more (measured: 112-122 MiB). A reader that held the 100 MB field
# (as bytes and again as an Arrow buffer) would pass the bound.
MEMORY_BOUND = 250 * MIB
# The bomb's first 64 MiB decompressed are valid rows, ingested as usual until the ratio check
# stops it (measured: 270 MiB); read whole it would take 2 GiB.
BOMB_MEMORY_BOUND = 500 * MIB
TABLE = pa.table(
    {
        "x": [float(i) for i in range(1000)],
        "city": ["Zürich" if i % 3 else "Köln" for i in range(1000)],
        "label": [i % 2 for i in range(1000)],
    }
)


def _csv(table: pa.Table = TABLE) -> bytes:
    sink = io.BytesIO()
    pa_csv.write_csv(table, sink)
    return sink.getvalue()


def _parquet(table: pa.Table = TABLE) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def _jsonl() -> bytes:
    return b"".join(
        f'{{"x": {row["x"]}, "city": "{row["city"]}", "label": {row["label"]}}}\n'.encode()
        for row in TABLE.to_pylist()
    )


def _gzip_bomb() -> bytes:
    """2 GiB of valid CSV rows in ~2 MiB: gzip members of 64 MiB each, concatenated."""
    member = gzip.compress(b"0,0,0\n" * (64 * MIB // 6), compresslevel=9)
    return gzip.compress(b"x,city,label\n") + member * 32


def _zip() -> bytes:
    sink = io.BytesIO()
    with zipfile.ZipFile(sink, "w") as archive:
        archive.writestr("data.csv", _csv())
    return sink.getvalue()


def _binary_parquet() -> bytes:
    city = pa.array([b"K\xf6ln", b"Z\xfcrich"] * 500, type=pa.binary())
    return _parquet(TABLE.set_column(1, "city", city))


# (id, file name, its bytes, reason, fragments the message must name)
CASES: list[tuple[str, str, Callable[[], bytes], str, list[str]]] = [
    ("truncated-csv", "t.csv", lambda: _csv()[:-9], Reason.UnreadableData, ["a file cut short"]),
    (
        "truncated-parquet",
        "t.parquet",
        lambda: _parquet()[: len(_parquet()) // 2],
        Reason.UnreadableData,
        ["not valid parquet"],
    ),
    (
        "truncated-jsonl",
        "t.jsonl",
        lambda: _jsonl()[:-20],
        Reason.UnreadableData,
        ["not valid jsonl"],
    ),
    (
        "latin-1-csv",
        "l.csv",
        lambda: _csv().decode().encode("latin-1"),
        Reason.UnreadableData,
        ["column 'city'", "not UTF-8", "re-encode"],
    ),
    (
        "utf-16-csv",
        "u.csv",
        lambda: _csv().decode().encode("utf-16"),
        Reason.UnreadableData,
        ["UTF-16", "must be UTF-8"],
    ),
    (
        "utf-16-csv-without-bom",
        "u.csv",
        lambda: _csv().decode().encode("utf-16-le"),
        Reason.UnreadableData,
        ["NUL bytes", "UTF-16"],
    ),
    (
        "non-utf-8-parquet-column",
        "b.parquet",
        _binary_parquet,
        Reason.UnreadableData,
        ["column 'city'", "string"],
    ),
    (
        "ragged-rows",
        "r.csv",
        lambda: b"x,city,label\n1,a,0\n2,b,1,extra\n3,c,0\n",
        Reason.UnreadableData,
        ["a row has 4 fields where the header has 3", "2,b,1,extra"],
    ),
    (
        "a-100-MB-field",
        "h.csv",
        lambda: b"x,city,label\n1," + b"y" * (100 * MIB) + b",0\n2,z,1\n",
        Reason.UnreadableData,
        ["longer than 1 MiB"],
    ),
    (
        "gzip-bomb",
        "bomb.csv.gz",
        _gzip_bomb,
        Reason.SourceTooLarge,
        ["decompression bomb", "100x"],
    ),
    ("zip-archive", "a.csv.zip", _zip, Reason.UnknownFormat, ["zip archive", "gzip"]),
]


def _ingest(tmp_path: Path, uri: S3Uri) -> ProcessResult:
    spec = {"source": {"s3": {"uri": str(uri)}}, "target": "label", "format": "csv"}
    if uri.key.endswith((".parquet", ".jsonl")):
        del spec["format"]
    return run_worker_process(tmp_path, "ingest", spec, "--name", "bad", "--namespace", "ml")


@pytest.mark.parametrize(
    ("filename", "make", "reason", "fragments"),
    [pytest.param(*case[1:], id=case[0]) for case in CASES],
)
def test_a_bad_file_is_refused_by_name_in_bounded_memory(
    tmp_path: Path,
    storage: Storage,
    bucket_root: S3Uri,
    filename: str,
    make: Callable[[], bytes],
    reason: str,
    fragments: list[str],
) -> None:
    uri = bucket_root.join("incoming", filename)
    storage.put_bytes(uri, make())

    result = _ingest(tmp_path, uri)

    assert (result.exit_code, result.message["reason"]) == (EXIT_INVALID_DATA, reason), (
        result.message,
        result.stderr[-2000:],
    )
    for fragment in fragments:
        assert fragment in result.message["message"], result.message["message"]
    assert "Traceback" not in result.stderr
    bound = BOMB_MEMORY_BOUND if reason == Reason.SourceTooLarge else MEMORY_BOUND
    assert result.peak_rss_bytes < bound, f"peak RSS {result.peak_rss_bytes / MIB:.0f} MiB"
    assert not list(storage.list(bucket_root.join("datasets/"))), "nothing is published"


def test_a_gzipped_csv_is_the_same_version_as_the_plain_one(
    tmp_path: Path, storage: Storage, bucket_root: S3Uri
) -> None:
    plain, packed = bucket_root.join("d.csv"), bucket_root.join("d.csv.gz")
    storage.put_bytes(plain, _csv())
    storage.put_bytes(packed, gzip.compress(_csv()))

    first, second = _ingest(tmp_path, plain), _ingest(tmp_path, packed)

    assert (first.exit_code, second.exit_code) == (0, 0), (first.message, second.message)
    assert second.message["version"] == first.message["version"]
    assert second.message["rows"] == TABLE.num_rows
