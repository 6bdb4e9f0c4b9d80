"""`sql` sources against a real PostgreSQL server (tests/plugins/postgres.py) and real S3.

The connection URI reaches the worker as the operator hands it over, in MODELYARD_SOURCE_SECRET.
The server is on loopback, which sql sources may not reach by default: the `worker` fixture
opens 127.0.0.0/8 as a cluster admin would open the database's network.
"""

from __future__ import annotations

import datetime
import io
import socket
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelyard.api.sources import SOURCE_SECRET_ENV as SECRET_ENV
from modelyard.exitcodes import EXIT_USAGE
from modelyard.storage.client import Storage
from modelyard.storage.uri import S3Uri
from modelyard.workloads.ingest.address_policy import ALLOWED_ENV
from tests.plugins.postgres import PostgresServer
from tests.workers import Worker, WorkerResult, run_worker_process

pytestmark = pytest.mark.integration

MIB = 1 << 20
SECRET = {"name": "warehouse", "key": "uri"}


@pytest.fixture
def worker(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    s3_env: dict[str, str],
    postgres: PostgresServer,
) -> Worker:
    monkeypatch.setenv(ALLOWED_ENV, "127.0.0.0/8")
    monkeypatch.setenv(SECRET_ENV, postgres.uri())
    return Worker(tmp_path, monkeypatch)


