"""Where a workload's result may come from: the Job the operator made for that ingestion or run,
and that Job's own pods.

Labels prove nothing: anyone who may create Jobs or pods in the namespace can copy them. A Job
counts when its controller is the object that wants the result (by UID) and its pod template is
the one the operator builds; the operator then records that Job's UID, and only that Job's
result is taken. A pod counts when its controller is that Job (by UID) and it runs the Job's own
template: the image the operator chose, with the command and environment it set.
"""

from __future__ import annotations

import json
from typing import Any

from modelyard.controllers.kube import Kube, Manifest

# What decides the code a container runs and its inputs. Resources are left out: the API
# server rewrites quantities (0.5 → 500m), and they do not change what a result means.
_CONTAINER_FIELDS = ("name", "image", "command", "args", "env", "envFrom", "volumeMounts")


def controller(meta: dict[str, Any]) -> dict[str, Any]:
    """The owner reference of the object's controller; empty when nothing controls it."""
    return next((r for r in meta.get("ownerReferences") or [] if r.get("controller")), {})


def controller_uid(meta: dict[str, Any]) -> str | None:
    reference = controller(meta)
    return str(reference.get("uid")) if reference else None


def _workload(pod_spec: dict[str, Any]) -> dict[str, Any]:
    def containers(key: str) -> list[dict[str, Any]]:
        return [
            {field: container.get(field) for field in _CONTAINER_FIELDS}
            for container in pod_spec.get(key) or []
        ]

    return {
        "containers": containers("containers"),
        "initContainers": containers("initContainers"),
        "volumes": sorted(
            json.dumps(volume, sort_keys=True) for volume in pod_spec.get("volumes") or []
        ),
        "shareProcessNamespace": bool(pod_spec.get("shareProcessNamespace")),
    }


def same_workload(pod_spec: dict[str, Any], other: dict[str, Any]) -> bool:
    """Whether two pod specs run the same containers with the same inputs and volumes."""
    return _workload(pod_spec) == _workload(other)


def _template_spec(job: Manifest) -> dict[str, Any]:
    spec: dict[str, Any] = job["spec"]["template"]["spec"]
    return spec


def foreign_job(job: Manifest, owner_uid: str, desired: Manifest) -> str | None:
    """Why an existing Job under the name of the operator's own is not the operator's, or None
    when it is (made earlier by the operator, before a restart lost the answer)."""
    name = job["metadata"]["name"]
    if controller_uid(job["metadata"]) != owner_uid:
        return f"Job {name} exists and belongs to another object"
    if not same_workload(_template_spec(job), _template_spec(desired)):
        return f"Job {name} exists with a pod template the operator did not build"
    return None


def own_pods(kube: Kube, job: Manifest) -> list[Manifest]:
    """The Job's own pods: made by it (by UID) from its template. A pod that copied the Job's
    labels and owner reference but runs something else is not among them."""
    meta = job["metadata"]
    uid = meta["uid"]
    template = _template_spec(job)
    pods = kube.list_objects(
        "v1", "Pod", meta["namespace"], f"batch.kubernetes.io/controller-uid={uid}"
    )
    return [
        pod
        for pod in pods
        if controller_uid(pod["metadata"]) == uid and same_workload(pod["spec"], template)
    ]


def termination_summary(job: Manifest, pods: list[Manifest]) -> dict[str, Any] | None:
    """The JSON summary the Job's own `pods` left in their termination message (newest first),
    or None when none of them left one."""
    container = _template_spec(job)["containers"][0]["name"]
    ended = []
    for pod in pods:
        for status in (pod.get("status") or {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated")
            if status.get("name") == container and terminated and terminated.get("message"):
                ended.append((terminated.get("finishedAt") or "", terminated["message"]))
    for _, message in sorted(ended, reverse=True):
        try:
            parsed = json.loads(message)
        except json.JSONDecodeError:
            continue  # FallbackToLogsOnError put log lines here: not our summary
        if isinstance(parsed, dict):
            return parsed
    return None
