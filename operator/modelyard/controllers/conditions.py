"""The one condition helper: metav1.Condition lists, updated without losing transition times."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

Condition = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def set_condition(
    conditions: list[Condition] | None,
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    generation: int | None,
) -> list[Condition]:
    """A new list with `type_` set; lastTransitionTime changes only when the status does."""
    value = status if isinstance(status, str) else ("True" if status else "False")
    existing = {c["type"]: c for c in conditions or []}
    previous = existing.get(type_)
    condition: Condition = {
        "type": type_,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": (
            previous["lastTransitionTime"]
            if previous and previous.get("status") == value
            else now()
        ),
    }
    if generation is not None:
        condition["observedGeneration"] = generation
    existing[type_] = condition
    # Ready first: it is what people and tools look at.
    return sorted(existing.values(), key=lambda c: (c["type"] != "Ready", c["type"]))


def get_condition(conditions: list[Condition] | None, type_: str) -> Condition | None:
    return next((c for c in conditions or [] if c.get("type") == type_), None)
