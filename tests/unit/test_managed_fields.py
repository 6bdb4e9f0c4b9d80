"""Watched objects reach kopf, and so its kept bodies and our handlers, without managedFields."""

from __future__ import annotations

import asyncio
from typing import Any

from kopf._core.reactor import processing

import modelyard.controllers.runner  # noqa: F401  (installs the wrapper, as the operator does)
from modelyard.controllers.managed_fields import without_managed_fields


def _event(metadata: dict[str, Any] | None, type_: str = "MODIFIED") -> dict[str, Any]:
    body: dict[str, Any] = {"apiVersion": "v1", "kind": "Pod"}
    if metadata is not None:
        body["metadata"] = metadata
    return {"type": type_, "object": body}


def _processed(raw_event: dict[str, Any]) -> dict[str, Any]:
    seen: list[dict[str, Any]] = []

    async def process(*, raw_event: dict[str, Any], resource: str) -> str:
        seen.append(raw_event)
        return resource

    assert asyncio.run(without_managed_fields(process)(raw_event=raw_event, resource="pods")) == (
        "pods"
    )
    return seen[0]


def test_an_object_reaches_kopf_without_managed_fields_and_with_the_rest_of_its_metadata() -> None:
    metadata = {
        "name": "p",
        "labels": {"app": "a"},
        "managedFields": [{"manager": "kubelet", "fieldsV1": {"f:status": {}}}],
    }
    seen = _processed(_event(metadata))
    assert seen["object"]["metadata"] == {"name": "p", "labels": {"app": "a"}}


def test_deletions_and_objects_without_metadata_pass_unchanged() -> None:
    deleted = _event({"name": "p"}, "DELETED")
    assert _processed(deleted) == _event({"name": "p"}, "DELETED")
    assert _processed(_event(None)) == _event(None)


def test_the_operator_installs_the_wrapper_over_kopfs_event_processor() -> None:
    """kopf binds its processor when it starts: importing the runner must have wrapped it."""
    assert getattr(processing.process_resource_event, "strips_managed_fields", False)
