"""`modelyard-worker ingest` against a real S3-compatible server: versions, formats, streaming."""

from __future__ import annotations

import functools
import http.server
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv
import pyarrow.json as pa_json
import pyarrow.parquet as pq
import pytest

from modelyard.storage.client import Storage
from modelyard.storage.uri import S3Uri
from tests.workers import Worker

pytestmark = pytest.mark.integration

TABLE = pa.table(
    {
        "age": pa.array([34, 51, None, 29, 62, 45, 38, 27], type=pa.int64()),
        "income": [52000.5, 61000.0, 48000.25, None, 75000.0, 58000.0, 49000.0, 31000.0],
        "plan": ["basic", "pro", "pro", None, "enterprise", "basic", "pro", "basic"],
        "churned": ["no", "yes", "no", "no", "yes", "no", "yes", "no"],
    }
)


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: dict[str, str]) -> Worker:
    return Worker(tmp_path, monkeypatch)


def _csv(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pa_csv.write_csv(table, sink)
    return sink.getvalue()


def _parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="snappy", row_group_size=3)
    return sink.getvalue()


def _jsonl(table: pa.Table) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in table.to_pylist()).encode()


def _put(storage: Storage, root: S3Uri, key: str, data: bytes) -> str:
    uri = root.join(key)
    storage.put_bytes(uri, data)
    return str(uri)


def _spec(uri: str, **extra: object) -> dict[str, object]:
    return {"source": {"s3": {"uri": uri}}, "target": "churned", **extra}


def test_builtin_iris_becomes_a_published_stratified_version(
    worker: Worker, storage: Storage
) -> None:
    result = worker.ingest({"source": {"builtin": {"name": "iris"}}}, name="iris")
    assert result.exit_code == 0, result.message
    message = result.message
    assert message["version"].startswith("sha256:") and len(message["version"]) == 71
    assert (message["rows"], message["columns"]) == (150, 5)
    assert (message["trainRows"], message["testRows"]) == (120, 30)
    prefix = S3Uri.parse(message["uri"])
    manifest = storage.get_json(prefix.join("manifest.json"))
    assert manifest["version"] == message["version"]
    assert manifest["targetIsCategorical"] is True
    data = pq.read_table(io.BytesIO(storage.get_bytes(prefix.join("data.parquet"))))
    test_rows = pq.read_table(io.BytesIO(storage.get_bytes(prefix.join("split.parquet"))))
    labels = data.column("target").to_numpy()[test_rows.column("test_row").to_numpy()]
    assert sorted(labels.tolist()) == [0] * 10 + [1] * 10 + [2] * 10, "stratified: 10 per class"
    stats = {column["name"]: column for column in message["statistics"]}
    assert stats["sepal length (cm)"]["min"] == 4.3
    assert stats["sepal length (cm)"]["max"] == 7.9


def test_breast_cancer_ingests(worker: Worker) -> None:
    result = worker.ingest({"source": {"builtin": {"name": "breast_cancer"}}})
    assert result.exit_code == 0
    assert (result.message["rows"], result.message["columns"]) == (569, 31)


def test_same_data_in_csv_parquet_and_jsonl_gives_one_version(
    worker: Worker, storage: Storage, bucket_root: S3Uri
) -> None:
    versions = set()
    for key, data in (
        ("a/churn.csv", _csv(TABLE)),
        ("b/churn.parquet", _parquet(TABLE)),
        ("c/churn.jsonl", _jsonl(TABLE)),
    ):
        result = worker.ingest(_spec(_put(storage, bucket_root, key, data)))
        assert result.exit_code == 0, result.message
        versions.add(result.message["version"])
    assert len(versions) == 1


def test_a_prefix_of_parts_gives_the_version_of_the_whole(
    worker: Worker, storage: Storage, bucket_root: S3Uri
) -> None:
    whole = worker.ingest(_spec(_put(storage, bucket_root, "whole/churn.csv", _csv(TABLE))))
    _put(storage, bucket_root, "parts/part-0.csv", _csv(TABLE.slice(0, 5)))
    _put(storage, bucket_root, "parts/part-1.csv", _csv(TABLE.slice(5)))
    parts = worker.ingest(_spec(str(bucket_root.join("parts/")) + "/"))
    assert parts.exit_code == 0, parts.message
    assert parts.message["version"] == whole.message["version"]


