"""Reading a finished Job: did it succeed, and if not, what Kubernetes says stopped it."""

from __future__ import annotations

from typing import Any

from modelyard import summaries
from modelyard.controllers.pods import last_words, problem
from modelyard.exitcodes import EXIT_ENGINE_LOST
from modelyard.reasons import Reason
from modelyard.resources.jobs import OUTPUT_URI
from modelyard.storage.uri import InvalidUri, S3Uri


def outcome(job: dict[str, Any]) -> bool | None:
    """True when the Job completed, False when it failed, None while it runs."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("status") != "True":
            continue
        if condition.get("type") == "Complete":
            return True
        if condition.get("type") == "Failed":
            return False
    return None


def failure_reason(job: dict[str, Any]) -> str:
    """BackoffLimitExceeded, DeadlineExceeded…: the Job's own reason, else JobFailed."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return str(condition.get("reason") or Reason.JobFailed)
    return Reason.JobFailed


def job_env(job: dict[str, Any], name: str) -> str | None:
    """A plain environment value of the Job's workload container, as the operator set it."""
    container = job["spec"]["template"]["spec"]["containers"][0]
    return next((e.get("value") for e in container.get("env") or [] if e["name"] == name), None)


def job_output(job: dict[str, Any]) -> S3Uri:
    """Where the operator told the Job's workload to publish (its MODELYARD_OUTPUT_URI)."""
    value = job_env(job, OUTPUT_URI)
    try:
        return S3Uri.parse(value or "")
    except InvalidUri:
        raise summaries.Rejected(
            f"Job {job['metadata']['name']} names no output location"
        ) from None


def failure_of(
    job: dict[str, Any], summary: dict[str, Any], pods: list[dict[str, Any]], what: str
) -> tuple[str, str]:
    """(reason, message) of a failed workload: its own report when it left one, else what
    stopped its pods (killed for memory…), else how its newest pod ended (evicted, crashed), else
    what Kubernetes says stopped the Job."""
    failure = summaries.failure(summary)
    if failure and failure.reason != Reason.JobFailed:
        return failure.reason, failure.message or f"{what} {job['metadata']['name']} failed"
    # The newest pod first: the Job's last try says why it gave up.
    newest = sorted(
        pods, key=lambda pod: pod["metadata"].get("creationTimestamp") or "", reverse=True
    )
    # The Job is over: a pod that never found a node waited long enough.
    stopped = next(
        (found for pod in newest if (found := problem(pod, patience=0)) is not None), None
    )
    if stopped is not None:
        return stopped.reason, stopped.message
    if any(EXIT_ENGINE_LOST in _exit_codes(pod) for pod in pods):
        # Exited for its engine before it could say more (or its report was lost).
        return Reason.EngineLost, (
            f"{what} {job['metadata']['name']} lost its Dask cluster (exit code "
            f"{EXIT_ENGINE_LOST}); see the scheduler's and workers' pods and events"
        )
    reason = failure_reason(job)
    if failure is None and reason != Reason.DeadlineExceeded:
        # No report: the newest pod's end in the kubelet's words (an eviction, a crash's last
        # lines). Past a deadline the Job killed its pod: its own words say more.
        said = next((words for pod in newest if (words := last_words(pod)) is not None), None)
        if said is not None:
            return said[0] or reason, said[1]
    name = job["metadata"]["name"]
    message = (failure.message if failure else "") or (
        f"{what} {name} failed: {condition}" if (condition := _failed_message(job)) else ""
    )
    return reason, message or f"{what} {name} failed"


def _failed_message(job: dict[str, Any]) -> str:
    """The message of the Job's Failed condition ("Job was active longer than specified
    deadline")."""
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Failed" and condition.get("status") == "True":
            return str(condition.get("message") or "")
    return ""


def _exit_codes(pod: dict[str, Any]) -> set[int]:
    codes = set()
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        for state in (status.get("state"), status.get("lastState")):
            terminated = (state or {}).get("terminated") or {}
            if isinstance(terminated.get("exitCode"), int):
                codes.add(terminated["exitCode"])
    return codes
