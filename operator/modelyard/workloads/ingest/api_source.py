"""Reads a Dataset's `api` source: JSON pages from an HTTP API, one row per record.

Every page goes through the same SSRF-safe fetcher as HTTP sources (http_fetch.open_url under
the operator's AddressPolicy). Pages are read one at a time and their records spooled to a
temporary JSON Lines file on disk, so memory holds one page, never all of them. The spool also
settles the table's shape before the first row is handed on: the columns are the union of every
record's keys (in order of first appearance; a record without one has null there), and each
column's type is the one its values share across all pages (integers and floats together make
float). A value of another type in a column fails the ingest naming the column, unless
spec.schema.columns declares its type: a declared column is read as text and converted to that
type, as CSV columns are.

Records are flattened: a nested object's fields become columns named with dots
({"user": {"id": 1}} → `user.id`), and an array becomes its compact JSON text, since a column
holds one value per row.

Request headers (credentials) come from the Secret named by headersSecretRef, which reaches the
pod as MODELYARD_SOURCE_SECRET; they are sent to the first page's origin (scheme, host, port)
only, and neither their values nor the secret's lines appear in any message.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import pyarrow as pa
import pyarrow.json as pa_json

from modelyard.api.sources import SOURCE_SECRET_ENV, ApiSource, PaginationKind
from modelyard.reasons import Reason
from modelyard.workloads.common.tabular import ARROW_TYPES, LogicalType
from modelyard.workloads.common.termination import EXIT_INVALID_DATA, EXIT_USAGE, WorkloadError
from modelyard.workloads.ingest.address_policy import AddressPolicy, workload_policy
from modelyard.workloads.ingest.http_fetch import FetchFailed, FetchRefused, open_url

# A page is parsed whole: this bounds the memory one page can take (its objects take several
# times its bytes).
MAX_PAGE_BYTES = 32 << 20
# 429 and 503 with Retry-After: the same page is asked again at most this often, each wait at
# most this long; a server that asks for longer fails the ingest (the Job retries it later).
MAX_RETRIES = 3
MAX_RETRY_SECONDS = 60.0
BLOCK_BYTES = 1 << 20
_INT64 = range(-(2**63), 2**63)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 9110 token: what a header name may be.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Set by the fetcher itself; a secret that sets them would break or redirect the request.
_RESERVED_HEADERS = frozenset({"host", "connection", "content-length", "transfer-encoding"})
_SECRET_FIELD = "spec.source.api.headersSecretRef"
_URL_FIELD = "spec.source.api.url"


def read_api(
    source: ApiSource,
    declared: frozenset[str] = frozenset(),
    environ: Mapping[str, str] = os.environ,
    max_page_bytes: int = MAX_PAGE_BYTES,
) -> Iterator[pa.RecordBatch]:
    """The records of every page as record batches; columns in `declared` come as text."""
    policy = workload_policy(environ)
    headers: dict[str, str] = {}
    if source.headers_secret_ref is not None:
        if SOURCE_SECRET_ENV not in environ:
            raise WorkloadError(
                Reason.InvalidArguments,
                f"{_SECRET_FIELD}: ${SOURCE_SECRET_ENV} is not set in the ingest container",
                EXIT_USAGE,
            )
        headers = parse_headers(environ[SOURCE_SECRET_ENV])
    with tempfile.TemporaryDirectory(prefix="modelyard-api-") as work:
        spool = Path(work) / "records.jsonl"
        with spool.open("w", encoding="utf-8") as out:
            columns = _spool_pages(source, declared, policy, headers, max_page_bytes, out)
        if not columns.kinds:
            return
        schema = pa.schema(
            [(name, ARROW_TYPES[kind or "string"]) for name, kind in columns.kinds.items()]
        )
        try:
            with pa_json.open_json(
                spool,
                read_options=pa_json.ReadOptions(block_size=max(BLOCK_BYTES, columns.longest + 1)),
                parse_options=pa_json.ParseOptions(
                    explicit_schema=schema, unexpected_field_behavior="error"
                ),
            ) as reader:
                yield from reader
        except pa.ArrowInvalid as error:
            # Python's json reads what Arrow's refuses (a lone UTF-16 surrogate in a string).
            raise WorkloadError(
                Reason.UnreadableData,
                f"spec.source.api: a record cannot be stored: {str(error).splitlines()[0]}",
                EXIT_INVALID_DATA,
            ) from None


def parse_headers(text: str) -> dict[str, str]:
    """`Name: value` lines (blank lines skipped) as headers; errors name the line, not its text."""
    headers: dict[str, str] = {}
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        name, colon, value = line.partition(":")
        name, value = name.strip(), value.strip()
        problem = None
        if not colon or not _TOKEN.match(name):
            problem = "is not `Name: value` (a header name is letters, digits and -)"
        elif any((ord(c) < 0x20 and c != "\t") or ord(c) == 0x7F for c in value):
            # CR or LF inside a value would start a new header or end the request's headers.
            problem = "holds a control character (a CR, LF or NUL) in its value"
        elif not value:
            problem = "has an empty value"
        elif name.lower() in _RESERVED_HEADERS:
            problem = f"sets {name}, which ingest sets itself"
        elif name.lower() in (existing.lower() for existing in headers):
            problem = f"repeats the header {name}"
        if problem is not None:
            raise WorkloadError(
                Reason.SourceSecretInvalid,
                f"{_SECRET_FIELD}: line {number} of the secret {problem}",
                EXIT_USAGE,
            )
        headers[name] = value
    if not headers:
        raise WorkloadError(
            Reason.SourceSecretInvalid,
            f"{_SECRET_FIELD}: the secret holds no header; expected `Name: value` lines",
            EXIT_USAGE,
        )
    return headers


MISSING = object()


def lookup(document: Any, path: str) -> Any:
    """The value at a dotted path (`data.items`) in a JSON document, or MISSING."""
    value = document
    for key in path.split("."):
        if not isinstance(value, dict) or key not in value:
            return MISSING
        value = value[key]
    return value


# One link-value of a Link header: <target> and its parameters, quoted ones with commas inside.
_LINK = re.compile(r'<([^>]*)>((?:\s*;\s*[^;,=\s]+\s*(?:=\s*(?:"[^"]*"|[^;,\s]*))?)*)')
_REL = re.compile(r';\s*rel\s*=\s*(?:"([^"]*)"|([^;,\s]+))', re.IGNORECASE)


def next_link(link_headers: list[str]) -> str | None:
    """The target of the first rel="next" link in Link headers (RFC 8288), as written."""
    for header in link_headers:
        for link in _LINK.finditer(header):
            for rel in _REL.finditer(link.group(2)):
                # rel can hold several relation types, space-separated: rel="next last".
                if "next" in (rel.group(1) or rel.group(2)).lower().split():
                    return link.group(1).strip()
    return None


def flatten(record: dict[str, Any], page: int, prefix: str = "") -> dict[str, Any]:
    """A record as one row: nested objects' fields under dotted names, arrays as JSON text."""
    row: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            nested = flatten(value, page, f"{name}.")
        elif isinstance(value, list):
            nested = {name: json.dumps(value, separators=(",", ":"), ensure_ascii=False)}
        else:
            nested = {name: value}
        for column, cell in nested.items():
            if column in row:
                raise WorkloadError(
                    Reason.UnreadableData,
                    f"{_URL_FIELD}: page {page}: a record has column {column!r} twice "
                    "(a field with a dot in its name and a nested object that flatten alike)",
                    EXIT_INVALID_DATA,
                )
            row[column] = cell
    return row


