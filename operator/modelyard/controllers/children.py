"""Watches the Jobs the operator created and hands each finished (or vanished) one to its owner's
controller."""

from __future__ import annotations

from typing import Any

import kopf

from modelyard.controllers import dataset, trainingjob
from modelyard.controllers.context import from_memo
from modelyard.controllers.jobs import outcome
from modelyard.resources.jobs import INGEST_COMPONENT, TRAIN_COMPONENT

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
