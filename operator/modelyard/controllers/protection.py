"""Deletion protection: a Dataset or TrainingJob stays while a live ModelDeployment needs it.

Only those carry the operator's finalizer: an object nothing needs is deleted at once, and
creating one costs no finalizer write (a quarter of the writes to a new Dataset or TrainingJob).
The finalizer comes from two sides. kopf adds it, on any event of the object, while the deletion
handlers' `when` says a ModelDeployment uses it (kopf's indexes, kept from the watches), and
removes it on an event once none does. A ModelDeployment that starts to use objects that exist
already adds it itself (`hold`) in its reconcile, before it resolves a model from them: they
get no event of their own then. Between a ModelDeployment's creation and its first reconcile,
what it names is not protected yet; nothing is served from it yet either."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf

from modelyard.api import GROUP, VERSION
from modelyard.controllers.bookkeeping import FINALIZER
from modelyard.controllers.conditions import get_condition, set_condition
from modelyard.controllers.context import Context, from_memo, post_event
from modelyard.controllers.indexes import Relations
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


def _training_job_in_use(namespace: str | None, name: str, **kwargs: Any) -> bool:
    relations = Relations.from_kwargs(kwargs)
    return bool(relations.modeldeployments_using(namespace or "", name))


def _dataset_in_use(namespace: str | None, name: str, **kwargs: Any) -> bool:
    relations = Relations.from_kwargs(kwargs)
    return any(
        relations.modeldeployments_using(namespace or "", training_job)
        for training_job in relations.trainingjobs_using(namespace or "", name)
    )


def hold(context: Context, namespace: str, training_jobs: Iterable[str]) -> None:
    """Put the finalizer on the TrainingJobs a ModelDeployment uses and on their Datasets, where
    it is missing: protected from now on, before any model of theirs is served."""
    for name in training_jobs:
        training_job = context.kube.custom("TrainingJob", namespace, name)
        if training_job is None:
            continue
        _protect(context, "TrainingJob", training_job)
        dataset = context.kube.custom(
            "Dataset", namespace, training_job["spec"]["datasetRef"]["name"]
        )
        if dataset is not None:
            _protect(context, "Dataset", dataset)


def _protect(context: Context, kind: str, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    finalizers = meta.get("finalizers") or []
    # A deletion under way cannot be held back any more: the API server refuses new finalizers.
    if FINALIZER in finalizers or meta.get("deletionTimestamp"):
        return
    # The whole list, guarded by the resourceVersion read: another finalizer added meanwhile
    # makes this conflict rather than vanish (the caller retries on a new read).
    context.kube.patch_custom(
        kind,
        meta["namespace"],
        meta["name"],
        {
            "metadata": {
                "finalizers": [*finalizers, FINALIZER],
                "resourceVersion": meta["resourceVersion"],
            }
        },
    )


def _gone(type: str | None, **_: Any) -> bool:
    return type == "DELETED"


@kopf.on.event(GROUP, VERSION, "datasets", when=_gone)
@kopf.on.event(GROUP, VERSION, "trainingjobs", when=_gone)
def forget_phase(body: kopf.Body, **_: Any) -> None:
    """Most are deleted without a finalizer, hence without a deletion handler: their phase
    leaves the metrics when the watch says they are gone."""
    meta = body["metadata"]
    set_phase(body["kind"], meta["namespace"], meta["name"], None)


@kopf.on.delete(GROUP, VERSION, "trainingjobs", when=_training_job_in_use)
def trainingjob_deleting(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    context = from_memo(memo, kwargs)
    meta = body["metadata"]
    _guard(
        context,
        dict(body),
        "TrainingJob",
        deployments_using_training_job(context, meta["namespace"], meta["name"]),
    )


@kopf.on.delete(GROUP, VERSION, "datasets", when=_dataset_in_use)
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
