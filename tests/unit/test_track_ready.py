"""When a serving track may take the model's Service: its Deployment has rolled out, by a status
that describes its current spec, so a status from before a scale-down does not count pods that
are gone."""

from __future__ import annotations

from typing import Any

import pytest

from modelyard.controllers.modeldeployment.children import ready_to_serve


def _deployment(
    spec_replicas: int, generation: int, observed: int, **counts: int
) -> dict[str, Any]:
    # Our Deployments' minReadySeconds is 1: available once ready a second.
    status = {"observedGeneration": observed, **counts}
    return {
        "metadata": {"name": "iris", "generation": generation},
        "spec": {"replicas": spec_replicas},
        "status": status,
    }


@pytest.mark.parametrize(
    ("deployment", "expected"),
    [
        (_deployment(2, 3, 3, replicas=2, updatedReplicas=2, availableReplicas=2), True),
        (_deployment(3, 3, 3, replicas=3, updatedReplicas=3, availableReplicas=3), True),
        # Ready, not yet available: a pod that just passed its probe may fail it again.
        (_deployment(2, 3, 3, replicas=2, updatedReplicas=2, readyReplicas=2), False),
        # Scaled to zero, its status not yet caught up: the two pods it counts are gone.
        (_deployment(0, 4, 3, replicas=2, updatedReplicas=2, availableReplicas=2), False),
        (_deployment(0, 4, 4, replicas=2, updatedReplicas=2, availableReplicas=2), False),
        # Scaled up again: the spec is read before the status shows the new pods.
        (_deployment(2, 5, 4, replicas=0, updatedReplicas=0, availableReplicas=0), False),
        (_deployment(2, 5, 5, replicas=2, updatedReplicas=2, availableReplicas=1), False),
        # A new template: the ready pods include the old template's.
        (_deployment(2, 6, 6, replicas=3, updatedReplicas=1, availableReplicas=2), False),
        (_deployment(2, 6, 6, replicas=3, updatedReplicas=2, availableReplicas=2), False),
        (None, False),
    ],
)
def test_a_track_serves_when_its_current_pods_are_ready(
    deployment: dict[str, Any] | None, expected: bool
) -> None:
    assert ready_to_serve(deployment, 2) is expected


def test_a_track_of_no_replicas_wanted_still_needs_one_ready_pod() -> None:
    empty = _deployment(0, 1, 1, replicas=0, updatedReplicas=0, availableReplicas=0)
    one = _deployment(1, 1, 1, replicas=1, updatedReplicas=1, availableReplicas=1)
    assert not ready_to_serve(empty, 0) and ready_to_serve(one, 0)
