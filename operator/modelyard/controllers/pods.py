"""Child pods that cannot start or keep dying, read from the pod's own status; and a Job's pod the
API server refused to create, read from the Job controller's FailedCreate event.

Kubernetes says why a pod is stuck only on the pod (a Job or Deployment just waits), so the
operator watches its children's pods and hands each problem, in the pod's own words, to the
owner's controller within seconds: a missing Secret or ConfigMap, an image that cannot be pulled,
no node that fits, a container killed for memory, a container that keeps crashing (with the
reason the workload itself reported before it exited, such as DigestMismatch).

A pod the scheduler cannot place yet is the one case the cluster often fixes by itself: room
frees as other pods end (a finished run's Dask workers, a namespace being deleted) or a cluster
autoscaler adds a node. It is reported at once as progress (WaitingForNode, with the scheduler's
message) and becomes a stall (Unschedulable) only when no node took it within
UNSCHEDULABLE_PATIENCE_SECONDS, as a Deployment is Progressing until its deadline. A Job's pod
killed for memory is progress too: its Job starts another while it has retries left, and the run
or ingestion fails (OOMKilled) when it has none.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from modelyard.controllers.conditions import Condition, get_condition, progressing, stalled
from modelyard.controllers.provenance import controller
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
POD_REASONS = frozenset(
    {
        *STUCK,
        Reason.WaitingForNode,
        Reason.Unschedulable,
        Reason.OOMKilled,
        Reason.CrashLoopBackOff,
        Reason.FailedCreate,
    }
)
# How long a pod may wait for a node before it stalls its owner: longer than pods of ours take to
# end and free their room (seconds; the e2e tier's handover from a three-worker Dask cluster to
# the model server), short enough that the stall still shows within 30 s of the object's creation.
UNSCHEDULABLE_PATIENCE_SECONDS = 20.0
# How much of a crashed container's log a status message quotes: a traceback's last lines.
TAIL_CHARACTERS = 300


@dataclass(frozen=True)
class PodProblem:
    reason: str
    message: str
    #: False while the cluster may still solve it by itself: reported as progress, not a stall.
    final: bool = True

    @property
    def warns(self) -> bool:
        """Worth a Warning Event: every stall, and a pod killed for memory even while its Job
        retries, as each kill is something that happened, which the condition's next message
        overwrites. A pod waiting for a node is only waiting."""
        return self.final or self.reason == Reason.OOMKilled


def problem(
    pod: dict[str, Any], patience: float = UNSCHEDULABLE_PATIENCE_SECONDS
) -> PodProblem | None:
    """Why the pod cannot do its work, or None when nothing stops it (yet). A pod no node has
    taken for `patience` seconds is Unschedulable; before that it is WaitingForNode (not final)."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            message = f"pod {name}: {condition.get('message') or 'no node fits'}"
            if seconds_since(condition.get("lastTransitionTime")) < patience:
                return PodProblem(Reason.WaitingForNode, message, final=False)
            return PodProblem(Reason.Unschedulable, message)
    for container in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        found = _container_problem(name, container)
        if found is not None and found.reason == Reason.OOMKilled and _never_restarted(pod):
            # A Job's pod: the Job starts another while it has retries left, and fails (its run
            # or ingestion says OOMKilled) when it has none. Until then it is in progress.
            return replace(found, final=False)
        if found is not None:
            return found
    return None


def _never_restarted(pod: dict[str, Any]) -> bool:
    return bool((pod.get("spec") or {}).get("restartPolicy") == "Never")


def refused(job: dict[str, Any], message: str) -> PodProblem:
    """The API server refused to create the Job's pod (a quota, a LimitRange, an admission
    policy), in the words of the Job controller's FailedCreate event."""
    return PodProblem(
        Reason.FailedCreate,
        f"Job {job['metadata']['name']}: {message.removeprefix('Error creating: ').strip()}",
    )


