"""What stops a child pod, read from its status as the kubelet and scheduler write it."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from modelyard.controllers.pods import (
    POD_REASONS,
    UNSCHEDULABLE_PATIENCE_SECONDS,
    problem,
    recovered,
    started,
)


def _pod(**status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "iris-7d9f-x2"}, "status": status}


def _container(state: dict[str, Any], last: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": "server", "state": state, "lastState": last or {}}


def test_a_crashing_server_shows_the_reason_it_reported_before_exiting() -> None:
    report = {"status": "Failed", "reason": "DigestMismatch", "message": "model.json has digest"}
    pod = _pod(
        containerStatuses=[
            _container(
                {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 40s"}},
                {"terminated": {"exitCode": 1, "reason": "Error", "message": json.dumps(report)}},
            )
        ]
    )
    found = problem(pod)
    assert found is not None and found.reason == "DigestMismatch"
    assert found.message == "pod iris-7d9f-x2: model.json has digest"


def test_a_crash_without_a_report_is_a_crash_loop_with_the_logs_tail() -> None:
    pod = _pod(
        containerStatuses=[
            _container(
                {"waiting": {"reason": "CrashLoopBackOff"}},
                {"terminated": {"exitCode": 139, "reason": "Error", "message": "Segfault\n"}},
            )
        ]
    )
    found = problem(pod)
    assert found is not None and found.reason == "CrashLoopBackOff"
    assert "exit code 139" in found.message and "Segfault" in found.message


@pytest.mark.parametrize(
    "container",
    [
        _container({"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
        _container({"running": {}}, {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
    ],
)
def test_a_container_killed_for_memory_says_so(container: dict[str, Any]) -> None:
    found = problem(_pod(containerStatuses=[container]))
    assert found is not None and found.reason == "OOMKilled"
    assert "limits.memory" in found.message


RUNNING = {"running": {"startedAt": "2026-12-06T10:00:00Z"}}


def _job_pod(name: str, container: dict[str, Any]) -> dict[str, Any]:
    owner = {"kind": "Job", "name": "iris-run-1", "uid": "u", "controller": True}
    return {
        "metadata": {"name": name, "ownerReferences": [owner]},
        "spec": {"restartPolicy": "Never"},
        "status": {"containerStatuses": [container]},
    }


def test_a_jobs_pod_killed_for_memory_is_progress_its_job_may_retry() -> None:
    # restartPolicy Never: the Job, not the kubelet, starts another pod while it has retries.
    killed = _container({"terminated": {"exitCode": 137, "reason": "OOMKilled"}})
    found = problem(_job_pod("iris-run-1-abcde", killed))
    assert found is not None and found.reason == "OOMKilled" and not found.final
    assert found.warns  # a kill happened: a Warning Event, though the run goes on
    restarted = problem({**_pod(containerStatuses=[killed]), "spec": {"restartPolicy": "Always"}})
    assert restarted is not None and restarted.final
    # Its retry runs: the progress shown for the killed pod is over.
    reconciling = [
        {"type": "Reconciling", "status": "True", "reason": found.reason, "message": found.message}
    ]
    retry = _job_pod("iris-run-1-fghij", _container(RUNNING))
    assert recovered(retry, reconciling)
    assert not recovered(_job_pod("iris-run-1-abcde", killed), reconciling)


def test_only_the_pod_a_problem_names_or_its_siblings_end_it() -> None:
    # A run on workers: its training pod runs while a worker cannot pull its image.
    stuck = _showing("Stalled", "ImagePullBackOff", "pod iris-run-1-engine-worker-7c9-x2")
    trainer = _job_pod("iris-run-1-abcde", _container(RUNNING))
    assert not recovered(trainer, stuck)
    worker = {
        "metadata": {
            "name": "iris-run-1-engine-worker-7c9-k4",
            "ownerReferences": [
                {"kind": "ReplicaSet", "name": "iris-run-1-engine-worker-7c9", "controller": True}
            ],
        },
        "status": {"containerStatuses": [_container(RUNNING)]},
    }
    assert recovered(worker, stuck)
    # A Job whose pod the API server refused: its pod, once created and running, ends it.
    refused = _showing("Stalled", "FailedCreate", "Job iris-run-1")
    assert recovered(trainer, refused)


def test_a_container_ready_again_after_a_kill_for_memory_has_no_problem() -> None:
    # An OOM kill days ago must not stall the next scale-up, which looks at every pod.
    container = {
        **_container({"running": {}}, {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}),
        "ready": True,
        "restartCount": 1,
    }
    assert problem(_pod(containerStatuses=[container])) is None


def test_a_reported_reason_unknown_to_modelyard_is_not_taken() -> None:
    report = {"status": "Failed", "reason": "AllFine", "message": "nothing to see"}
    pod = _pod(
        containerStatuses=[
            _container(
                {"waiting": {"reason": "CrashLoopBackOff"}},
                {"terminated": {"exitCode": 1, "message": json.dumps(report)}},
            )
        ]
    )
    found = problem(pod)
    assert found is not None and found.reason == "CrashLoopBackOff"


def test_a_pending_or_running_pod_has_no_problem() -> None:
    assert problem(_pod(phase="Pending")) is None
    assert (
        problem(_pod(containerStatuses=[_container({"waiting": {"reason": "ContainerCreating"}})]))
        is None
    )
    running = _pod(containerStatuses=[_container({"running": {"startedAt": "now"}})])
    assert problem(running) is None and started(running)
    assert not started(_pod(phase="Pending"))


def test_every_pod_reason_is_documented() -> None:
    from modelyard.reasons import EXPLANATIONS

    assert EXPLANATIONS.keys() >= POD_REASONS


@pytest.mark.parametrize("kind", ["secret", "configmap"])
def test_a_kubelet_cache_not_synced_yet_is_no_problem_it_retries(kind: str) -> None:
    # Seen in CI: the first pod in a new namespace, before the kubelet's watch on it synced.
    message = f"failed to sync {kind} cache: timed out waiting for the condition"
    waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": message}}
    assert problem(_pod(containerStatuses=[_container(waiting)])) is None


def test_a_missing_secret_still_stops_the_pod() -> None:
    message = 'secret "s3-credentials" not found'
    waiting = {"waiting": {"reason": "CreateContainerConfigError", "message": message}}
    found = problem(_pod(containerStatuses=[_container(waiting)]))
    assert found is not None and found.reason == "CreateContainerConfigError"
    assert message in found.message


def _unschedulable(seconds_ago: float) -> dict[str, Any]:
    since = datetime.now(UTC) - timedelta(seconds=seconds_ago)
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": "0/1 nodes are available: 1 Insufficient cpu.",
        "lastTransitionTime": since.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    return _pod(phase="Pending", conditions=[condition])


def test_a_pod_no_node_took_yet_waits_for_one() -> None:
    found = problem(_unschedulable(seconds_ago=2))
    assert found is not None and not found.final and not found.warns
    assert found.reason == "WaitingForNode"
    assert found.message == "pod iris-7d9f-x2: 0/1 nodes are available: 1 Insufficient cpu."


def test_a_pod_no_node_took_in_its_patience_is_unschedulable() -> None:
    found = problem(_unschedulable(seconds_ago=UNSCHEDULABLE_PATIENCE_SECONDS + 1))
    assert found is not None and found.final and found.reason == "Unschedulable"
    assert "Insufficient cpu" in found.message


def test_a_finished_job_waits_no_longer_for_its_pod() -> None:
    found = problem(_unschedulable(seconds_ago=1), patience=0)
    assert found is not None and found.final and found.reason == "Unschedulable"


def _showing(type_: str, reason: str, about: str = "pod iris-7d9f-x2") -> list[dict[str, Any]]:
    return [{"type": type_, "status": "True", "reason": reason, "message": f"run-1: {about}: …"}]


def test_waiting_for_a_node_ends_once_a_node_takes_the_pod() -> None:
    waiting = _showing("Reconciling", "WaitingForNode")
    assert not recovered(_unschedulable(seconds_ago=2), waiting)
    creating = _pod(
        phase="Pending",
        conditions=[{"type": "PodScheduled", "status": "True"}],
        containerStatuses=[_container({"waiting": {"reason": "ContainerCreating"}})],
    )
    assert recovered(creating, waiting)
    # A stall of the pod's ends only once it runs: a node alone does not fix a missing Secret.
    assert not recovered(creating, _showing("Stalled", "CreateContainerConfigError"))
    assert not recovered(creating, _showing("Reconciling", "Ingesting"))
