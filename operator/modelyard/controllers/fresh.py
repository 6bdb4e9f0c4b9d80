"""Acting on an object as it is now: status writes carry the resourceVersion they were computed
from, so a write from a stale copy conflicts instead of overwriting a newer one (lists such as
runs[] and conditions are replaced whole by a merge patch); the action is then redone on a new
read."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from modelyard.controllers.context import Context
from modelyard.controllers.kube import Conflict

ATTEMPTS = 5
T = TypeVar("T")


def on_fresh(
    context: Context,
    kind: str,
    namespace: str,
    name: str,
    action: Callable[[dict[str, Any]], T],
) -> T | None:
    """`action` on the object as it is now; again on a new read when it changed between our read
    and our patch. None when the object is gone."""
    for _ in range(ATTEMPTS):
        body = context.kube.custom(kind, namespace, name)
        if body is None:
            return None
        try:
            return action(body)
        except Conflict:
            continue
    raise RuntimeError(f"{kind} {namespace}/{name} kept changing under {ATTEMPTS} attempts")


def patch_status(context: Context, kind: str, body: dict[str, Any], patch: dict[str, Any]) -> None:
    """Patch status only if nobody changed the object since `body` was read (Conflict
    otherwise)."""
    meta = body["metadata"]
    context.kube.patch_status(
        kind, meta["namespace"], meta["name"], patch, meta.get("resourceVersion")
    )
