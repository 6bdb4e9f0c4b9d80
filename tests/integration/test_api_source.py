"""`api` sources against a real paginated JSON API on loopback, ingested into the real S3 server.

The API serves the same four records three ways (a next link in the body, a Link header, a
cursor) and wants a bearer token; other servers on other ports stand for other origins, which
must never see the token.
"""

from __future__ import annotations

import http.server
import io
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from modelyard.api.sources import SOURCE_SECRET_ENV as SECRET_ENV
from modelyard.api.sources import ApiSource
from modelyard.storage.client import Storage
from modelyard.storage.uri import S3Uri
from modelyard.workloads.common.termination import WorkloadError
from modelyard.workloads.ingest.address_policy import ALLOWED_ENV
from modelyard.workloads.ingest.api_source import read_api
from tests.workers import Worker, WorkerResult

pytestmark = pytest.mark.integration

TOKEN = "tok-SECRET-9d2e41"
SECRET = f"Authorization: Bearer {TOKEN}\nX-Api-Version: 2\n"
PAGES: list[list[dict[str, Any]]] = [
    [
        {"id": 1, "label": "yes", "user": {"age": 31, "city": "Oslo"}, "tags": ["a", "b"]},
        {"id": 2, "label": "no", "user": {"age": 45, "city": "Lima"}, "tags": []},
    ],
    [{"id": 3, "label": "yes", "user": {"age": 28.5, "city": None}, "tags": ["c"], "note": "vip"}],
    [{"id": 4, "label": "no", "user": {"age": 52}, "tags": None}],
]
# What arrives: nested fields under dotted names, arrays as JSON text, a key that only some
# records have as a column with nulls elsewhere, integer and float ages together as float.
EXPECTED = {
    "id": [1, 2, 3, 4],
    "label": ["yes", "no", "yes", "no"],
    "user.age": [31.0, 45.0, 28.5, 52.0],
    "user.city": ["Oslo", "Lima", None, None],
    "tags": ['["a","b"]', "[]", '["c"]', None],
    "note": [None, None, "vip", None],
}

Response = tuple[int, dict[str, str], bytes]


@dataclass
class Api:
    """A loopback JSON API answering from `routes` (path with query → one answer, or a list
    answered in turn); it records every request's path and headers."""

    base: str = ""
    token: str | None = None
    routes: dict[str, Response | list[Response]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def json(self, path: str, body: Any, **headers: str) -> str:
        self.routes[path] = (200, headers, json.dumps(body).encode())
        return self.base + path

    def answer(self, path: str) -> Response:
        route = self.routes.get(path, (404, {}, b"{}"))
        if isinstance(route, list):
            return route.pop(0) if len(route) > 1 else route[0]
        return route

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


def _handler(api: Api) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            api.requests.append((self.path, dict(self.headers.items())))
            answer: Response = (401, {}, b'{"error": "unauthorized"}')
            if api.token is None or self.headers.get("Authorization") == f"Bearer {api.token}":
                answer = api.answer(self.path)
            status, headers, body = answer
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    return Handler


@contextmanager
def serving(token: str | None = None) -> Iterator[Api]:
    api = Api(token=token)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler(api))
    api.base = f"http://127.0.0.1:{httpd.server_address[1]}"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield api
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


@pytest.fixture
def api() -> Iterator[Api]:
    with serving(token=TOKEN) as running:
        yield running


@pytest.fixture
def other() -> Iterator[Api]:
    """Another origin (another port): it serves anyone and records whether a token came."""
    with serving() as running:
        yield running


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: dict[str, str]) -> Worker:
    monkeypatch.setenv(ALLOWED_ENV, "127.0.0.1/32")
    monkeypatch.setenv(SECRET_ENV, SECRET)
    return Worker(tmp_path, monkeypatch)


def _ingest(worker: Worker, api: dict[str, Any], secret: bool = True, **spec: Any) -> WorkerResult:
    if secret:
        api = {**api, "headersSecretRef": {"name": "api-token", "key": "headers"}}
    result = worker.ingest({"source": {"api": api}, "target": "label", **spec})
    assert TOKEN not in worker.log.read_text()
    return result


def _failed(result: WorkerResult, reason: str, *named: str) -> str:
    assert result.message["reason"] == reason, result.message
    message: str = result.message["message"]
    for text in named:
        assert text in message, (text, message)
    return message


def _body_pages(api: Api, pages: list[list[dict[str, Any]]] = PAGES) -> str:
    """Pages with the next link in the body: relative, then absolute, then none."""
    for number, records in enumerate(pages, start=1):
        if number == len(pages):
            following = None
        elif number == 1:
            following = f"/v1/items?page={number + 1}"
        else:
            following = f"{api.base}/v1/items?page={number + 1}"
        api.json(
            f"/v1/items?page={number}", {"data": {"items": records}, "links": {"next": following}}
        )
    return f"{api.base}/v1/items?page=1"


BODY_LINKS: dict[str, Any] = {
    "records": "data.items",
    "pagination": {"kind": "nextLink", "nextField": "links.next"},
}