@pytest.fixture
def table(postgres: PostgresServer) -> Iterator[str]:
    """A fresh table of eight rows with one column of each common type."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    postgres.run(
        f"CREATE TABLE {name} (id integer PRIMARY KEY, score double precision, plan text, "
        "active boolean, price numeric(10, 2), seen timestamp, label text)",
        f"INSERT INTO {name} VALUES "
        "(1, 0.5, 'basic', true, 9.99, '2024-01-02 03:04:05.123456', 'no'), "
        "(2, 1.25, 'pro', false, 19.50, '2024-02-29 23:59:59', 'yes'), "
        "(3, NULL, NULL, NULL, NULL, NULL, 'no'), "
        "(4, -3.0, 'pro', true, 0.01, '2023-12-31 00:00:00', 'yes'), "
        "(5, 2.0, 'basic', false, 100.00, '2024-06-01 12:00:00', 'no'), "
        "(6, 7.5, 'enterprise', true, 5.00, '2024-06-02 12:00:00', 'yes'), "
        "(7, 0.0, 'basic', true, 1.10, '2024-06-03 12:00:00', 'no'), "
        "(8, 4.5, 'pro', false, 2.20, '2024-06-04 12:00:00', 'yes')",
    )
    yield name
    postgres.run(f"DROP TABLE IF EXISTS {name}")


def _spec(query: str, **sql: Any) -> dict[str, Any]:
    return {
        "source": {"sql": {"query": query, "connectionSecretRef": SECRET, **sql}},
        "target": "label",
    }


def _snapshot(storage: Storage, result: WorkerResult) -> pa.Table:
    prefix = S3Uri.parse(result.message["uri"])
    return pq.read_table(io.BytesIO(storage.get_bytes(prefix.join("data.parquet"))))


def _failed(result: WorkerResult, reason: str, *named: str) -> str:
    assert (result.message["status"], result.message["reason"]) == ("Failed", reason), result
    message: str = result.message["message"]
    for text in named:
        assert text in message, (text, message)
    return message


def test_rows_and_types_arrive_as_the_table_holds_them(
    worker: Worker, storage: Storage, table: str
) -> None:
    result = worker.ingest(_spec(f"SELECT * FROM {table} ORDER BY id"))

    assert result.exit_code == 0, result.message
    assert (result.message["rows"], result.message["columns"]) == (8, 7)
    assert result.message["format"] == "sql"
    data = _snapshot(storage, result)
    assert data.schema == pa.schema(
        {
            "id": pa.int64(),
            "score": pa.float64(),
            "plan": pa.string(),
            "active": pa.bool_(),
            "price": pa.float64(),  # numeric: float, as Parquet decimals are
            "seen": pa.string(),  # timestamp: ISO text, as from every other source
            "label": pa.string(),
        }
    )
    first, null_row = data.slice(0, 1).to_pylist()[0], data.slice(2, 1).to_pylist()[0]
    assert first == {
        "id": 1,
        "score": 0.5,
        "plan": "basic",
        "active": True,
        "price": 9.99,
        "seen": "2024-01-02 03:04:05.123456",
        "label": "no",
    }
    assert null_row == {
        "id": 3,
        "score": None,
        "plan": None,
        "active": None,
        "price": None,
        "seen": None,
        "label": "no",
    }
    assert data.column("id").to_pylist() == list(range(1, 9)), "in the query's order"


def test_the_same_rows_from_a_parquet_file_are_the_same_version(
    worker: Worker, storage: Storage, bucket_root: S3Uri, table: str
) -> None:
    """Same content, same version, whatever the source: the typed columns map as Parquet's do."""
    from_sql = worker.ingest(_spec(f"SELECT * FROM {table} ORDER BY id"))
    rows = [
        (1, 0.5, "basic", True, "9.99", datetime.datetime(2024, 1, 2, 3, 4, 5, 123456), "no"),
        (2, 1.25, "pro", False, "19.50", datetime.datetime(2024, 2, 29, 23, 59, 59), "yes"),
        (3, None, None, None, None, None, "no"),
        (4, -3.0, "pro", True, "0.01", datetime.datetime(2023, 12, 31), "yes"),
        (5, 2.0, "basic", False, "100.00", datetime.datetime(2024, 6, 1, 12), "no"),
        (6, 7.5, "enterprise", True, "5.00", datetime.datetime(2024, 6, 2, 12), "yes"),
        (7, 0.0, "basic", True, "1.10", datetime.datetime(2024, 6, 3, 12), "no"),
        (8, 4.5, "pro", False, "2.20", datetime.datetime(2024, 6, 4, 12), "yes"),
    ]
    names = ["id", "score", "plan", "active", "price", "seen", "label"]
    columns = [list(column) for column in zip(*rows, strict=True)]
    columns[4] = [None if v is None else Decimal(v) for v in columns[4]]
    parquet = pa.table(
        [
            pa.array(columns[0], pa.int32()),
            pa.array(columns[1], pa.float64()),
            pa.array(columns[2], pa.string()),
            pa.array(columns[3], pa.bool_()),
            pa.array(columns[4], pa.decimal128(10, 2)),
            pa.array(columns[5], pa.timestamp("us")),
            pa.array(columns[6], pa.string()),
        ],
        names=names,
    )
    sink = io.BytesIO()
    pq.write_table(parquet, sink)
    uri = bucket_root.join("same.parquet")
    storage.put_bytes(uri, sink.getvalue())

    from_file = worker.ingest({"source": {"s3": {"uri": str(uri)}}, "target": "label"})

    assert (from_sql.exit_code, from_file.exit_code) == (0, 0), (from_sql, from_file)
    assert from_file.message["version"] == from_sql.message["version"]


def test_same_data_same_version_and_a_changed_row_a_new_one(
    worker: Worker, postgres: PostgresServer, table: str
) -> None:
    spec = _spec(f"SELECT * FROM {table} ORDER BY id")
    first = worker.ingest(spec)
    again = worker.ingest(spec)
    postgres.run(f"UPDATE {table} SET plan = 'pro' WHERE id = 7")
    changed = worker.ingest(spec)

    assert (first.exit_code, again.exit_code, changed.exit_code) == (0, 0, 0)
    assert again.message["version"] == first.message["version"]
    assert again.message["reused"] is True
    assert changed.message["version"] != first.message["version"]
    assert changed.message["reused"] is False


