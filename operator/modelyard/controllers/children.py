"""Watches the Jobs the operator created, and their pods and the model servers' pods, and hands
each finished or vanished Job, and each pod that cannot start (or starts again), to its owner's
controller."""

from __future__ import annotations

from typing import Any

import kopf

from modelyard.controllers import dataset, modeldeployment, pods, trainingjob
from modelyard.controllers.context import Context, from_memo
from modelyard.controllers.jobs import outcome
from modelyard.resources.jobs import INGEST_COMPONENT, TRAIN_COMPONENT
from modelyard.resources.serving import COMPONENT as SERVER_COMPONENT

FINISHED = {INGEST_COMPONENT: dataset.on_job_finished, TRAIN_COMPONENT: trainingjob.on_job_finished}
DELETED = {INGEST_COMPONENT: dataset.on_job_deleted, TRAIN_COMPONENT: trainingjob.on_job_deleted}
MANAGED = {"app.kubernetes.io/managed-by": "modelyard"}


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


def _server_pod(context: Context, pod: dict[str, Any]) -> None:
    name = pod["metadata"]["labels"].get("modelyard.dev/modeldeployment")
    if name:
        modeldeployment.pod_changed(context, pod["metadata"]["namespace"], name)


POD_OWNERS = {
    INGEST_COMPONENT: dataset.on_pod,
    TRAIN_COMPONENT: trainingjob.on_pod,
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
