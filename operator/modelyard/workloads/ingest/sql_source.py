"""Reads a `sql` source: the rows of one read-only PostgreSQL query, as Arrow record batches.

Why ADBC (adbc_driver_postgresql): it runs the query as `COPY (query) TO STDOUT (FORMAT
binary)` and decodes that stream straight into Arrow columns in C++, a batch at a time. A
DB-API driver would build a Python object per value and the rows would be turned into columns
in Python; here no row ever passes through Python, and BATCH_BYTES bounds each batch, so memory
stays bounded whatever the table's size (measured in docs/sources-sql.md).

The connection URI comes from the Secret key the operator hands over as MODELYARD_SOURCE_SECRET;
neither it nor the password reaches a message. The host is resolved once, every address it
resolves to is checked against the source address policy (address_policy.py), and libpq
connects to a checked address (`hostaddr`) while `host` still names the server for TLS: a DNS
answer that changes between check and connection cannot move it elsewhere.

The query runs in a READ ONLY transaction with statement_timeout = timeoutSeconds, so a write
is refused by the database itself, whatever the user the URI logs in as may do.
"""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import adbc_driver_postgresql
import adbc_driver_postgresql.dbapi as pg
import pyarrow as pa
import pyarrow.compute as pc

from modelyard.api.sources import SOURCE_SECRET_ENV, SqlSource
from modelyard.reasons import Reason
from modelyard.workloads.common.termination import EXIT_INVALID_DATA, EXIT_USAGE, WorkloadError
from modelyard.workloads.ingest.address_policy import ALLOWED_ENV, AddressPolicy, workload_policy

SECRET_FIELD = "spec.source.sql.connectionSecretRef"
QUERY_FIELD = "spec.source.sql.query"
# Bytes of COPY data per Arrow batch. With the batches the ingest pipeline holds ahead (see
# prefetch.py), a few tens of MiB in flight at most.
BATCH_BYTES = 4 << 20
DEFAULT_PORT = 5432
CONNECT_TIMEOUT_SECONDS = 30
# Parameters that would send libpq somewhere the address check did not see: another host, a
# unix socket, a service file's host.
_ROUTING_PARAMETERS = frozenset({"host", "hostaddr", "service"})
# SQLSTATE classes of a database that is unavailable rather than of a query that is wrong:
# connection exception, transaction rollback (serialization), insufficient resources, operator
# intervention (shutdown), system error. Worth a retry.
_TRANSIENT_CLASSES = frozenset({"08", "40", "53", "57", "58", "XX"})
_CANCELLED = "57014"  # query_canceled: statement_timeout reached
_DATABASE_ERROR = re.compile(r"(?:ERROR|FATAL):\s+(.*)")


def read_sql(source: SqlSource) -> Iterator[pa.RecordBatch]:
    """The query's rows, batch by batch, in the order the query gives them."""
    secret = os.environ.get(SOURCE_SECRET_ENV, "").strip()
    ref = source.connection_secret_ref
    named = f"{SECRET_FIELD} (Secret {ref.name!r}, key {ref.key!r})"
    if not secret:
        raise WorkloadError(
            Reason.SourceSecretInvalid,
            f"{named}: the key is empty; it must hold a libpq connection URI, "
            "postgresql://user:password@host:5432/database",
            EXIT_USAGE,
        )
    target = _Target.parse(secret, named)
    policy = workload_policy(os.environ)
    addresses = _checked_addresses(target, policy, named)
    connection = _connect(secret, target, addresses, named)
    try:
        with connection.cursor() as cursor:
            yield from _run(cursor, source, target)
    finally:
        connection.close()  # the transaction is rolled back: nothing was to be kept


class _Target:
    """The one host a connection URI names, and the secrets to keep out of messages."""

    def __init__(self, host: str, port: int, hidden: tuple[str, ...]) -> None:
        self.host = host
        self.port = port
        self.hidden = hidden

    @classmethod
    def parse(cls, uri: str, named: str) -> _Target:
        def invalid(problem: str) -> WorkloadError:
            return WorkloadError(Reason.SourceSecretInvalid, f"{named}: {problem}", EXIT_USAGE)

        parts = urlsplit(uri)
        if parts.scheme not in ("postgresql", "postgres"):
            raise invalid(
                "not a libpq connection URI; expected postgresql://user:password@host:5432/db"
            )
        if parts.netloc.count("@") > 1:
            # libpq splits user info at the first @, Python at the last: a password's tail
            # would become the host, and could appear in a TLS error.
            raise invalid("holds more than one @; percent-encode an @ in the password as %40")
        if "," in parts.netloc.rpartition("@")[2]:
            raise invalid("names several hosts; name one (a load balancer or the primary)")
        routed = _ROUTING_PARAMETERS & {key for key, _ in parse_qsl(parts.query)}
        if routed:
            raise invalid(
                f"sets {', '.join(sorted(routed))} as a parameter; name the host in the URI "
                "itself (postgresql://user:password@host:5432/db)"
            )
        if not parts.hostname:
            raise invalid("names no host (a unix socket cannot be reached from the ingest pod)")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise invalid("the port is not a number from 0 to 65535") from None
        # A password may also come as a parameter, which libpq quotes back when it is
        # malformed (a bare % in it).
        passwords = [parts.password or ""]
        passwords += [value for key, value in parse_qsl(parts.query) if key == "password"]
        passwords += re.findall(r"(?:^|&)password=([^&]*)", parts.query)
        hidden = tuple(text for text in (uri, *passwords, *(unquote(p) for p in passwords)) if text)
        return cls(unquote(parts.hostname), port, hidden)

    def scrub(self, text: str) -> str:
        for secret in self.hidden:
            text = text.replace(secret, "***")
        return text


