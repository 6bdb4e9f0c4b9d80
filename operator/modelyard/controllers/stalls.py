"""Reporting a stall: the object stopped on something a human must fix."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelyard.controllers import metrics
from modelyard.controllers.context import post_event


def report_stall(
    kind: str,
    body: dict[str, Any],
    patch: dict[str, Any],
    write: Callable[[dict[str, Any]], None],
    reason: str,
    message: str,
) -> None:
    """`write` the status `patch` (phase Failed, Stalled=True…), then record the phase and post
    a Warning event; nothing when the status holds it already, so a resumed operator or a
    repeated event adds no event."""
    status = body.get("status") or {}
    if all(status.get(key) == value for key, value in patch.items()):
        return
    write(patch)
    meta = body["metadata"]
    metrics.set_phase(kind, meta["namespace"], meta["name"], "Failed")
    post_event(body, reason, message, warning=True)
