"""Watches the Jobs the operator created, and their pods, the pods of runs' Dask clusters and the
model servers' pods, and hands each finished or vanished Job (a Job whose pod succeeded counts as
finished), each Job whose pod the API server refused, and each pod that cannot start (or starts
again), to its owner's controller. While an owner shows a pod waiting for a node, its pods are
handed over again every few seconds: nothing about such a pod changes when its patience runs out,
or often when a node takes it, so no event would."""

from __future__ import annotations

from typing import Any

import kopf

from modelyard.api import GROUP, VERSION
from modelyard.controllers import dataset, modeldeployment, pods, provenance, trainingjob
from modelyard.controllers.conditions import get_condition
from modelyard.controllers.context import Context, from_memo
from modelyard.controllers.jobs import outcome
from modelyard.reasons import Reason
from modelyard.resources.dask import COMPONENT as ENGINE_COMPONENT
from modelyard.resources.jobs import INGEST_COMPONENT, TRAIN_COMPONENT
from modelyard.resources.serving import COMPONENT as SERVER_COMPONENT

FINISHED = {INGEST_COMPONENT: dataset.on_job_finished, TRAIN_COMPONENT: trainingjob.on_job_finished}
DELETED = {INGEST_COMPONENT: dataset.on_job_deleted, TRAIN_COMPONENT: trainingjob.on_job_deleted}
REFUSED = {INGEST_COMPONENT: dataset.on_job_refused, TRAIN_COMPONENT: trainingjob.on_job_refused}
MANAGED = {"app.kubernetes.io/managed-by": "modelyard"}
# The only Events the operator watches (a server-side field selector, set in runner.configure):
# the Job controller's word that the API server refused a Job's pod. Nothing else says so: the
# Job just has no pod.
JOB_REFUSED_EVENTS = "involvedObject.kind=Job,reason=FailedCreate"
JOB_TRACKING = "batch.kubernetes.io/job-tracking"  # the Job controller's, until it counts the pod


def _component(body: kopf.Body) -> str | None:
    component: str | None = body.metadata.labels.get("app.kubernetes.io/component")
    return component


def finished(body: kopf.Body, type: str | None, **_: Any) -> bool:
    """A Job that ended, of a kind we follow. kopf checks this in its event loop: the many events
    of running Jobs (created, pod started…) never wait for one of the worker threads."""
    return type != "DELETED" and _component(body) in FINISHED and outcome(dict(body)) is not None