@dataclass
class _Columns:
    """Every column seen so far, in order of first appearance, with the type its values share."""

    declared: frozenset[str]
    kinds: dict[str, LogicalType | None] = field(default_factory=dict)
    # The page where each column's type was first seen, for the message of a conflict.
    since: dict[str, int] = field(default_factory=dict)
    # Bytes of the longest spooled record: Arrow parses no record longer than its block.
    longest: int = 0

    def add(self, row: dict[str, Any], page: int) -> dict[str, Any]:
        """The row as spooled (declared columns as text); its types merged into the columns'."""
        for name, value in row.items():
            if name in self.declared:
                if value is not None and not isinstance(value, str):
                    row[name] = json.dumps(value)
                kind: LogicalType | None = "string"
            else:
                kind = _kind(name, value, page)
            known = self.kinds.get(name)
            if name not in self.kinds or known is None:
                self.kinds[name] = kind
                if kind is not None:
                    self.since[name] = page
            elif kind is not None and kind != known:
                if {kind, known} == {"integer", "float"}:
                    self.kinds[name] = "float"
                else:
                    raise WorkloadError(
                        Reason.SchemaMismatch,
                        f"spec.source.api: column {name!r} holds {known} values from page "
                        f"{self.since[name]} and a {kind} on page {page}; declare its type in "
                        "spec.schema.columns",
                        EXIT_INVALID_DATA,
                    )
        return row


