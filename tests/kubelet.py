"""The tests' stand-in for a kubelet on the control-plane tier: it moves pods that the real Job
and ReplicaSet controllers created through the states a kubelet would report."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from kubernetes import client

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 60) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.2)


def _stamp(offset: float = 0) -> str:
    """Now (`offset` seconds from now), as the API writes time stamps."""
    return (datetime.now(UTC) + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


def pods(core: client.CoreV1Api, namespace: str, selector: str) -> list[client.V1Pod]:
    return list(core.list_namespaced_pod(namespace, label_selector=selector).items)


def finish_job(
    core: client.CoreV1Api,
    namespace: str,
    job_name: str,
    message: dict[str, Any],
    exit_code: int = 0,
    timeout: float = 60,
) -> None:
    """The Job's pod ends with `exit_code`, leaving `message` as its termination message."""
    finish_pod(
        core, namespace, f"batch.kubernetes.io/job-name={job_name}", message, exit_code, timeout
    )


def finish_pod(
    core: client.CoreV1Api,
    namespace: str,
    selector: str,
    message: dict[str, Any],
    exit_code: int = 0,
    timeout: float = 60,
) -> None:
    """The first pod matching `selector` ends with `exit_code`, leaving `message`."""
    pod = wait_for(
        f"a pod matching {selector}",
        lambda: next(iter(pods(core, namespace, selector)), None),
        timeout,
    )
    terminate(core, pod, message, exit_code)


def ingest_pods_of(dataset: str) -> str:
    """The selector of a Dataset's ingest pods (its Job's name carries the Dataset's UID)."""
    return f"modelyard.dev/dataset={dataset},app.kubernetes.io/component=ingest"


def published_where_told(pod: client.V1Pod, message: dict[str, Any]) -> dict[str, Any]:
    """`message` with the locations a real workload would report: under the output prefix the
    operator gave the pod (MODELYARD_OUTPUT_URI), unless the message names its own."""
    env = {var.name: var.value for var in pod.spec.containers[0].env or []}
    output = env.get("MODELYARD_OUTPUT_URI")
    if output is None:
        return message
    filled = dict(message)
    if "version" in filled and "uri" not in filled:
        filled["uri"] = output + filled["version"].removeprefix("sha256:")
    if "model" in filled and "uri" not in filled["model"]:
        filled["model"] = {"uri": output + "model.joblib", **filled["model"]}
    return filled


def terminate(
    core: client.CoreV1Api, pod: client.V1Pod, message: dict[str, Any], exit_code: int = 0
) -> None:
    """The pod's container ends with `exit_code`, leaving `message` as its termination message
    (with the locations filled in where the workload would have published)."""
    report_ended(core, pod, exit_code, json.dumps(published_where_told(pod, message)))


def report_ended(core: client.CoreV1Api, pod: client.V1Pod, exit_code: int, message: str) -> None:
    """What the kubelet reports when the pod's container ended (`message`: its termination
    message as the kubelet keeps it; none when empty)."""
    terminated: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": "Completed" if exit_code == 0 else "Error",
        "startedAt": _stamp(),
        "finishedAt": _stamp(),
    }
    if message:
        terminated["message"] = message
    _report(
        core,
        pod,
        "Succeeded" if exit_code == 0 else "Failed",
        {"terminated": terminated},
        conditions=[{"type": "Ready", "status": "False", "lastTransitionTime": _stamp()}],
    )


def oom_killed(core: client.CoreV1Api, pod: client.V1Pod) -> None:
    """What the kubelet reports when the pod's container was killed for its memory limit."""
    killed = {"exitCode": 137, "reason": "OOMKilled", "startedAt": _stamp(), "finishedAt": _stamp()}
    _report(core, pod, "Failed", {"terminated": killed})


def evicted(core: client.CoreV1Api, pod: client.V1Pod, message: str) -> None:
    """What the kubelet reports when it evicted the pod under node pressure: the pod failed with
    reason Evicted and its message, its container killed."""
    killed = {"exitCode": 137, "reason": "Error", "startedAt": _stamp(), "finishedAt": _stamp()}
    _report(
        core,
        pod,
        "Failed",
        {"terminated": killed},
        conditions=[
            {
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "TerminationByKubelet",
                "message": message,
                "lastTransitionTime": _stamp(),
            }
        ],
        reason="Evicted",
        message=message,
    )


def _report(
    core: client.CoreV1Api,
    pod: client.V1Pod,
    phase: str,
    state: dict[str, Any],
    ready: bool = False,
    conditions: list[dict[str, Any]] | None = None,
    **fields: Any,
) -> None:
    """Patch the pod's status as the kubelet writes it: its phase and its one container's state."""
    container = pod.spec.containers[0]
    status: dict[str, Any] = {
        "phase": phase,
        "containerStatuses": [
            {
                "name": container.name,
                "image": container.image,
                "imageID": "",
                "ready": ready,
                "restartCount": 0,
                "started": "running" in state,
                "state": state,
            }
        ],
        **fields,
    }
    if conditions is not None:
        status["conditions"] = conditions
    core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": status})


