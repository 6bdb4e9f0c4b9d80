"""kopf keeps between events only what the next event or a running timer reads: with the
operator's own handlers, a record of each custom resource but none of the Jobs, pods and Events
it watches, and a custom resource's body only while one of its timers runs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from kopf._cogs.structs.bodies import Body
from kopf._cogs.structs.references import Resource
from kopf._core.intents.registries import get_default_registry
from kopf._core.reactor import processing
from kopf._core.reactor.inventory import ResourceMemories, ResourceMemory

import modelyard.controllers.runner  # noqa: F401  (registers the handlers, installs the wrapper)
from modelyard.api.common import GROUP, VERSION
from modelyard.controllers.object_memory import forgetting_stateless_objects

JOBS = Resource("batch", "v1", "jobs", kind="Job", namespaced=True)
PODS = Resource("", "v1", "pods", kind="Pod", namespaced=True)
EVENTS = Resource("", "v1", "events", kind="Event", namespaced=True)
DATASETS = Resource(GROUP, VERSION, "datasets", kind="Dataset", namespaced=True)
TRAINING_JOBS = Resource(GROUP, VERSION, "trainingjobs", kind="TrainingJob", namespaced=True)
MODEL_DEPLOYMENTS = Resource(
    GROUP, VERSION, "modeldeployments", kind="ModelDeployment", namespaced=True
)


def _record_after(
    resource: Resource,
    type_: str | None = "MODIFIED",
    *,
    leaves_patch: bool = False,
    timer_running: bool = False,
) -> ResourceMemory | None:
    """Process one event of `resource` as kopf does (recall the object's record first and, for
    a kind with timers, keep its body) and return kopf's record of the object, if it has one."""
    memories = ResourceMemories()
    body = {"metadata": {"uid": "u-1", "name": "o", "namespace": "ns"}}

    async def process(*, memories: ResourceMemories, raw_event: dict[str, Any], **_: Any) -> None:
        memory = await memories.recall(raw_event["object"])
        memory.daemons_memory.live_fresh_body = Body(raw_event["object"])
        if leaves_patch:
            memory.remaining_patch = {"metadata": {"labels": {"a": "b"}}}  # type: ignore[assignment]
        if timer_running:
            memory.daemons_memory.running_daemons["a-timer"] = object()  # type: ignore[index,assignment]
        if raw_event["type"] == "DELETED":
            await memories.forget(raw_event["object"])

    async def run() -> ResourceMemory | None:
        await forgetting_stateless_objects(process)(
            memories=memories,
            registry=get_default_registry(),
            resource=resource,
            raw_event={"type": type_, "object": body},
        )
        return next(iter(memories.iter_all_memories()), None)

    return asyncio.run(run())


def _remembered_after(resource: Resource, type_: str | None = "MODIFIED", **how: bool) -> bool:
    return _record_after(resource, type_, **how) is not None


@pytest.mark.parametrize("resource", [JOBS, PODS, EVENTS], ids=lambda r: r.plural)
def test_a_watched_child_leaves_no_record_once_its_event_is_handled(resource: Resource) -> None:
    assert not _remembered_after(resource)
    assert not _remembered_after(resource, None)  # listed when a watch starts


@pytest.mark.parametrize(
    "resource", [DATASETS, TRAINING_JOBS, MODEL_DEPLOYMENTS], ids=lambda r: r.plural
)
def test_our_custom_resources_keep_their_record_for_resuming_handlers_and_timers(
    resource: Resource,
) -> None:
    assert _remembered_after(resource)


@pytest.mark.parametrize(
    "resource", [DATASETS, TRAINING_JOBS, MODEL_DEPLOYMENTS], ids=lambda r: r.plural
)
def test_a_custom_resource_whose_timers_are_idle_keeps_no_body(resource: Resource) -> None:
    record = _record_after(resource)
    assert record is not None
    assert record.daemons_memory.live_fresh_body is None


def test_a_running_timer_keeps_reading_the_latest_body() -> None:
    record = _record_after(DATASETS, timer_running=True)
    assert record is not None
    assert record.daemons_memory.live_fresh_body is not None
    assert record.daemons_memory.live_fresh_body.metadata.name == "o"


def test_a_child_whose_patch_kopf_could_not_apply_yet_keeps_its_record() -> None:
    assert _remembered_after(JOBS, leaves_patch=True)


def test_a_deleted_object_is_forgotten_by_kopf_itself() -> None:
    assert not _remembered_after(DATASETS, "DELETED")
    assert not _remembered_after(JOBS, "DELETED")


def test_the_operator_installs_the_wrapper_over_kopfs_event_processor() -> None:
    assert getattr(processing.process_resource_event, "forgets_stateless_objects", False)
