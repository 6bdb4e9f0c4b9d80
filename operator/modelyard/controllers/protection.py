"""Deletion protection: a Dataset or TrainingJob stays while a live ModelDeployment needs it."""

from __future__ import annotations

from typing import Any

import kopf

from modelyard.api import GROUP, VERSION
from modelyard.controllers.conditions import get_condition, set_condition
from modelyard.controllers.context import Context, from_memo, post_event
from modelyard.controllers.metrics import set_phase
from modelyard.reasons import Reason

RETRY_SECONDS = 5


def deployments_using_training_job(context: Context, namespace: str, name: str) -> list[str]:
    return context.related().modeldeployments_using(namespace, name)


def deployments_using_dataset(context: Context, namespace: str, name: str) -> list[str]:
    users: set[str] = set()
    for training_job in context.related().trainingjobs_using(namespace, name):
        users.update(deployments_using_training_job(context, namespace, training_job))
    return sorted(users)


@kopf.on.delete(GROUP, VERSION, "trainingjobs")
def trainingjob_deleting(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    context = from_memo(memo, kwargs)
    meta = body["metadata"]
    _guard(
        context,
        dict(body),
        "TrainingJob",
        deployments_using_training_job(context, meta["namespace"], meta["name"]),
    )


@kopf.on.delete(GROUP, VERSION, "datasets")
def dataset_deleting(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    context = from_memo(memo, kwargs)
    meta = body["metadata"]
    _guard(
        context,
        dict(body),
        "Dataset",
        deployments_using_dataset(context, meta["namespace"], meta["name"]),
    )


@kopf.on.delete(GROUP, VERSION, "modeldeployments", optional=True)
def modeldeployment_deleted(body: kopf.Body, **_: Any) -> None:
    set_phase("ModelDeployment", body["metadata"]["namespace"], body["metadata"]["name"], None)


def _guard(context: Context, body: dict[str, Any], kind: str, users: list[str]) -> None:
    """Block the deletion (kopf keeps its finalizer and retries) while `users` is not empty."""
    meta = body["metadata"]
    if not users:
        set_phase(kind, meta["namespace"], meta["name"], None)
        return
    message = (
        f"in use by ModelDeployment {', '.join(users)}; deletion waits until they stop using it"
    )
    status = body.get("status") or {}
    if get_condition(status.get("conditions"), "DeletionBlocked") is None:
        post_event(body, Reason.DeletionBlocked, message, warning=True)
    conditions = set_condition(
        status.get("conditions"),
        "DeletionBlocked",
        True,
        Reason.InUse,
        message,
        meta.get("generation"),
    )
    context.kube.patch_status(kind, meta["namespace"], meta["name"], {"conditions": conditions})
    raise kopf.TemporaryError(message, delay=RETRY_SECONDS)
