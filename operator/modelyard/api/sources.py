"""Dataset sources that need credentials: a SQL query against a database, a paginated JSON API.

Their credentials stay in a Secret of the Dataset's namespace, named here and handed to the
ingest container by Secret key reference, as the environment variable MODELYARD_SOURCE_SECRET
(never copied into the Dataset, its status or the operator's logs).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints

from modelyard.api.base import ApiModel, Rule
from modelyard.api.common import ObjectName

# The ingest container's environment variable holding the referenced Secret key's value: set by
# the operator (resources/jobs.py), read by the sql and api readers.
SOURCE_SECRET_ENV = "MODELYARD_SOURCE_SECRET"
SecretKey = Annotated[
    str, StringConstraints(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")
]
# A dotted path into a JSON document: `data.items`, `meta.next_cursor`.
JsonPath = Annotated[
    str,
    StringConstraints(
        min_length=1, max_length=256, pattern=r"^[A-Za-z0-9_$@-]+(\.[A-Za-z0-9_$@-]+)*$"
    ),
]


class SecretKeyReference(ApiModel):
    """One key of a Secret in the Dataset's namespace."""

    name: ObjectName = Field(description="Name of the Secret.")
    key: SecretKey = Field(description="Key within the Secret.")


class SqlDriver(StrEnum):
    POSTGRESQL = "postgresql"


class SqlSource(ApiModel):
    """The rows of one read-only query, streamed from the database in bounded memory."""

    driver: SqlDriver = Field(default=SqlDriver.POSTGRESQL, description="Database: postgresql.")
    query: str = Field(
        min_length=1,
        max_length=65536,
        description="One SELECT statement. It runs in a read-only transaction; the rows come "
        "back in the order the query gives, so add ORDER BY for the same version from the "
        "same data.",
    )
    connection_secret_ref: SecretKeyReference = Field(
        description="Secret key holding a libpq connection URI, "
        "postgresql://user:password@host:5432/database?sslmode=require. The database host must "
        "be reachable under the operator's source address policy."
    )
    timeout_seconds: int = Field(
        default=3600, ge=1, le=86400, description="Longest the query may run (statement_timeout)."
    )


class PaginationKind(StrEnum):
    NONE = "none"
    NEXT_LINK = "nextLink"
    CURSOR = "cursor"


class Pagination(ApiModel):
    """How one page leads to the next; the last page is the one without a next link or cursor."""

    rules = (
        Rule(
            # has(): the API server checks the rule on the field's default ({}) too.
            cel="!has(self.kind) || self.kind != 'cursor'"
            " || (has(self.cursorField) && has(self.cursorParam))",
            message="cursor pagination needs cursorField and cursorParam",
            check=lambda p: (
                p.kind != PaginationKind.CURSOR
                or (p.cursor_field is not None and p.cursor_param is not None)
            ),
        ),
    )

    kind: PaginationKind = Field(
        default=PaginationKind.NONE,
        description="none: one page. nextLink: the next page's URL is in nextField of the body "
        "or, when nextField is left out, in the Link header (rel=next). cursor: the value at "
        "cursorField is sent back as the query parameter cursorParam.",
    )
    next_field: JsonPath | None = Field(
        default=None, description="Where the body holds the next page's URL (nextLink)."
    )
    cursor_field: JsonPath | None = Field(
        default=None, description="Where the body holds the next cursor (cursor)."
    )
    cursor_param: Annotated[str, StringConstraints(min_length=1, max_length=128)] | None = Field(
        default=None, description="Query parameter that carries the cursor (cursor)."
    )
    max_pages: int = Field(
        default=10000, ge=1, le=1000000, description="Most pages read; more fails the ingest."
    )


class ApiSource(ApiModel):
    """Records from a JSON API (REST), page by page; each record is one row."""

    url: str = Field(
        max_length=2048, pattern=r"^https?://", description="HTTP(S) URL of the first page."
    )
    records: JsonPath | None = Field(
        default=None,
        description="Where each page's array of records is, e.g. data.items; the page itself "
        "when left out.",
    )
    headers_secret_ref: SecretKeyReference | None = Field(
        default=None,
        description="Secret key holding request headers, one `Name: value` per line "
        "(Authorization: Bearer …); sent to the first page's host only, never after a redirect "
        "or a next link to another host.",
    )
    pagination: Pagination = Field(
        default_factory=Pagination,
        description="How to find the next page.",
        json_schema_extra={"default": {}},
    )