@pytest.mark.parametrize(
    ("statement", "refused"),
    [
        ("DELETE FROM {table}", "cannot execute DELETE in a read-only transaction"),
        (
            "INSERT INTO {table} (id, label) VALUES (99, 'no') RETURNING *",
            "cannot execute INSERT in a read-only transaction",
        ),
        (
            "CREATE TABLE {table}_copy AS SELECT * FROM {table}",
            "cannot execute CREATE TABLE AS in a read-only transaction",
        ),
        (
            "WITH gone AS (DELETE FROM {table} RETURNING *) SELECT * FROM gone",
            "in a read-only transaction",
        ),
    ],
    ids=["delete", "insert", "create", "delete-in-cte"],
)
def test_a_write_is_refused_by_the_read_only_transaction(
    worker: Worker, postgres: PostgresServer, table: str, statement: str, refused: str
) -> None:
    result = worker.ingest(_spec(statement.format(table=table)))

    _failed(result, "QueryFailed", "spec.source.sql.query", refused)
    assert result.exit_code == EXIT_USAGE, "not retried: the same query fails the same way"
    assert postgres.query(f"SELECT count(*) FROM {table}") == [(8,)], "the table is intact"
    assert postgres.query(f"SELECT to_regclass('{table}_copy')") == [(None,)]


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("SELEC * FROM {table}", 'syntax error at or near "SELEC"'),
        ("SELECT * FROM missing_table", 'relation "missing_table" does not exist'),
        ("SELECT no_such_column FROM {table}", 'column "no_such_column" does not exist'),
        ("SELECT id, 1 / (id - 5) AS label FROM {table} ORDER BY id", "division by zero"),
    ],
    ids=["syntax", "missing-table", "missing-column", "error-part-way"],
)
def test_a_bad_query_names_the_field_and_says_what_the_database_said(
    worker: Worker, table: str, query: str, said: str
) -> None:
    result = worker.ingest(_spec(query.format(table=table)))

    _failed(result, "QueryFailed", "spec.source.sql.query: ", said)
    assert result.exit_code == EXIT_USAGE