def _kind(name: str, value: Any, page: int) -> LogicalType | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        if value not in _INT64:
            raise WorkloadError(
                Reason.UnreadableData,
                f"{_URL_FIELD}: page {page}: column {name!r} holds an integer outside 64 bits; "
                "declare it string in spec.schema.columns",
                EXIT_INVALID_DATA,
            )
        return "integer"
    if isinstance(value, float):
        return "float"
    return "string"


def _spool_pages(
    source: ApiSource,
    declared: frozenset[str],
    policy: AddressPolicy,
    headers: dict[str, str],
    max_page_bytes: int,
    out: IO[str],
) -> _Columns:
    pagination = source.pagination
    origin = _origin(source.url)
    columns = _Columns(declared)
    url: str | None = source.url
    seen = {_without_fragment(source.url)}
    number = 0
    while url is not None:
        number += 1
        if number > pagination.max_pages:
            raise WorkloadError(
                Reason.TooManyPages,
                f"spec.source.api.pagination.maxPages: page {pagination.max_pages} links to "
                "another; raise maxPages if the API is that large",
                EXIT_USAGE,
            )
        # Credentials go to the first page's origin only, not to a next link elsewhere.
        page_headers = headers if _origin(url) == origin else {}
        body, links = _fetch(url, number, page_headers, policy, max_page_bytes)
        page = _parse(body, url, number)
        for record in _records(page, source.records, number):
            line = json.dumps(columns.add(flatten(record, number), number))
            columns.longest = max(columns.longest, len(line.encode()))
            out.write(line)
            out.write("\n")
        url = _next_url(source, page, links, url, number)
        if url is None:
            break
        key = _without_fragment(url)
        if key in seen:
            what = "cursor" if pagination.kind == PaginationKind.CURSOR else "next link"
            raise WorkloadError(
                Reason.PaginationLoop,
                f"spec.source.api.pagination: the {what} of page {number} leads to a page already "
                "read; the API's pagination loops",
                EXIT_INVALID_DATA,
            )
        seen.add(key)
    return columns


def _fetch(
    url: str, number: int, headers: dict[str, str], policy: AddressPolicy, max_page_bytes: int
) -> tuple[bytes, list[str]]:
    """The page's body and Link headers; 429 and 503 with Retry-After are retried."""
    where = _where(url, number)
    for attempt in range(MAX_RETRIES + 1):
        try:
            response = open_url(url, policy, headers=headers)
        except FetchRefused as error:
            raise WorkloadError(
                Reason.SourceAddressNotAllowed, f"{where}: {error}", EXIT_USAGE
            ) from None
        except FetchFailed as error:
            if error.status in (401, 403):
                raise WorkloadError(
                    Reason.SourceAccessDenied,
                    f"{where}: {error}; check the headers in {_SECRET_FIELD}",
                    EXIT_USAGE,
                ) from None
            delay = retry_delay(error)
            if delay is None or attempt == MAX_RETRIES:
                retried = f" (asked {attempt + 1} times)" if attempt else ""
                raise WorkloadError(
                    Reason.SourceUnreachable, f"{where}: {error}{retried}"
                ) from None
            time.sleep(delay)
            continue
        except (http.client.HTTPException, OSError) as error:
            raise _unreachable(where, error) from None
        with response:
            try:
                length = int(response.getheader("Content-Length") or 0)
                body = b"" if length > max_page_bytes else response.read(max_page_bytes + 1)
            except (http.client.HTTPException, OSError, ValueError) as error:
                raise _unreachable(where, error) from None
            if length > max_page_bytes or len(body) > max_page_bytes:
                raise WorkloadError(
                    Reason.SourceTooLarge,
                    f"{where}: the page is larger than {max_page_bytes >> 20} MiB, the most one "
                    "page may hold; ask the API for smaller pages",
                    EXIT_INVALID_DATA,
                )
            return body, response.headers.get_all("Link") or []
    raise AssertionError("unreachable: the last attempt returns or raises")