def test_changed_data_gives_a_new_version_and_keeps_the_old(
    worker: Worker, storage: Storage, bucket_root: S3Uri
) -> None:
    uri = _put(storage, bucket_root, "churn.csv", _csv(TABLE))
    first = worker.ingest(_spec(uri))
    again = worker.ingest(_spec(uri))
    assert again.message["version"] == first.message["version"]
    assert again.message["reused"] is True
    changed = TABLE.set_column(1, "income", pa.array([1.0] * 8))
    _put(storage, bucket_root, "churn.csv", _csv(changed))
    second = worker.ingest(_spec(uri))
    assert second.message["version"] != first.message["version"]
    old = S3Uri.parse(first.message["uri"])
    assert storage.get_json(old.join("manifest.json"))["version"] == first.message["version"]
    old_data = pq.read_table(io.BytesIO(storage.get_bytes(old.join("data.parquet"))))
    assert old_data.column("income").to_pylist() == TABLE.column("income").to_pylist()


def test_split_settings_are_part_of_the_version(
    worker: Worker, storage: Storage, bucket_root: S3Uri
) -> None:
    uri = _put(storage, bucket_root, "churn.csv", _csv(TABLE))
    default = worker.ingest(_spec(uri))
    reseeded = worker.ingest(_spec(uri, split={"seed": 7}))
    assert default.message["version"] != reseeded.message["version"]


@pytest.fixture
def http_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Path]]:
    # Loopback is refused by default (tests/integration/test_http_source.py): allow this server.
    monkeypatch.setenv("MODELYARD_HTTP_ALLOWED_NETWORKS", "127.0.0.1/32")
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", root
    server.shutdown()


def test_http_source_gives_the_same_version_as_s3(
    worker: Worker, storage: Storage, bucket_root: S3Uri, http_root: tuple[str, Path]
) -> None:
    url, root = http_root
    (root / "churn.csv").write_bytes(_csv(TABLE))
    over_http = worker.ingest(
        {"source": {"http": {"url": f"{url}/churn.csv"}}, "target": "churned"}
    )
    over_s3 = worker.ingest(_spec(_put(storage, bucket_root, "churn.csv", _csv(TABLE))))
    assert over_http.exit_code == 0, over_http.message
    assert over_http.message["version"] == over_s3.message["version"]


def test_features_select_columns(worker: Worker, storage: Storage, bucket_root: S3Uri) -> None:
    uri = _put(storage, bucket_root, "churn.csv", _csv(TABLE))
    result = worker.ingest(_spec(uri, features=["age", "plan"]))
    assert result.message["columns"] == 3
    assert [c["name"] for c in result.message["statistics"]] == ["age", "plan", "churned"]