def test_a_table_the_user_may_not_read_is_a_query_failure(
    worker: Worker, postgres: PostgresServer, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    role, password = f"reader_{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    postgres.run(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    monkeypatch.setenv(SECRET_ENV, postgres.uri(role, password))

    result = worker.ingest(_spec(f"SELECT * FROM {table}"))

    _failed(result, "QueryFailed", "spec.source.sql.query", f"permission denied for table {table}")


def test_the_statement_timeout_is_timeout_seconds(worker: Worker) -> None:
    result = worker.ingest(_spec("SELECT pg_sleep(30) AS x, 'no' AS label", timeoutSeconds=1))

    _failed(result, "QueryFailed", "spec.source.sql.query", "statement timeout")


def test_a_wrong_password_is_unreachable_and_never_quoted(
    worker: Worker, postgres: PostgresServer, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = f"Wrong-{uuid.uuid4().hex}"
    monkeypatch.setenv(SECRET_ENV, postgres.uri(password=wrong))

    result = worker.ingest(_spec(f"SELECT * FROM {table}"))

    message = _failed(
        result,
        "SourceUnreachable",
        "spec.source.sql.connectionSecretRef (Secret 'warehouse', key 'uri')",
        "password authentication failed",
    )
    assert wrong not in worker.log.read_text()
    assert postgres.uri(password=wrong) not in message


def test_a_password_given_as_a_parameter_is_never_quoted(
    worker: Worker, postgres: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bare % makes libpq quote the value back in its error.
    secret = f"Tr0ub4dor%zz{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv(
        SECRET_ENV,
        f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/db?password={secret}",
    )

    result = worker.ingest(_spec("SELECT 1 AS label"))

    assert result.exit_code != 0
    assert secret not in worker.log.read_text()


def test_a_closed_port_is_unreachable(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv(SECRET_ENV, f"postgresql://u:p@127.0.0.1:{port}/db")

    result = worker.ingest(_spec("SELECT 1 AS label"))

    _failed(result, "SourceUnreachable", f"cannot connect to 127.0.0.1:{port}")


def test_loopback_is_refused_by_default(
    worker: Worker, postgres: PostgresServer, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ALLOWED_ENV)
    sessions = "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
    before = postgres.query(sessions)

    result = worker.ingest(_spec(f"SELECT * FROM {table}"))

    _failed(
        result,
        "SourceAddressNotAllowed",
        "spec.source.sql.connectionSecretRef",
        "127.0.0.1 is a loopback address",
        ALLOWED_ENV,
    )
    assert result.exit_code == EXIT_USAGE
    assert postgres.password not in worker.log.read_text()
    assert postgres.query(sessions) == before, "refused before connecting"


def test_the_connection_goes_to_the_checked_address_not_a_new_lookup(
    worker: Worker, postgres: PostgresServer, table: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name resolves (here, in the worker only) to the allowed address; libpq is handed that
    address and never resolves the name itself, which real DNS would not know."""
    name = "warehouse.modelyard.test"
    real = socket.getaddrinfo

    def getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[tuple[Any, ...]]:
        if host != name:
            return real(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (postgres.host, port))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setenv(SECRET_ENV, postgres.uri(host=name))

    result = worker.ingest(_spec(f"SELECT * FROM {table} ORDER BY id"))

    assert (result.exit_code, result.message["rows"]) == (0, 8), result.message


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("", "the key is empty"),
        ("host=db user=u password=p", "not a libpq connection URI"),
        ("postgresql://u:p@a:5432,b:5432/db", "names several hosts"),
        ("postgresql://u:p@db/x?host=/var/run/postgresql", "sets host as a parameter"),
        ("postgresql:///db", "names no host"),
        ("postgresql://u:p@ss@db.internal:5432/db", "more than one @"),
    ],
    ids=["empty", "key-value", "two-hosts", "host-parameter", "unix-socket", "two-at-signs"],
)
def test_a_secret_that_is_not_one_host_uri_is_refused_by_field(
    worker: Worker, monkeypatch: pytest.MonkeyPatch, secret: str, problem: str
) -> None:
    monkeypatch.setenv(SECRET_ENV, secret)

    result = worker.ingest(_spec("SELECT 1 AS label"))

    message = _failed(result, "SourceSecretInvalid", "spec.source.sql.connectionSecretRef", problem)
    assert result.exit_code == EXIT_USAGE
    assert "password=p" not in message and ":p@" not in message and "ss@db" not in message


def test_a_column_without_a_tabular_form_is_named_with_the_cast_to_make(worker: Worker) -> None:
    result = worker.ingest(_spec("SELECT ARRAY[1, 2] AS tags, 'no' AS label"))

    _failed(result, "UnreadableData", "spec.source.sql.query", "'tags'", "tags::text")


# --- memory -------------------------------------------------------------------------------------

LARGE_ROWS = 5_000_000  # ~870 MiB as a table, ~780 MiB as Arrow
# The worker's own floor (interpreter, pyarrow, boto3, the ADBC driver) is ~165 MiB; the batches
# in flight and the pipeline's Parquet row groups add ~100 MiB whatever the table's size
# (measured 250-310 MiB for 3 and 6 million rows). A reader that held the result whole would
# pass the bound twice over.
LARGE_MEMORY_BOUND = 400 * MIB


@pytest.fixture
def large_table(postgres: PostgresServer) -> Iterator[str]:
    name = f"large_{uuid.uuid4().hex[:8]}"
    postgres.run(
        f"CREATE UNLOGGED TABLE {name} AS SELECT i AS id, random() AS x, i * 0.5 AS y, "
        "repeat(chr(65 + i % 26), 120) AS note, (i % 3)::text AS label "
        f"FROM generate_series(1, {LARGE_ROWS}) AS i"
    )
    yield name
    postgres.run(f"DROP TABLE {name}")


def test_a_table_larger_than_the_memory_bound_streams_through(
    tmp_path: Path,
    postgres: PostgresServer,
    s3_env: dict[str, str],
    large_table: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(ALLOWED_ENV, "127.0.0.0/8")
    monkeypatch.setenv(SECRET_ENV, postgres.uri())
    [(table_bytes,)] = postgres.query(f"SELECT pg_table_size('{large_table}')")
    assert table_bytes > 2 * LARGE_MEMORY_BOUND

    result = run_worker_process(
        tmp_path,
        "ingest",
        _spec(f"SELECT * FROM {large_table} ORDER BY id"),
        "--name",
        "large",
        "--namespace",
        "ml",
    )

    assert result.exit_code == 0, (result.message, result.stderr[-2000:])
    assert result.message["rows"] == LARGE_ROWS
    assert result.peak_rss_bytes < LARGE_MEMORY_BOUND, (
        f"peak RSS {result.peak_rss_bytes / MIB:.0f} MiB for a {table_bytes / MIB:.0f} MiB table"
    )