def retry_delay(error: FetchFailed) -> float | None:
    """Seconds to wait before asking again, when the server said when (and soon enough)."""
    if error.status not in (429, 503) or not error.retry_after:
        return None
    text = error.retry_after.strip()
    if text.isdigit():
        delay = float(text)
    else:
        try:
            when = email.utils.parsedate_to_datetime(text)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        delay = max(0.0, (when - datetime.now(UTC)).total_seconds())
    return delay if delay <= MAX_RETRY_SECONDS else None


def _unreachable(where: str, error: Exception) -> WorkloadError:
    if isinstance(error, http.client.HTTPException):
        # Their text can quote what the server sent (a status line, a header): name them only.
        detail = f"the server's answer is not valid HTTP ({type(error).__name__})"
    else:
        detail = str(error)
    return WorkloadError(Reason.SourceUnreachable, f"{where}: {detail}")


def _parse(body: bytes, url: str, number: int) -> Any:
    try:
        return json.loads(body, parse_constant=_not_json)
    except (ValueError, RecursionError) as error:
        # json's message gives a position only, never the text around it.
        detail = str(error).splitlines()[0] if isinstance(error, ValueError) else "nested too deep"
        raise WorkloadError(
            Reason.UnreadableData,
            f"{_where(url, number)}: the page is not JSON: {detail}",
            EXIT_INVALID_DATA,
        ) from None


def _not_json(constant: str) -> Any:
    # Python reads NaN and Infinity, which JSON does not have.
    raise ValueError(f"{constant} is not a JSON value")


def _records(page: Any, path: str | None, number: int) -> list[dict[str, Any]]:
    records = page if path is None else lookup(page, path)
    where = f"spec.source.api.records: page {number}"
    if records is None:
        return []
    if records is MISSING:
        raise WorkloadError(Reason.UnreadableData, f"{where} has no {path!r}", EXIT_INVALID_DATA)
    if not isinstance(records, list):
        raise WorkloadError(
            Reason.UnreadableData,
            f"{where}: {path or 'the page'} is not an array of records",
            EXIT_INVALID_DATA,
        )
    for index, record in enumerate(records, start=1):
        if not isinstance(record, dict):
            raise WorkloadError(
                Reason.UnreadableData,
                f"{where}: record {index} is not a JSON object",
                EXIT_INVALID_DATA,
            )
    return records


def _next_url(source: ApiSource, page: Any, links: list[str], url: str, number: int) -> str | None:
    pagination = source.pagination
    if pagination.kind == PaginationKind.NONE:
        return None
    if pagination.kind == PaginationKind.NEXT_LINK:
        if pagination.next_field is None:
            target = next_link(links)
        else:
            target = _text_at(page, pagination.next_field, "nextField", number)
        # Relative links are resolved against the URL asked for (a redirect's target is not
        # known here; docs/sources-api.md says so).
        return urljoin(url, target) if target else None
    assert pagination.cursor_field is not None and pagination.cursor_param is not None
    cursor = _text_at(page, pagination.cursor_field, "cursorField", number)
    if not cursor:
        return None
    parts = urlsplit(source.url)
    query = [(k, v) for k, v in parse_qsl(parts.query) if k != pagination.cursor_param]
    query.append((pagination.cursor_param, cursor))
    return urlunsplit(parts._replace(query=urlencode(query)))


def _text_at(page: Any, path: str, name: str, number: int) -> str | None:
    value = lookup(page, path)
    if value is MISSING or value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise WorkloadError(
            Reason.UnreadableData,
            f"spec.source.api.pagination.{name}: page {number} holds a {type(value).__name__} "
            f"at {path!r}, not a string",
            EXIT_INVALID_DATA,
        )
    return value if isinstance(value, str) else json.dumps(value)


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme)
    except ValueError:
        port = None
    return (parts.scheme, (parts.hostname or "").lower(), port)


def _without_fragment(url: str) -> str:
    return url.split("#", 1)[0]


def _where(url: str, number: int) -> str:
    """The page in a message: its number and URL without the query, which can hold tokens."""
    parts = urlsplit(url)
    return f"{_URL_FIELD}: page {number} ({urlunsplit(parts._replace(query='', fragment=''))})"