# A catalogue of bad data and the exact error each gets: (id, data, file name, spec extras,
# exit code, reason, fragments of the message).
BAD_DATA = [
    (
        "target-missing",
        _csv(TABLE),
        "d.csv",
        {"target": "label"},
        4,
        "SchemaMismatch",
        ["spec.target", "'label' is not in the data"],
    ),
    (
        "feature-missing",
        _csv(TABLE),
        "d.csv",
        {"features": ["agee"]},
        4,
        "SchemaMismatch",
        ["spec.features", "'agee'"],
    ),
    (
        "schema-column-missing",
        _csv(TABLE),
        "d.csv",
        {"schema": {"columns": [{"name": "tenure", "min": 0}]}},
        4,
        "SchemaMismatch",
        ["spec.schema.columns", "'tenure' is not in the data"],
    ),
    (
        "below-minimum",
        _csv(TABLE),
        "d.csv",
        {"schema": {"columns": [{"name": "age", "min": 30}]}},
        4,
        "ValidationFailed",
        ["column 'age'", "must be ≥ 30", "(2 rows: 4, 8)"],
    ),
    (
        "null-not-allowed",
        _csv(TABLE),
        "d.csv",
        {"schema": {"columns": [{"name": "plan", "nullable": False}]}},
        4,
        "ValidationFailed",
        ["column 'plan'", "must not be null", "(1 row: 4)"],
    ),
    (
        "value-not-allowed",
        _csv(TABLE),
        "d.csv",
        {"schema": {"columns": [{"name": "plan", "allowed": ["basic", "pro"]}]}},
        4,
        "ValidationFailed",
        ["column 'plan'", "must be one of [basic, pro]", "(1 row: 5)"],
    ),
    (
        "declared-type-wrong",
        _csv(TABLE),
        "d.csv",
        {"schema": {"columns": [{"name": "churned", "type": "integer"}]}},
        4,
        "SchemaMismatch",
        ["spec.schema.columns: column 'churned' is declared integer", "'no'"],
    ),
    (
        "type-mismatch",
        _csv(TABLE),
        "d.csv",
        {"schema": {"columns": [{"name": "plan", "type": "float"}]}},
        4,
        "SchemaMismatch",
        ["column 'plan' is declared float", "'basic'"],
    ),
    (
        "type-changes-part-way",
        b"n,churned\n" + b"1,no\n" * 4_000_000 + b"x,yes\n",
        "d.csv",
        {},
        4,
        "SchemaMismatch",
        ["column 'n' changes type part-way", "declare its type"],
    ),
    ("unknown-extension", _csv(TABLE), "d.data", {}, 1, "UnknownFormat", ["spec.format", "d.data"]),
    ("header-only", b"age,churned\n", "d.csv", {}, 4, "EmptyData", ["no rows"]),
    (
        "ragged-csv",
        b"a,churned\n1,yes\n2,no,extra\n",
        "d.csv",
        {},
        4,
        "UnreadableData",
        ["not valid csv", "a row has 3 fields where the header has 2", "2,no,extra"],
    ),
    (
        "not-parquet",
        b"this is not parquet",
        "d.parquet",
        {},
        4,
        "UnreadableData",
        ["not valid parquet"],
    ),
    (
        "label-missing",
        b"a,churned\n1,yes\n2,\n",
        "d.csv",
        {},
        4,
        "ValidationFailed",
        ["spec.target", "empty values"],
    ),
]


@pytest.mark.parametrize(
    ("data", "filename", "extra", "code", "reason", "fragments"),
    [pytest.param(*case[1:], id=case[0]) for case in BAD_DATA],
)
def test_bad_data_is_refused_with_a_named_reason(
    worker: Worker,
    storage: Storage,
    bucket_root: S3Uri,
    data: bytes,
    filename: str,
    extra: dict[str, object],
    code: int,
    reason: str,
    fragments: list[str],
) -> None:
    spec = {**_spec(_put(storage, bucket_root, f"bad/{filename}", data)), **extra}
    result = worker.ingest(spec)
    assert (result.exit_code, result.message["reason"]) == (code, reason), result.message
    for fragment in fragments:
        assert fragment in result.message["message"], result.message["message"]
    assert not list(storage.list(bucket_root.join("datasets/"))), "nothing is published"


def test_missing_object_is_named(worker: Worker, bucket_root: S3Uri) -> None:
    result = worker.ingest(_spec(str(bucket_root.join("nothing.csv"))))
    assert result.message["reason"] == "SourceNotFound"
    assert "nothing.csv does not exist" in result.message["message"]


def test_unreachable_url_is_named(worker: Worker, http_root: tuple[str, Path]) -> None:
    url, _ = http_root
    result = worker.ingest({"source": {"http": {"url": f"{url}/gone.csv"}}, "target": "y"})
    assert result.message["reason"] == "SourceUnreachable"
    assert "gone.csv" in result.message["message"] and "404" in result.message["message"]


def test_invalid_spec_names_the_field(worker: Worker) -> None:
    result = worker.ingest({"source": {"builtin": {"name": "iris"}}, "split": {"testFraction": 2}})
    assert (result.exit_code, result.message["reason"]) == (2, "InvalidSpec")
    assert "split.testFraction" in result.message["message"]


def test_jsonl_reader_is_used_for_jsonl(
    worker: Worker, storage: Storage, bucket_root: S3Uri
) -> None:
    rows = pa_json.read_json(io.BytesIO(_jsonl(TABLE)))
    assert rows.num_rows == 8
    result = worker.ingest(_spec(_put(storage, bucket_root, "x.ndjson", _jsonl(TABLE))))
    assert result.message["format"] == "jsonl"
