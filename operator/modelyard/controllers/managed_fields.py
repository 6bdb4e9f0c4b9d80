"""Every watched object reaches kopf without `metadata.managedFields`.

The API server's record of which client set which field is server-side apply's bookkeeping: no
handler of ours and nothing in kopf reads it, yet it is often the largest part of an object's
metadata, and kopf queues and keeps the bodies it is in. At 2,000 Datasets + 2,000 TrainingJobs
that was about 35 MiB of the operator's peak (operator-memory.md). controller-runtime offers the
same as a cache transform (`TransformStripManagedFields`); kopf has no hook for it, so this wraps
kopf's watch stream, which yields every listed object and watch event. Stripped there, before kopf
queues an event for its object's worker, the backlog a storm leaves waiting is lighter too. Writes
are unaffected: an update that omits managedFields leaves them as they are, and ours are merge
patches."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any, cast

log = logging.getLogger(__name__)

Watch = Callable[..., AsyncGenerator[Any, None]]


def without_managed_fields(watch: Watch) -> Watch:
    """`watch`, yielding each event's object stripped of its managedFields."""

    @functools.wraps(watch)
    async def watched(*args: Any, **kwargs: Any) -> AsyncGenerator[Any, None]:
        # Closed with the outer stream, not whenever the collector finds it: kopf's watch holds
        # a connection until it is closed.
        async with contextlib.aclosing(watch(*args, **kwargs)) as stream:
            async for raw_event in stream:
                body = raw_event.get("object") if isinstance(raw_event, dict) else None
                metadata = body.get("metadata") if isinstance(body, dict) else None
                if isinstance(metadata, dict):
                    metadata.pop("managedFields", None)
                yield raw_event

    watched.strips_managed_fields = True  # type: ignore[attr-defined]
    return watched


def install() -> None:
    """Wrap kopf's watch stream, once. A kopf laid out otherwise runs unwrapped (a unit test
    fails on the pinned version): memory is no reason not to start."""
    try:
        from kopf._cogs.clients import watching
    except ImportError:
        watching = None  # type: ignore[assignment]
    current = getattr(watching, "infinite_watch", None)
    if current is None:
        log.warning("this kopf has no infinite_watch: objects keep their managedFields")
        return
    if not getattr(current, "strips_managed_fields", False):
        watching.infinite_watch = cast(Any, without_managed_fields(current))
