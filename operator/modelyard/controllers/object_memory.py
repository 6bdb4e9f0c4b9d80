"""kopf keeps, between events, only what the next event or a running timer reads.

kopf keeps a record of every object it has seen until the object is deleted: a memo, an error
throttler, indexing and daemon state, about 1 KiB in Python. It reads that record from one event
to the next only for a kind with resuming handlers (create, update, delete), timers, daemons,
indexes or admission webhooks. Our children (Jobs, pods, Events: watched for results and stuck
pods) have event handlers alone, which read only the memo, a copy of the operator's that no
handler writes to. They were 8,000 of the 12,003 records at 2,000 Datasets + 2,000 TrainingJobs,
kept until the Jobs were deleted. So a child's record is forgotten once its event is handled.
What a fresh record changes for such a kind: kopf's throttle of its own errors (not a handler's)
restarts with each event instead of backing off across events. A record with a patch kopf could
not apply yet is kept.

For a kind with timers, kopf also keeps the object's latest body, for its timers to read, even
while none runs: all our custom resources have a timer, most of them idle (`when=` false). The
body is released once an event leaves no timer running, as kopf itself does when the last one
stops for good; the next event that starts one keeps that event's body again.

kopf has no setting for either, so this wraps its event processor (operator-memory.md measures
both)."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, cast

log = logging.getLogger(__name__)

Processor = Callable[..., Coroutine[Any, Any, Any]]
# kopf's registries of the handlers that read an object's record from one event to the next.
STATEFUL = ("_changing", "_spawning", "_indexing", "_webhooks")


def keeps_state(registry: Any, resource: Any) -> bool:
    """Whether kopf reads an object's record of this kind from one event to the next."""
    return any(getattr(registry, name).has_handlers(resource=resource) for name in STATEFUL)


def forgetting_stateless_objects(process: Processor) -> Processor:
    """`process`, after which the record of an object whose kind keeps no state is forgotten,
    and the body kept for timers when none runs."""

    @functools.wraps(process)
    async def processed(*args: Any, **kwargs: Any) -> Any:
        result = await process(*args, **kwargs)
        memories, raw_event = kwargs.get("memories"), kwargs.get("raw_event")
        if memories is None or not isinstance(raw_event, dict) or raw_event["type"] == "DELETED":
            return result  # kopf forgot a deleted object's record: recalling it would revive it
        body = raw_event.get("object") or {}
        if not (body.get("metadata") or {}).get("uid"):
            return result
        memory = await memories.recall(body)
        if not keeps_state(kwargs["registry"], kwargs["resource"]):
            if memory.remaining_patch is None:
                await memories.forget(body)
        elif not memory.daemons_memory.running_daemons:
            memory.daemons_memory.live_fresh_body = None
        return result

    processed.forgets_stateless_objects = True  # type: ignore[attr-defined]
    return processed


def install() -> None:
    """Wrap kopf's event processor, once. kopf binds it when the operator starts, before any
    startup handler runs: this must run on import. A kopf laid out otherwise runs unwrapped (a
    unit test fails on the pinned version): memory is no reason not to start."""
    try:
        from kopf._core.intents.registries import OperatorRegistry
        from kopf._core.reactor import processing

        registry = OperatorRegistry()
        laid_out = all(hasattr(registry, name) for name in STATEFUL)
    except ImportError:
        laid_out = False
    if not laid_out:
        log.warning("this kopf is laid out otherwise: it keeps a record of every object")
        return
    current = processing.process_resource_event
    if not getattr(current, "forgets_stateless_objects", False):
        processing.process_resource_event = cast(Any, forgetting_stateless_objects(current))