def version_of(dataset: str) -> str:
    """The content version the stand-in ingest workload publishes for a Dataset."""
    return "sha256:" + hashlib.sha256(dataset.encode()).hexdigest()


def model_digest_of(training_job: str, run: str) -> str:
    return "sha256:" + hashlib.sha256(f"{training_job}/{run}".encode()).hexdigest()


def card_digest_of(model_digest: str) -> str:
    return "sha256:" + hashlib.sha256(f"card of {model_digest}".encode()).hexdigest()


def finish_workloads(core: client.CoreV1Api, namespace: str) -> int:
    """One pass of a kubelet under which every ingest and training workload succeeds: each
    running pod of a Modelyard Job ends with its workload's summary. How many pods it ended."""
    ended = 0
    for pod in pods(core, namespace, "app.kubernetes.io/managed-by=modelyard"):
        labels = pod.metadata.labels or {}
        if pod.status.phase in ("Succeeded", "Failed") or pod.metadata.deletion_timestamp:
            continue
        env = {var.name: var.value for var in pod.spec.containers[0].env or []}
        if "modelyard.dev/run" in labels:
            name, run = labels["modelyard.dev/trainingjob"], labels["modelyard.dev/run"]
            summary = train_summary(
                run, env["MODELYARD_DATASET_VERSION"], model_digest_of(name, run), 0.9
            )
        elif "modelyard.dev/dataset" in labels:
            summary = ingest_summary(version_of(labels["modelyard.dev/dataset"]))
        else:
            continue
        terminate(core, pod, summary)
        ended += 1
    return ended


def make_ready(core: client.CoreV1Api, namespace: str, selector: str, count: int) -> None:
    """`count` pods matching `selector` run and pass their readiness probe."""
    ready_pods = wait_for(
        f"{count} pods matching {selector}",
        lambda: (lambda found: found if len(found) >= count else None)(
            [p for p in pods(core, namespace, selector) if not p.metadata.deletion_timestamp]
        ),
    )
    for pod in ready_pods:
        conditions = [
            {"type": kind, "status": "True", "lastTransitionTime": _stamp()}
            for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
        ]
        running = {"running": {"startedAt": _stamp()}}
        _report(core, pod, "Running", running, True, conditions, podIP="10.244.0.99")


def ingest_summary(version: str, rows: int = 150) -> dict[str, Any]:
    """What a successful ingest workload leaves as its termination message."""
    return {
        "status": "Succeeded",
        "version": version,
        "format": "parquet",
        "rows": rows,
        "columns": 5,
        "sizeBytes": 2806,
        "trainRows": rows - 30,
        "testRows": 30,
        "createdAt": "2026-11-27T10:00:00Z",
        "reused": False,
        "statistics": [
            {
                "name": "sepal length (cm)",
                "type": "float",
                "count": rows,
                "nulls": 0,
                "min": 4.3,
                "max": 7.9,
                "mean": 5.84,
                "std": 0.83,
            },
            {"name": "target", "type": "integer", "count": rows, "nulls": 0, "min": 0, "max": 2},
        ],
    }


def train_summary(run: str, version: str, digest: str, accuracy: float) -> dict[str, Any]:
    """What a successful training workload leaves as its termination message."""
    return {
        "status": "Succeeded",
        "run": run,
        "datasetVersion": version,
        "model": {"digest": digest, "cardDigest": card_digest_of(digest)},
        "metrics": {"accuracy": accuracy, "f1_macro": accuracy},
        "params": {"n_estimators": 100},
        "task": "classification",
        "trainRows": 120,
        "testRows": 30,
    }


def wait_with(core: client.CoreV1Api, pod: client.V1Pod, reason: str, message: str) -> None:
    """The pod's container waits, as the kubelet reports a container it cannot start."""
    _report(core, pod, "Pending", {"waiting": {"reason": reason, "message": message}})


def unschedulable(
    core: client.CoreV1Api, pod: client.V1Pod, message: str, waited: float = 0
) -> None:
    """The scheduler's verdict on a pod no node can take (for `waited` seconds already)."""
    condition = {
        "type": "PodScheduled",
        "status": "False",
        "reason": "Unschedulable",
        "message": message,
        "lastTransitionTime": _stamp(-waited),
    }
    status = {"phase": "Pending", "conditions": [condition]}
    core.patch_namespaced_pod_status(pod.metadata.name, pod.metadata.namespace, {"status": status})


def scheduled(core: client.CoreV1Api, pod: client.V1Pod) -> None:
    """A node took the pod: its containers are being created (nothing runs yet)."""
    condition = {"type": "PodScheduled", "status": "True", "lastTransitionTime": _stamp()}
    _report(core, pod, "Pending", {"waiting": {"reason": "ContainerCreating"}}, False, [condition])


def running(core: client.CoreV1Api, pod: client.V1Pod) -> None:
    """The pod's container runs (not yet ready)."""
    _report(core, pod, "Running", {"running": {"startedAt": _stamp()}})
