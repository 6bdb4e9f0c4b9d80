"""Which pod events of a workload record its result: a container that exited 0 while its Job has
not counted it yet (the Job's Complete event covers the rest)."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from modelyard.controllers.children import JOB_TRACKING, succeeded


def _pod(component: str, exit_code: int | None, finalizers: list[str]) -> kopf.Body:
    state: dict[str, Any] = (
        {"running": {}} if exit_code is None else {"terminated": {"exitCode": exit_code}}
    )
    return kopf.Body(
        {
            "metadata": {
                "name": "p",
                "labels": {"app.kubernetes.io/component": component},
                "finalizers": finalizers,
            },
            "status": {"containerStatuses": [{"name": "workload", "state": state}]},
        }
    )


@pytest.mark.parametrize(
    ("component", "exit_code", "finalizers", "event", "expected"),
    [
        ("ingest", 0, [JOB_TRACKING], "MODIFIED", True),
        ("train", 0, [JOB_TRACKING], "MODIFIED", True),
        ("train", 0, [], "MODIFIED", False),  # counted: the Job's Complete event follows
        ("train", 1, [JOB_TRACKING], "MODIFIED", False),
        ("train", None, [JOB_TRACKING], "MODIFIED", False),
        ("ingest", 0, [JOB_TRACKING], "DELETED", False),
        ("server", 0, [JOB_TRACKING], "MODIFIED", False),
    ],
)
def test_a_pod_event_records_the_result_only_when_its_workload_exited_0_uncounted(
    component: str, exit_code: int | None, finalizers: list[str], event: str, expected: bool
) -> None:
    assert succeeded(_pod(component, exit_code, finalizers), event) is expected
