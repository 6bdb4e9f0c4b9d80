"""Fail closed when RBAC refuses the operator a call: the object stalls (Ready=False,
Stalled=True) with reason PermissionDenied and the API server's words (verb and resource), the log
an error, and the handler a retry a minute later. Nothing else stops."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import kopf

from modelyard.controllers.conditions import stalled
from modelyard.controllers.context import Context
from modelyard.controllers.kube import Forbidden
from modelyard.reasons import Reason

RETRY_SECONDS = 60
logger = logging.getLogger(__name__)


def explain(error: Forbidden) -> str:
    """The API server's message, e.g. `jobs.batch is forbidden: User "…" cannot create resource
    "jobs" in API group "batch" in the namespace "ml"`."""
    return f"permission denied: {error.message or error.reason}"


@contextmanager
def reported(
    context: Context, kind: str, body: dict[str, Any], retry: bool = True
) -> Iterator[None]:
    """Run a reconcile; a 403 becomes the object's condition, an error log and (with `retry`) a
    kopf retry. Without `retry` (event handlers, which kopf never retries) the next change or
    restart reconciles again."""
    try:
        yield
    except Forbidden as error:
        meta = body["metadata"]
        message = explain(error)
        logger.error("%s %s/%s: %s", kind, meta["namespace"], meta["name"], message)
        status = body.get("status") or {}
        # A human must grant it: stalled (the retry below clears it once granted).
        conditions = stalled(
            status.get("conditions"), Reason.PermissionDenied, message, meta.get("generation")
        )
        try:
            context.kube.patch_status(
                kind,
                meta["namespace"],
                meta["name"],
                {"phase": status.get("phase") or "Pending", "conditions": conditions},
            )
        except Forbidden as denied:  # not even status: the log is all we can do
            logger.error("%s %s/%s: %s", kind, meta["namespace"], meta["name"], explain(denied))
        if retry:
            raise kopf.TemporaryError(message, delay=RETRY_SECONDS) from error
