"""Why a workload's Job failed, when the workload left no report of its own: the newest pod's
end in the kubelet's words, or the Job's own condition past its deadline."""

from __future__ import annotations

from typing import Any

from modelyard.controllers.jobs import failure_of


def _job(reason: str, message: str) -> dict[str, Any]:
    condition = {"type": "Failed", "status": "True", "reason": reason, "message": message}
    return {"metadata": {"name": "j"}, "status": {"conditions": [condition]}}


def _pod(name: str, created: str, exit_code: int, log: str = "", **status: Any) -> dict[str, Any]:
    terminated: dict[str, Any] = {"exitCode": exit_code, "reason": "Error"}
    if log:
        terminated["message"] = log
    return {
        "metadata": {"name": name, "creationTimestamp": created},
        "status": {
            "phase": "Failed",
            "containerStatuses": [{"name": "train", "state": {"terminated": terminated}}],
            **status,
        },
    }


BACKOFF = _job("BackoffLimitExceeded", "Job has reached the specified backoff limit")


def test_the_newest_pod_says_why_a_retried_run_failed() -> None:
    evicted = _pod("j-1", "2026-12-06T10:00:00Z", 137, reason="Evicted", message="low on memory")
    crashed = _pod("j-2", "2026-12-06T10:01:00Z", 1, "Traceback…\nValueError: bad")
    for pods in ([evicted, crashed], [crashed, evicted]):
        reason, message = failure_of(BACKOFF, {}, pods, "training Job")
        assert reason == "BackoffLimitExceeded"
        assert message == "pod j-2: container train exited with code 1: Traceback…\nValueError: bad"
    reason, message = failure_of(BACKOFF, {}, [evicted], "training Job")
    assert (reason, message) == ("Evicted", "pod j-1: low on memory")


def test_a_crash_without_a_log_still_names_its_exit_code() -> None:
    reason, message = failure_of(BACKOFF, {}, [_pod("j-1", "t", 139)], "ingest Job")
    assert (reason, message) == (
        "BackoffLimitExceeded",
        "pod j-1: container train exited with code 139",
    )


def test_past_its_deadline_the_job_says_more_than_its_killed_pod() -> None:
    job = _job("DeadlineExceeded", "Job was active longer than specified deadline")
    reason, message = failure_of(job, {}, [_pod("j-1", "t", 143)], "training Job")
    assert reason == "DeadlineExceeded"
    assert message == "training Job j failed: Job was active longer than specified deadline"


def test_the_workloads_own_report_comes_before_its_pods_end() -> None:
    report = {"status": "Failed", "reason": "InvalidSpec", "message": "spec.target: no column y"}
    reason, message = failure_of(BACKOFF, report, [_pod("j-1", "t", 2, "x")], "training Job")
    assert (reason, message) == ("InvalidSpec", "spec.target: no column y")


def test_of_two_pods_killed_for_memory_the_last_try_is_named() -> None:
    # Listed by name, the older pod may come first.
    older, newer = (
        {**_pod(name, created, 137), "spec": {"restartPolicy": "Never"}}
        for name, created in (
            ("j-aaaaa", "2026-12-06T10:00:00Z"),
            ("j-zzzzz", "2026-12-06T10:01:00Z"),
        )
    )
    for container in (older, newer):
        container["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] = "OOMKilled"
    reason, message = failure_of(BACKOFF, {}, [older, newer], "training Job")
    assert reason == "OOMKilled" and message.startswith("pod j-zzzzz: "), message
