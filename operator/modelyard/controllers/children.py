"""Watches the Jobs the operator created and hands each finished one to its owner's controller."""

from __future__ import annotations

from typing import Any

import kopf

from modelyard.controllers import dataset, trainingjob
from modelyard.controllers.context import from_memo
from modelyard.controllers.jobs import outcome
from modelyard.resources.jobs import INGEST_COMPONENT, TRAIN_COMPONENT

HANDLERS = {INGEST_COMPONENT: dataset.on_job_finished, TRAIN_COMPONENT: trainingjob.on_job_finished}


@kopf.on.event("batch", "v1", "jobs", labels={"app.kubernetes.io/managed-by": "modelyard"})
def workload_job_event(body: kopf.Body, memo: kopf.Memo, type: str | None, **kwargs: Any) -> None:
    if type == "DELETED":
        return
    job = dict(body)
    succeeded = outcome(job)
    handler = HANDLERS.get(job["metadata"]["labels"].get("app.kubernetes.io/component", ""))
    if succeeded is None or handler is None:
        return
    handler(from_memo(memo, kwargs), job, succeeded)
