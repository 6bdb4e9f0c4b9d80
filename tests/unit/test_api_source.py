"""The pure parts of `api` sources: the headers secret, dotted paths, Link headers, flattening."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.workloads.common.termination import WorkloadError
from modelyard.workloads.ingest.api_source import (
    MISSING,
    flatten,
    lookup,
    next_link,
    parse_headers,
    retry_delay,
)
from modelyard.workloads.ingest.http_fetch import FetchFailed

SECRET_VALUE = "s3cr3t-value"


def test_header_lines_become_headers_with_blank_lines_and_crlf_endings_allowed() -> None:
    text = f"Authorization: Bearer {SECRET_VALUE}\r\n\nX-Api-Key:  k1 \n"
    assert parse_headers(text) == {
        "Authorization": f"Bearer {SECRET_VALUE}",
        "X-Api-Key": "k1",
    }


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (f"Authorization Bearer {SECRET_VALUE}", "line 1 of the secret is not `Name: value`"),
        (f"X-Ok: 1\nBad Name: {SECRET_VALUE}", "line 2 of the secret is not `Name: value`"),
        (f"Authorization: {SECRET_VALUE}\rHost: evil", "line 1 of the secret holds a control"),
        (f"Authorization: {SECRET_VALUE}\x00", "holds a control character"),
        ("Authorization:", "line 1 of the secret has an empty value"),
        (f"Host: {SECRET_VALUE}", "sets Host, which ingest sets itself"),
        (f"A: {SECRET_VALUE}\na: 2", "line 2 of the secret repeats the header a"),
        ("\n\n", "the secret holds no header"),
    ],
)
def test_a_malformed_secret_is_refused_naming_the_field_but_not_the_value(
    text: str, problem: str
) -> None:
    with pytest.raises(WorkloadError) as caught:
        parse_headers(text)
    assert caught.value.reason == "SourceSecretInvalid"
    assert caught.value.exit_code == 2
    message = str(caught.value)
    assert message.startswith("spec.source.api.headersSecretRef: ")
    assert problem in message
    assert SECRET_VALUE not in message


@pytest.mark.parametrize(
    ("path", "found"),
    [
        ("data", {"items": [1], "empty": None}),
        ("data.items", [1]),
        ("data.empty", None),
        ("data.nothing", MISSING),
        ("data.items.0", MISSING),  # paths name object keys, not array indices
        ("count.more", MISSING),
    ],
)
def test_dotted_paths_walk_object_keys(path: str, found: Any) -> None:
    document = {"data": {"items": [1], "empty": None}, "count": 3}
    assert lookup(document, path) == found


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        (['<https://api.test/items?page=2>; rel="next"'], "https://api.test/items?page=2"),
        (['</items?page=1>; rel="prev", </items?page=3>; rel=next'], "/items?page=3"),
        (['<https://a.test/x?p=2&q=1>; title="a, b"; rel="next last"'], "https://a.test/x?p=2&q=1"),
        (['<https://a.test/1>; rel="first"', "<https://a.test/2>; REL=NEXT"], "https://a.test/2"),
        (['<https://a.test/1>; rel="nextpage"'], None),
        (['<https://a.test/1>; rel="prev"'], None),
        ([], None),
    ],
)
def test_the_link_header_names_the_next_page(headers: list[str], expected: str | None) -> None:
    assert next_link(headers) == expected


def test_nested_objects_flatten_with_dots_and_arrays_become_json_text() -> None:
    record = {
        "id": 7,
        "user": {"name": "Åsa", "address": {"city": "Oslo"}, "prefs": {}},
        "tags": ["a", {"b": 1}],
        "score": None,
    }
    assert flatten(record, page=1) == {
        "id": 7,
        "user.name": "Åsa",
        "user.address.city": "Oslo",
        "tags": '["a",{"b":1}]',
        "score": None,
    }


def test_a_dotted_key_and_a_nested_object_that_flatten_alike_are_refused() -> None:
    with pytest.raises(WorkloadError) as caught:
        flatten({"a.b": 1, "a": {"b": 2}}, page=3)
    assert caught.value.reason == "UnreadableData"
    assert "page 3" in str(caught.value) and "'a.b'" in str(caught.value)


@pytest.mark.parametrize(
    ("status", "retry_after", "delay"),
    [
        (429, "2", 2.0),
        (503, "0", 0.0),
        (429, "60", 60.0),
        (429, "61", None),  # longer than ingest waits: fail now, the Job retries later
        (429, None, None),
        (429, "soon", None),
        (500, "1", None),  # only 429 and 503 ask for a later retry
        (429, "Wed, 21 Oct 2015 07:28:00 GMT", 0.0),  # a date already past: at once
    ],
)
def test_retry_after_is_honoured_for_429_and_503_within_a_bound(
    status: int, retry_after: str | None, delay: float | None
) -> None:
    assert retry_delay(FetchFailed("HTTP", status, retry_after)) == delay