def seconds_since(stamp: str | None) -> float:
    """Seconds since a status time stamp; infinite when there is none (nothing to wait for)."""
    try:
        then = datetime.strptime(stamp or "", "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return float("inf")
    return (datetime.now(UTC) - then).total_seconds()


def _container_problem(pod: str, container: dict[str, Any]) -> PodProblem | None:
    state = container.get("state") or {}
    waiting = state.get("waiting") or {}
    last = (container.get("lastState") or {}).get("terminated") or {}
    if "running" in state and container.get("ready"):
        # It serves again: an earlier end (an OOM kill days ago) is history, not a problem. A
        # restarted container not ready yet (a model loading again) still shows it.
        last = {}
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
            f"(exit code {last.get('exitCode')}): {_tail(last.get('message'))}",
        )
    return None


def last_words(pod: dict[str, Any]) -> tuple[str | None, str] | None:
    """What a pod that failed without a report of ours says about its end: the kubelet's reason
    for stopping it (an eviction names what ran low; the reason is Evicted), else its container's
    exit code and the end of its log (FallbackToLogsOnError: it crashed before it could report;
    no reason of its own). None when it did not fail."""
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    if status.get("reason"):
        said = f"pod {name}: {status.get('message') or status['reason']}"
        return (Reason.Evicted if status["reason"] == "Evicted" else None), said
    for container in status.get("containerStatuses") or []:
        terminated = (container.get("state") or {}).get("terminated") or {}
        if terminated.get("exitCode") not in (None, 0):
            said = (
                f"pod {name}: container {container.get('name')} exited with code "
                f"{terminated['exitCode']}"
            )
            tail = _tail(terminated.get("message"))
            return None, f"{said}: {tail}" if tail else said
    return None


def _tail(log: str | None) -> str:
    """The end of a log or termination message: the last lines, at most TAIL_CHARACTERS."""
    return (log or "").strip()[-TAIL_CHARACTERS:]


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


def recovered(pod: dict[str, Any], conditions: list[Condition] | None) -> bool:
    """Whether the owner's status shows a pod problem this pod no longer has: a stall once the
    pod runs again; progress (waiting for a node, a Job's pod killed for memory that its Job
    retries) once this pod has no problem. Only a problem of this pod or of its siblings (the
    Job's retry, the ReplicaSet's replacement) or its Job's: a run on workers has several pods,
    and one that runs does not make another start."""
    stalled = get_condition(conditions, "Stalled") or {}
    if stalled.get("reason") in POD_REASONS:
        return started(pod) and _about(pod, stalled)
    waiting = get_condition(conditions, "Reconciling") or {}
    return waiting.get("reason") in POD_REASONS and problem(pod) is None and _about(pod, waiting)


def _about(pod: dict[str, Any], condition: Condition) -> bool:
    """Whether the condition's message (as `problem` and `refused` word it) names the pod, a pod
    of the same controller, or that controller."""
    meta = pod["metadata"]
    message = str(condition.get("message") or "")
    if f"pod {meta['name']}:" in message:
        return True
    owner = controller(meta).get("name")
    if not owner:
        return False
    # A controller's pods are named <controller>-<suffix>: the suffix has no hyphen, so the pods
    # of a Dask cluster named after a run's Job (<job>-scheduler-…) are not the Job's.
    return (
        f"Job {owner}:" in message
        or re.search(rf"pod {re.escape(owner)}-[a-z0-9]+:", message) is not None
    )


def showing(
    conditions: list[Condition] | None,
    found: PodProblem,
    generation: int | None,
    keep_ready: bool,
) -> list[Condition] | None:
    """The owner's conditions once they show `found`: a stall when it is final, else progress
    (Ready kept with `keep_ready`); None when they show it already."""
    shown = get_condition(conditions, "Stalled" if found.final else "Reconciling") or {}
    if (shown.get("reason"), shown.get("message")) == (found.reason, found.message):
        return None
    if found.final:
        return stalled(conditions, found.reason, found.message, generation)
    return progressing(conditions, found.reason, found.message, generation, keep_ready)
