"""Child pods that cannot start or keep dying, read from the pod's own status.

Kubernetes says why a pod is stuck only on the pod (a Job or Deployment just waits), so the
operator watches its children's pods and hands each problem, in the pod's own words, to the
owner's controller within seconds: a missing Secret or ConfigMap, an image that cannot be pulled,
no node that fits, a container killed for memory, a container that keeps crashing (with the
reason the workload itself reported before it exited, such as DigestMismatch).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modelyard.reasons import Reason

# Waiting reasons of a container that will not start without a change to the cluster or spec.
STUCK = frozenset(
    {
        Reason.CreateContainerConfigError,
        Reason.CreateContainerError,
        Reason.ErrImagePull,
        Reason.ImagePullBackOff,
        Reason.InvalidImageName,
        Reason.ErrImageNeverPull,
        Reason.RunContainerError,
    }
)
# The kubelet's own start-up race, not a problem of the pod: a pod created moments after its
# namespace (or its Secret) waits for the kubelet's watch cache, says CreateContainerConfigError
# with one of these, and starts on the kubelet's next try.
CACHE_NOT_SYNCED = ("failed to sync secret cache", "failed to sync configmap cache")
# Every reason a pod problem may carry: the owner clears a stall with one of these once its pod
# runs again.
POD_REASONS = frozenset({*STUCK, Reason.Unschedulable, Reason.OOMKilled, Reason.CrashLoopBackOff})


@dataclass(frozen=True)
class PodProblem:
    reason: str
    message: str


def problem(pod: dict[str, Any]) -> PodProblem | None:
    """Why the pod cannot do its work, or None when nothing stops it (yet)."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            return PodProblem(
                Reason.Unschedulable, f"pod {name}: {condition.get('message') or 'no node fits'}"
            )
    for container in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        found = _container_problem(name, container)
        if found is not None:
            return found
    return None


def _container_problem(pod: str, container: dict[str, Any]) -> PodProblem | None:
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    last = (container.get("lastState") or {}).get("terminated") or {}
    terminated = state.get("terminated") or last
    if waiting.get("reason") in STUCK:
        if any(text in (waiting.get("message") or "") for text in CACHE_NOT_SYNCED):
            return None
        return PodProblem(waiting["reason"], f"pod {pod}: {waiting.get('message') or ''}".strip())
    if terminated.get("reason") == "OOMKilled":
        return PodProblem(
            Reason.OOMKilled,
            f"pod {pod}: container {container.get('name')} was killed for using more memory than "
            "its limit; give it a higher spec.resources.limits.memory",
        )
    if waiting.get("reason") == Reason.CrashLoopBackOff:
        reported = _reported(last.get("message"))
        if reported is not None:
            return PodProblem(reported[0], f"pod {pod}: {reported[1]}")
        return PodProblem(
            Reason.CrashLoopBackOff,
            f"pod {pod}: container {container.get('name')} keeps exiting "
            f"(exit code {last.get('exitCode')}): {(last.get('message') or '').strip()[-300:]}",
        )
    return None


def _reported(message: str | None) -> tuple[str, str] | None:
    """The reason and message a Modelyard workload left before it exited, if it left one."""
    try:
        summary = json.loads(message or "")
    except json.JSONDecodeError:
        return None
    if not isinstance(summary, dict) or summary.get("reason") not in Reason.__members__:
        return None
    return str(summary["reason"]), str(summary.get("message") or "")


def started(pod: dict[str, Any]) -> bool:
    """Whether every container of the pod runs: whatever stopped it is over."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return bool(statuses) and all((s.get("state") or {}).get("running") for s in statuses)
