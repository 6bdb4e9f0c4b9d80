"""Reading a finished Job: did it succeed, and if not, what Kubernetes says stopped it."""

from __future__ import annotations

from typing import Any

from modelyard.reasons import Reason


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