def _checked_addresses(target: _Target, policy: AddressPolicy, named: str) -> list[str]:
    try:
        resolved = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except OSError as error:
        raise WorkloadError(
            Reason.SourceUnreachable, f"{named}: cannot resolve host {target.host}: {error}"
        ) from None
    addresses = list(dict.fromkeys(str(sockaddr[0]) for *_, sockaddr in resolved))
    # Every address, not just the first: the connection may fall back to any of them.
    for address in addresses:
        refusal = policy.refusal(ipaddress.ip_address(address))
        if refusal is not None:
            host = target.host if target.host == address else f"{target.host} ({address})"
            raise WorkloadError(
                Reason.SourceAddressNotAllowed,
                f"{named}: the database host {host} is {refusal}; sql sources may not reach "
                "it unless the cluster admin allows its network (Helm value "
                f"workloads.http.allowedNetworks, {ALLOWED_ENV})",
                EXIT_USAGE,
            )
    return addresses


def _connect(uri: str, target: _Target, addresses: list[str], named: str) -> Any:
    """A connection to the first checked address that answers, in a transaction (autocommit
    off: ADBC begins one)."""
    parts = urlsplit(uri)
    given = {key for key, _ in parse_qsl(parts.query)}
    failure = ""
    for address in addresses:
        extra = {"hostaddr": address}
        if "connect_timeout" not in given:
            extra["connect_timeout"] = str(CONNECT_TIMEOUT_SECONDS)
        query = "&".join(item for item in (parts.query, urlencode(extra)) if item)
        try:
            return pg.connect(urlunsplit(parts._replace(query=query)), autocommit=False)
        except pg.Error as error:
            failure = _database_text(str(error))
    raise WorkloadError(
        Reason.SourceUnreachable,
        f"{named}: cannot connect to {target.host}:{target.port}: {target.scrub(failure)}",
    )


def _run(cursor: Any, source: SqlSource, target: _Target) -> Iterator[pa.RecordBatch]:
    try:
        cursor.execute("SET TRANSACTION READ ONLY")
        cursor.execute(f"SET LOCAL statement_timeout = {source.timeout_seconds * 1000}")
        cursor.adbc_statement.set_options(
            **{adbc_driver_postgresql.StatementOptions.BATCH_SIZE_HINT_BYTES.value: BATCH_BYTES}
        )
        cursor.execute(source.query)
        reader = cursor.fetch_record_batch()
    except pg.Error as error:
        raise _query_error(str(error), error.sqlstate, target) from None
    try:
        for batch in reader:
            yield _tabular(batch)
    except (pg.Error, OSError, pa.ArrowException) as error:
        # Errors part-way through the rows come from the Arrow stream, without a SQLSTATE.
        raise _query_error(str(error), getattr(error, "sqlstate", None), target) from None


def _query_error(text: str, sqlstate: str | None, target: _Target) -> WorkloadError:
    message = target.scrub(_database_text(text))
    if sqlstate == _CANCELLED or "canceling statement" in message:
        # A timeout may pass on a less busy database: retried within backoffLimit.
        return WorkloadError(Reason.QueryFailed, f"{QUERY_FIELD}: {message}")
    if (sqlstate and sqlstate[:2] in _TRANSIENT_CLASSES) or "ERROR:" not in text:
        # The database went away or gave up (no ERROR from it): not the query's fault.
        return WorkloadError(
            Reason.SourceUnreachable, f"{SECRET_FIELD}: the database failed: {message}"
        )
    return WorkloadError(Reason.QueryFailed, f"{QUERY_FIELD}: {message}", EXIT_USAGE)


def _database_text(text: str) -> str:
    """The database's own message (first line), without the driver's wrapping."""
    found = _DATABASE_ERROR.search(text)
    line = found.group(1) if found else text.strip().splitlines()[0] if text.strip() else ""
    return line.strip().rstrip(".") or "no message"


def _tabular(batch: pa.RecordBatch) -> pa.RecordBatch:
    """PostgreSQL types the ingest pipeline has no mapping for, in a form it has.

    numeric arrives as its text (an opaque extension type): it becomes float64, as decimals do
    from Parquet. json/jsonb and other types ADBC passes as text stay text. Dates and
    timestamps stay Arrow temporal types, which ingest turns into ISO text like any other
    source's. Arrays, composites, intervals and uuid have no tabular form: cast them in the
    query.
    """
    columns = []
    for field, column in zip(batch.schema, batch.columns, strict=True):
        kind = field.type
        if isinstance(kind, pa.OpaqueType) and kind.type_name == "numeric":
            column = pc.cast(column.storage, pa.float64())
        elif isinstance(kind, pa.BaseExtensionType) and pa.types.is_string(kind.storage_type):
            column = column.storage
        elif (
            isinstance(kind, pa.BaseExtensionType)
            or pa.types.is_nested(kind)
            or pa.types.is_interval(kind)
        ):
            type_name = field.metadata.get(b"POSTGRESQL:type", str(kind).encode()).decode()
            raise WorkloadError(
                Reason.UnreadableData,
                f"{QUERY_FIELD}: column {field.name!r} is {type_name}, which has no tabular "
                f"form; cast it in the query, e.g. {field.name}::text",
                EXIT_INVALID_DATA,
            )
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)
