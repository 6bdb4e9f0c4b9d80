"""Watched objects reach kopf, and so its queues, kept bodies and our handlers, without
managedFields."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from kopf._cogs.clients import watching

import modelyard.controllers.runner  # noqa: F401  (installs the wrapper, as the operator does)
from modelyard.controllers.managed_fields import without_managed_fields


def _event(metadata: dict[str, Any] | None, type_: str = "MODIFIED") -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod"}
    if metadata is not None:
        body["metadata"] = metadata
    return {"type": type_, "object": body}


def _watched(*events: Any) -> list[Any]:
    async def watch(*, resource: str) -> AsyncIterator[Any]:
        assert resource == "pods"
        for event in events:
            yield event

    async def collect() -> list[Any]:
        return [event async for event in without_managed_fields(watch)(resource="pods")]

    return asyncio.run(collect())


def test_an_object_reaches_kopf_without_managed_fields_and_with_the_rest_of_its_metadata() -> None:
    metadata = {
        "name": "p",
        "labels": {"app": "a"},
        "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}],
    }
    listed = {"type": None, "object": {"metadata": {"name": "q", "managedFields": []}}}
    assert _watched(_event(metadata), listed) == [
        _event({"name": "p", "labels": {"app": "a"}}),
        {"type": None, "object": {"metadata": {"name": "q"}}},
    ]


def test_deletions_bookmarks_and_objects_without_metadata_pass_unchanged() -> None:
    deleted = _event({"name": "p"}, "DELETED")
    assert _watched(deleted, watching.Bookmark.LISTED, _event(None)) == [
        _event({"name": "p"}, "DELETED"),
        watching.Bookmark.LISTED,
        _event(None),
    ]


def test_closing_the_stream_closes_kopfs_watch_and_its_connection() -> None:
    closed: list[bool] = []

    async def watch() -> AsyncIterator[Any]:
        try:
            while True:
                yield _event({"name": "p"})
        finally:
            closed.append(True)

    async def read_one_and_close() -> list[bool]:
        stream = without_managed_fields(watch)()
        await anext(stream)
        await stream.aclose()
        return list(closed)  # at once: not when the loop finalizes leftover generators

    assert asyncio.run(read_one_and_close()) == [True]


def test_the_operator_installs_the_wrapper_over_kopfs_watch_stream() -> None:
    """kopf's watchers look up the stream each time they start: the runner's import wraps it."""
    assert getattr(watching.infinite_watch, "strips_managed_fields", False)
