"""Which pod events of a workload record its result: a container that exited 0 while its Job has
not counted it yet (the Job's Complete event covers the rest). Which Events may say that a Job's
pod was refused: the Job controller's FailedCreate, in the Job's own namespace."""

from __future__ import annotations

from typing import Any

import kopf
import pytest

from modelyard.controllers.children import JOB_TRACKING, job_refused, succeeded


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


def _event(namespace: str, kind: str, reason: str, involved_namespace: str) -> kopf.Body:
    return kopf.Body(
        {
            "metadata": {"name": "e", "namespace": namespace},
            "involvedObject": {"kind": kind, "name": "j", "namespace": involved_namespace},
            "reason": reason,
            "message": 'Error creating: pods "j-x" is forbidden: exceeded quota: q',
        }
    )


@pytest.mark.parametrize(
    ("event", "type", "expected"),
    [
        (_event("team-a", "Job", "FailedCreate", "team-a"), "ADDED", True),
        (_event("team-a", "Job", "FailedCreate", "team-a"), "MODIFIED", True),
        (_event("team-a", "Job", "FailedCreate", "team-a"), "DELETED", False),
        (_event("team-a", "Job", "SuccessfulCreate", "team-a"), "ADDED", False),
        (_event("team-a", "ReplicaSet", "FailedCreate", "team-a"), "ADDED", False),
        # Written by another tenant, naming team-a's Job: not believed.
        (_event("team-b", "Job", "FailedCreate", "team-a"), "ADDED", False),
    ],
)
def test_only_the_jobs_own_namespace_may_say_its_pod_was_refused(
    event: kopf.Body, type: str, expected: bool
) -> None:
    assert job_refused(event, type) is expected