def _table(storage: Storage, result: WorkerResult) -> dict[str, list[Any]]:
    prefix = S3Uri.parse(result.message["uri"])
    table = pq.read_table(io.BytesIO(storage.get_bytes(prefix.join("data.parquet"))))
    columns: dict[str, list[Any]] = table.to_pydict()
    return columns


def test_pages_linked_from_the_body_arrive_as_rows_with_the_union_of_columns(
    worker: Worker, api: Api, storage: Storage
) -> None:
    result = _ingest(worker, {"url": _body_pages(api), **BODY_LINKS})
    assert result.exit_code == 0, result.message
    assert (result.message["rows"], result.message["format"]) == (4, "json")
    assert _table(storage, result) == EXPECTED
    assert api.paths() == ["/v1/items?page=1", "/v1/items?page=2", "/v1/items?page=3"]
    assert all(headers["X-Api-Version"] == "2" for _, headers in api.requests)


def test_link_header_and_cursor_pagination_give_the_same_version(
    worker: Worker, api: Api, storage: Storage
) -> None:
    by_body = _ingest(worker, {"url": _body_pages(api), **BODY_LINKS})
    for number, records in enumerate(PAGES, start=1):
        # The page is the array itself; the Link header also names other relations.
        links = f'<{api.base}/v1/items?page=1>; rel="first"'
        if number < len(PAGES):
            links = f'<{api.base}/link?page={number + 1}>; rel="next", {links}'
        api.json(f"/link?page={number}", records, Link=links)
        cursor = f"c{number + 1}" if number < len(PAGES) else ""
        path = "/cursor?limit=2" + (f"&after=c{number}" if number > 1 else "")
        api.json(path, {"items": records, "meta": {"next_cursor": cursor}})
    by_header = _ingest(
        worker, {"url": f"{api.base}/link?page=1", "pagination": {"kind": "nextLink"}}
    )
    by_cursor = _ingest(
        worker,
        {
            "url": f"{api.base}/cursor?limit=2",
            "records": "items",
            "pagination": {
                "kind": "cursor",
                "cursorField": "meta.next_cursor",
                "cursorParam": "after",
            },
        },
    )
    assert [r.exit_code for r in (by_body, by_header, by_cursor)] == [0, 0, 0]
    assert by_header.message["version"] == by_body.message["version"]
    assert by_cursor.message["version"] == by_body.message["version"]
    assert by_cursor.message["reused"] is True
    assert _table(storage, by_cursor) == EXPECTED
    assert "/cursor?limit=2&after=c3" in api.paths()


def test_without_the_token_the_api_refuses_and_the_reason_says_so(worker: Worker, api: Api) -> None:
    result = _ingest(worker, {"url": _body_pages(api), **BODY_LINKS}, secret=False)
    assert result.exit_code == 2
    _failed(result, "SourceAccessDenied", "page 1", "HTTP 401 Unauthorized", "headersSecretRef")


@pytest.mark.parametrize("hop", ["next link", "redirect"])
def test_the_token_never_goes_to_another_origin(
    worker: Worker, api: Api, other: Api, storage: Storage, hop: str
) -> None:
    _body_pages(api)
    elsewhere = other.json("/v1/items?page=2", {"data": {"items": PAGES[1]}, "links": {}})
    if hop == "next link":
        api.json("/v1/items?page=1", {"data": {"items": PAGES[0]}, "links": {"next": elsewhere}})
    else:
        api.routes["/v1/items?page=2"] = (302, {"Location": elsewhere}, b"")
    result = _ingest(worker, {"url": f"{api.base}/v1/items?page=1", **BODY_LINKS})
    assert (result.exit_code, result.message.get("rows")) == (0, 3), result.message
    assert other.paths() == ["/v1/items?page=2"]
    sent = other.requests[0][1]
    assert "Authorization" not in sent and "X-Api-Version" not in sent


def test_a_page_that_links_back_stops_the_ingest(worker: Worker, api: Api) -> None:
    _body_pages(api)
    api.json("/v1/items?page=2", {"data": {"items": PAGES[1]}, "links": {"next": "?page=1"}})
    result = _ingest(worker, {"url": f"{api.base}/v1/items?page=1", **BODY_LINKS})
    _failed(result, "PaginationLoop", "spec.source.api.pagination", "page 2")
    assert api.paths() == ["/v1/items?page=1", "/v1/items?page=2"]


def test_a_repeated_cursor_stops_the_ingest(worker: Worker, api: Api) -> None:
    api.json("/c", {"items": PAGES[0], "next": "same"})
    api.json("/c?after=same", {"items": PAGES[1], "next": "same"})
    spec = {"kind": "cursor", "cursorField": "next", "cursorParam": "after"}
    result = _ingest(worker, {"url": f"{api.base}/c", "records": "items", "pagination": spec})
    _failed(result, "PaginationLoop", "cursor of page 2")


def test_more_pages_than_max_pages_fail_naming_the_field(worker: Worker, api: Api) -> None:
    url = _body_pages(api)
    pagination = {**BODY_LINKS["pagination"], "maxPages": 2}
    result = _ingest(worker, {"url": url, "records": "data.items", "pagination": pagination})
    assert result.exit_code == 2
    _failed(result, "TooManyPages", "spec.source.api.pagination.maxPages")
    assert len(api.requests) == 2


