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


def remove_condition(conditions: list[Condition] | None, type_: str) -> list[Condition]:
    return [c for c in conditions or [] if c.get("type") != type_]


# kstatus, which Argo CD, Flux and `kubectl wait` follow: while the operator is still working,
# Reconciling=True and Ready=Unknown; Stalled=True and Ready=False only when it stopped and needs
# a human. An object with a usable result keeps Ready=True while it works on the next one.


def progressing(
    conditions: list[Condition] | None,
    reason: str,
    message: str,
    generation: int | None,
    keep_ready: bool = False,
) -> list[Condition]:
    """Work under way: Reconciling=True; Ready=Unknown, or left as it is with `keep_ready`."""
    updated = set_condition(
        remove_condition(conditions, "Stalled"), "Reconciling", True, reason, message, generation
    )
    if keep_ready and (get_condition(updated, "Ready") or {}).get("status") == "True":
        return updated
    return set_condition(updated, "Ready", "Unknown", reason, message, generation)


def stalled(
    conditions: list[Condition] | None, reason: str, message: str, generation: int | None
) -> list[Condition]:
    """Stopped on a problem a human must fix: Ready=False and Stalled=True with its reason."""
    updated = set_condition(
        remove_condition(conditions, "Reconciling"), "Stalled", True, reason, message, generation
    )
    return set_condition(updated, "Ready", False, reason, message, generation)


def settled(
    conditions: list[Condition] | None, reason: str, message: str, generation: int | None
) -> list[Condition]:
    """Done and usable: Ready=True, nothing under way, nothing stalled."""
    updated = remove_condition(remove_condition(conditions, "Reconciling"), "Stalled")
    return set_condition(updated, "Ready", True, reason, message, generation)
