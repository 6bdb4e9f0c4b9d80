"""The cycle kopf would end without a write: a finalizer patch carried over from a conflicted
attempt that the API server had in fact applied. kopf's own finalizer function and Patch class,
as kopf carries them from one cycle to the next."""

from __future__ import annotations

import functools
from typing import Any

import kopf
from kopf._cogs.structs import finalizers

from modelyard.controllers.bookkeeping import (
    FINALIZER,
    TOUCH,
    carried_over_patch_would_write_nothing,
    touch_to_resume_handling,
)


def _body(with_finalizer: bool) -> kopf.Body:
    metadata: dict[str, Any] = {"name": "ds-10", "namespace": "ns", "resourceVersion": "412"}
    if with_finalizer:
        metadata["finalizers"] = [FINALIZER]
    raw: Any = {"apiVersion": "modelyard.dev/v1alpha1", "kind": "Dataset", "metadata": metadata}
    return kopf.Body(raw)


def _carried_over(body: kopf.Body) -> kopf.Patch:
    """What kopf hands the next cycle after its finalizer JSON patch met a conflict."""
    return kopf.Patch(
        body=body, fns=[functools.partial(finalizers.block_deletion, finalizer=FINALIZER)]
    )


def test_a_finalizer_patch_already_applied_by_the_server_gets_a_touch() -> None:
    body = _body(with_finalizer=True)
    patch = _carried_over(body)
    assert carried_over_patch_would_write_nothing(body=body, patch=patch)
    handler: Any = touch_to_resume_handling  # kopf types it with every kwarg it passes
    handler(body=body, patch=patch)
    assert patch["metadata"]["annotations"] == {TOUCH: "412"}, "a write, hence a new watch event"


def test_a_finalizer_patch_still_to_apply_is_a_write_of_its_own() -> None:
    body = _body(with_finalizer=False)
    assert not carried_over_patch_would_write_nothing(body=body, patch=_carried_over(body))


def test_an_ordinary_cycle_is_left_alone() -> None:
    body = _body(with_finalizer=True)
    assert not carried_over_patch_would_write_nothing(body=body, patch=kopf.Patch(body=body))
