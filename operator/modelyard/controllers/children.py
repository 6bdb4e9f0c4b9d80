"""Watches the Jobs the operator created and hands each finished one to its owner's controller."""

from __future__ import annotations

from typing import Any

import kopf

from modelyard.controllers import dataset, trainingjob
from modelyard.controllers.context import from_memo
from modelyard.controllers.jobs import outcome
from modelyard.resources.jobs import INGEST_COMPONENT, TRAIN_COMPONENT

HANDLERS = {INGEST_COMPONENT: dataset.on_job_finished, TRAIN_COMPONENT: trainingjob.on_job_finished}


def finished(body: kopf.Body, type: str | None, **_: Any) -> bool:
    """A Job that ended, of a kind we follow. kopf checks this in its event loop: the many events
    of running Jobs (created, pod started…) never wait for one of the worker threads."""
    component = body.metadata.labels.get("app.kubernetes.io/component")
    return type != "DELETED" and component in HANDLERS and outcome(dict(body)) is not None


@kopf.on.event(
    "batch", "v1", "jobs", labels={"app.kubernetes.io/managed-by": "modelyard"}, when=finished
)
def workload_job_event(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    job = dict(body)
    succeeded = outcome(job)
    assert succeeded is not None  # `finished` let only ended Jobs through
    handler = HANDLERS[job["metadata"]["labels"]["app.kubernetes.io/component"]]
    handler(from_memo(memo, kwargs), job, succeeded)