def deleted(body: kopf.Body, type: str | None, **_: Any) -> bool:
    return type == "DELETED" and _component(body) in DELETED


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED, when=finished)
def workload_job_event(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    job = dict(body)
    succeeded = outcome(job)
    assert succeeded is not None  # `finished` let only ended Jobs through
    FINISHED[job["metadata"]["labels"]["app.kubernetes.io/component"]](
        from_memo(memo, kwargs), job, succeeded
    )


@kopf.on.event("batch", "v1", "jobs", labels=MANAGED, when=deleted)
def workload_job_deleted(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    job = dict(body)
    DELETED[job["metadata"]["labels"]["app.kubernetes.io/component"]](from_memo(memo, kwargs), job)


def job_refused(body: kopf.Body, type: str | None, **_: Any) -> bool:
    involved = body.get("involvedObject") or {}
    return (
        type != "DELETED"
        and body.get("reason") == "FailedCreate"
        and involved.get("kind") == "Job"
        # An Event speaks only for its own namespace's objects: one written in another tenant's
        # namespace that names ours is not believed.
        and involved.get("namespace") == body.metadata.namespace
    )


@kopf.on.event("", "v1", "events", when=job_refused)
def workload_job_refused(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """The Job controller could not create the pod of a Job of ours: stall its owner in the API
    server's words (whose quota, which limit), as the Deployment's ReplicaFailure does for model
    servers. Believed only while the Job it names, by uid, is ours, unfinished and without a pod."""
    involved = body["involvedObject"]
    context = from_memo(memo, kwargs)
    job = context.kube.get("batch/v1", "Job", involved["namespace"], involved["name"])
    if job is None or job["metadata"]["uid"] != involved.get("uid"):
        return
    labels = job["metadata"].get("labels") or {}
    component = labels.get("app.kubernetes.io/component")
    status = job.get("status") or {}
    if (
        labels.get("app.kubernetes.io/managed-by") != MANAGED["app.kubernetes.io/managed-by"]
        or component not in REFUSED
        or outcome(job) is not None
        or status.get("active")
    ):
        return
    REFUSED[component](context, job, pods.refused(job, str(body.get("message") or "")))


def succeeded(body: kopf.Body, type: str | None, **_: Any) -> bool:
    """A workload pod whose container exited 0 and that its Job has not counted yet: the Job has
    succeeded (each has one pod to complete, never restarted). The container's state, not the
    pod's phase: the kubelet sets the phase only once the pod's sandbox is torn down, about a
    second later. Once the Job controller has counted the pod (removed its tracking finalizer),
    the Job's own Complete event follows, and later pod events need no worker thread."""
    if type == "DELETED" or _component(body) not in FINISHED:
        return False
    if JOB_TRACKING not in (body.metadata.get("finalizers") or []):
        return False
    statuses = (body.get("status") or {}).get("containerStatuses") or []
    return any(
        ((status.get("state") or {}).get("terminated") or {}).get("exitCode") == 0
        for status in statuses
    )


@kopf.on.event("", "v1", "pods", labels=MANAGED, when=succeeded)
def workload_pod_succeeded(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Record the result as soon as the pod that made it exited: the Job controller marks the
    Job Complete one to two seconds later (tests/bench/chain), and the quickstart waits on that
    twice. Its Complete event then finds the result recorded and does nothing."""
    pod = dict(body)
    meta = pod["metadata"]
    owner = provenance.controller(meta)
    if owner.get("kind") != "Job":
        return
    context = from_memo(memo, kwargs)
    job = context.kube.get("batch/v1", "Job", meta["namespace"], owner["name"])
    if job is None or job["metadata"]["uid"] != provenance.controller_uid(meta):
        return  # gone, or another Job by that name: its own events say what happened
    own = {other["metadata"]["uid"] for other in provenance.own_pods(context.kube, job)}
    if meta["uid"] not in own:
        return  # a pod that copied the Job's labels and owner: its success is not the Job's
    FINISHED[meta["labels"]["app.kubernetes.io/component"]](context, job, True)


def _server_pod(context: Context, pod: dict[str, Any]) -> None:
    name = pod["metadata"]["labels"].get("modelyard.dev/modeldeployment")
    if name:
        modeldeployment.pod_changed(context, pod["metadata"]["namespace"], name)


POD_OWNERS = {
    INGEST_COMPONENT: dataset.on_pod,
    TRAIN_COMPONENT: trainingjob.on_pod,
    ENGINE_COMPONENT: trainingjob.on_engine_pod,
    SERVER_COMPONENT: _server_pod,
}


def pod_news(body: kopf.Body, type: str | None, **_: Any) -> bool:
    """A pod that cannot start, or runs: the only pod events worth a worker thread (checked in
    kopf's event loop; the many others never wait for one)."""
    if type == "DELETED" or _component(body) not in POD_OWNERS:
        return False
    pod = dict(body)
    return pods.problem(pod) is not None or pods.started(pod)


@kopf.on.event("", "v1", "pods", labels=MANAGED, when=pod_news)
def workload_pod_event(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    pod = dict(body)
    POD_OWNERS[pod["metadata"]["labels"]["app.kubernetes.io/component"]](
        from_memo(memo, kwargs), pod
    )


# The pods each kind's controller follows: its label on them, and their components.
FOLLOWED_PODS = {
    "Dataset": ("modelyard.dev/dataset", (INGEST_COMPONENT,)),
    "TrainingJob": ("modelyard.dev/trainingjob", (TRAIN_COMPONENT, ENGINE_COMPONENT)),
    "ModelDeployment": ("modelyard.dev/modeldeployment", (SERVER_COMPONENT,)),
}
WAITING_TICK_SECONDS = 2.0


def waiting_for_node(status: kopf.Status, **_: Any) -> bool:
    reconciling = get_condition(status.get("conditions"), "Reconciling") or {}
    return reconciling.get("reason") == Reason.WaitingForNode


@kopf.timer(GROUP, VERSION, "datasets", interval=WAITING_TICK_SECONDS, when=waiting_for_node)
@kopf.timer(GROUP, VERSION, "trainingjobs", interval=WAITING_TICK_SECONDS, when=waiting_for_node)
@kopf.timer(
    GROUP, VERSION, "modeldeployments", interval=WAITING_TICK_SECONDS, when=waiting_for_node
)
def pods_waiting_for_node(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    """Hand the owner's pods over again: one whose patience ran out stalls it, one a node took
    puts it back in progress."""
    meta = body["metadata"]
    label, components = FOLLOWED_PODS[body["kind"]]
    selector = f"{label}={meta['name']},app.kubernetes.io/component in ({','.join(components)})"
    context = from_memo(memo, kwargs)
    for pod in context.kube.list_objects("v1", "Pod", meta["namespace"], selector):
        POD_OWNERS[pod["metadata"]["labels"]["app.kubernetes.io/component"]](context, pod)