def test_too_many_requests_with_retry_after_is_asked_again(worker: Worker, api: Api) -> None:
    _body_pages(api)
    page_two = api.routes["/v1/items?page=2"]
    assert not isinstance(page_two, list)
    api.routes["/v1/items?page=2"] = [(429, {"Retry-After": "1"}, b"{}"), page_two]
    result = _ingest(worker, {"url": f"{api.base}/v1/items?page=1", **BODY_LINKS})
    assert (result.exit_code, result.message.get("rows")) == (0, 4), result.message
    assert api.paths().count("/v1/items?page=2") == 2


def test_too_many_requests_without_a_delay_fails_with_the_status(worker: Worker, api: Api) -> None:
    _body_pages(api)
    api.routes["/v1/items?page=2"] = (429, {}, b"{}")
    result = _ingest(worker, {"url": f"{api.base}/v1/items?page=1", **BODY_LINKS})
    _failed(result, "SourceUnreachable", "page 2", "HTTP 429 Too Many Requests")
    assert result.exit_code == 1  # transient: the Job tries again


def test_a_missing_page_fails_with_its_status_code(worker: Worker, api: Api) -> None:
    _body_pages(api)
    del api.routes["/v1/items?page=3"]
    result = _ingest(worker, {"url": f"{api.base}/v1/items?page=1", **BODY_LINKS})
    message = _failed(result, "SourceUnreachable", "page 3", "HTTP 404 Not Found")
    assert "page=3" not in message  # the query can hold tokens: only the path is named


def test_a_record_longer_than_a_read_block_arrives_whole(
    worker: Worker, api: Api, storage: Storage
) -> None:
    """A long text field (2 MiB) in one record: pages may be far larger than Arrow's block."""
    description = "x" * (2 << 20)
    api.json("/long", [{"id": 1, "description": description}, {"id": 2, "description": "short"}])
    result = _ingest(worker, {"url": f"{api.base}/long"}, target="id")
    assert result.exit_code == 0, result.message
    table = _table(storage, result)
    assert table["description"] == [description, "short"]


def test_a_page_that_is_not_json_is_named(worker: Worker, api: Api) -> None:
    _body_pages(api)
    api.routes["/v1/items?page=2"] = (200, {}, b"<html>maintenance</html>")
    result = _ingest(worker, {"url": f"{api.base}/v1/items?page=1", **BODY_LINKS})
    assert result.exit_code == 4
    _failed(result, "UnreadableData", "page 2", "not JSON")


def test_a_column_whose_type_changes_between_pages_is_named_unless_declared(
    worker: Worker, api: Api, storage: Storage
) -> None:
    pages = [[{"id": 1, "code": 7, "label": "a"}], [{"id": 2, "code": "X7", "label": "b"}]]
    url = _body_pages(api, pages)
    result = _ingest(worker, {"url": url, **BODY_LINKS})
    _failed(result, "SchemaMismatch", "'code'", "integer", "string", "page 2")
    declared = _ingest(
        worker,
        {"url": url, **BODY_LINKS},
        schema={"columns": [{"name": "code", "type": "string"}]},
    )
    assert declared.exit_code == 0, declared.message
    assert _table(storage, declared)["code"] == ["7", "X7"]


def test_a_secret_with_a_header_injection_is_refused_without_quoting_it(
    worker: Worker, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SECRET_ENV, f"Authorization: Bearer {TOKEN}\rX-Injected: 1\n")
    result = _ingest(worker, {"url": _body_pages(api), **BODY_LINKS})
    assert result.exit_code == 2
    _failed(result, "SourceSecretInvalid", "spec.source.api.headersSecretRef", "line 1")
    assert api.requests == []


def test_loopback_is_refused_unless_allowed(
    worker: Worker, api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ALLOWED_ENV)
    result = _ingest(worker, {"url": _body_pages(api), **BODY_LINKS})
    _failed(result, "SourceAddressNotAllowed", "spec.source.api.url", "loopback")
    assert api.requests == []


def test_a_page_over_the_size_limit_is_refused(other: Api) -> None:
    big = [{"id": i, "label": "x" * 100} for i in range(100)]
    url = other.json("/big", big)
    source = ApiSource.model_validate({"url": url})
    with pytest.raises(WorkloadError) as caught:
        list(read_api(source, environ={ALLOWED_ENV: "127.0.0.1/32"}, max_page_bytes=4096))
    assert caught.value.reason == "SourceTooLarge"
    assert "page 1" in str(caught.value)


def test_a_string_that_is_not_unicode_is_refused(worker: Worker, api: Api) -> None:
    # Python's json reads a lone UTF-16 surrogate; no Parquet string can hold it.
    api.routes["/bad"] = (200, {}, b'[{"id": 1, "label": "\\ud800"}]')
    result = _ingest(worker, {"url": f"{api.base}/bad"})
    assert result.exit_code == 4
    _failed(result, "UnreadableData", "spec.source.api", "surrogate")
