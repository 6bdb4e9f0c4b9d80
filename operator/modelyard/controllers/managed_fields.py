"""Every watched object reaches kopf without `metadata.managedFields`.

The API server's record of which client set which field is server-side apply's bookkeeping: no
handler of ours and nothing in kopf reads it, yet it is often the largest part of an object's
metadata, and kopf keeps the latest body of every custom resource for the timers of its kind.
At 2,000 Datasets + 2,000 TrainingJobs that was about 35 MiB of the operator's peak
(operator-memory.md). controller-runtime offers the same as a cache transform
(`TransformStripManagedFields`); kopf has no hook for it, so this wraps the function kopf hands
every watch event and listed object to. Writes are unaffected: an update that omits
managedFields leaves them as they are, and ours are merge patches."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Coroutine
from typing import Any, cast

log = logging.getLogger(__name__)

Processor = Callable[..., Coroutine[Any, Any, Any]]


def without_managed_fields(process: Processor) -> Processor:
    """`process`, called with each event's object stripped of its managedFields."""

    @functools.wraps(process)
    async def processed(*args: Any, **kwargs: Any) -> Any:
        raw_event = kwargs.get("raw_event")
        body = raw_event.get("object") if isinstance(raw_event, dict) else None
        metadata = body.get("metadata") if isinstance(body, dict) else None
        if isinstance(metadata, dict):
            metadata.pop("managedFields", None)
        return await process(*args, **kwargs)

    processed.strips_managed_fields = True  # type: ignore[attr-defined]
    return processed


def install() -> None:
    """Wrap kopf's event processor, once. kopf binds it when the operator starts, before any
    startup handler runs: this must run on import. A kopf laid out otherwise runs unwrapped
    (a unit test fails on the pinned version): memory is no reason not to start."""
    try:
        from kopf._core.reactor import processing
    except ImportError:
        processing = None  # type: ignore[assignment]
    current = getattr(processing, "process_resource_event", None)
    if current is None:
        log.warning("this kopf has no process_resource_event: objects keep their managedFields")
        return
    if not getattr(current, "strips_managed_fields", False):
        processing.process_resource_event = cast(Any, without_managed_fields(current))
