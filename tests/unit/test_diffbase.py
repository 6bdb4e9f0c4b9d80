"""kopf's change detection for our three kinds, answered by their status instead of an annotation
kopf writes after every handled change (bookkeeping.StatusDerivedDiffBase)."""

from __future__ import annotations

from typing import Any

import kopf

from modelyard.controllers import dataset
from modelyard.controllers.bookkeeping import (
    BOOKKEEPING,
    DIFFBASE_KEY,
    StatusDerivedDiffBase,
    UnmarkedProgressStorage,
)
from modelyard.controllers.runner import configure
from modelyard.resources.jobs import ingest_job_name

STALE = f"{BOOKKEEPING}/{DIFFBASE_KEY}"


def _storage() -> StatusDerivedDiffBase:
    """The change detection the operator configures."""
    settings = kopf.OperatorSettings()
    configure(settings)
    storage = settings.persistence.diffbase_storage
    assert isinstance(storage, StatusDerivedDiffBase)
    return storage


def _body(kind: str, status: dict[str, Any], annotations: dict[str, str] | None = None) -> Any:
    return kopf.Body(
        {
            "apiVersion": "modelyard.dev/v1alpha1",
            "kind": kind,
            "metadata": {
                "name": "ds-1",
                "namespace": "ns",
                "uid": "u-1",
                "generation": 2,
                "resourceVersion": "7",
                "annotations": annotations or {},
            },
            "spec": {"source": {"s3": {"uri": "s3://b/k.csv"}}},
            "status": status,
        }
    )


def _changed(storage: StatusDerivedDiffBase, body: Any) -> bool:
    """What kopf decides from fetch(): handlers run when the diff base is missing or differs."""
    old = storage.fetch(body=body)
    return old is None or old != storage.build(body=body)


def test_a_dataset_whose_status_names_the_current_ingestion_is_unchanged() -> None:
    storage = _storage()
    current = ingest_job_name("ds-1", "u-1", 2, "")
    assert not _changed(storage, _body("Dataset", {"ingestJob": current}))


def test_a_new_generation_or_refresh_of_a_dataset_is_a_change() -> None:
    storage = _storage()
    older = ingest_job_name("ds-1", "u-1", 1, "")
    assert _changed(storage, _body("Dataset", {"ingestJob": older}))
    current = ingest_job_name("ds-1", "u-1", 2, "")
    refreshed = _body("Dataset", {"ingestJob": current}, {dataset.REFRESH_ANNOTATION: "again"})
    assert _changed(storage, refreshed), "a refresh annotation asks for a new ingestion"
    assert _changed(storage, _body("Dataset", {})), "never reconciled"


def test_a_trainingjob_is_unchanged_once_its_status_observed_the_generation() -> None:
    storage = _storage()
    assert not _changed(storage, _body("TrainingJob", {"observedGeneration": 2}))
    assert _changed(storage, _body("TrainingJob", {"observedGeneration": 1}))


def test_a_modeldeployment_changed_back_while_a_reconcile_failed_is_still_a_change() -> None:
    """replicas 2, then 0 (its reconcile fails and waits for a retry), then 2 again: the spec
    matches kopf's last handled configuration, but the status never observed this generation."""
    storage = _storage()
    handled_before = _body("ModelDeployment", {"observedGeneration": 1})
    last = kopf.AnnotationsDiffBaseStorage(prefix=BOOKKEEPING, key=DIFFBASE_KEY)
    patch = kopf.Patch(body=handled_before)
    last.store(body=handled_before, patch=patch, essence=last.build(body=handled_before))
    annotations = dict(patch["metadata"]["annotations"])
    back = _body("ModelDeployment", {"observedGeneration": 1}, annotations)
    assert last.fetch(body=back) == last.build(body=back), "kopf's own storage sees no change"
    assert _changed(storage, back)
    assert not _changed(storage, _body("ModelDeployment", {"observedGeneration": 2}))


def test_handling_writes_nothing_but_removes_an_earlier_operators_annotation() -> None:
    storage = _storage()
    fresh = _body("Dataset", {})
    patch = kopf.Patch(body=fresh)
    storage.store(body=fresh, patch=patch, essence=storage.build(body=fresh))
    assert not patch, "no write of its own"
    upgraded = _body("TrainingJob", {}, {STALE: "{}"})
    patch = kopf.Patch(body=upgraded)
    storage.store(body=upgraded, patch=patch, essence=storage.build(body=upgraded))
    assert patch == {"metadata": {"annotations": {STALE: None}}}


def test_other_kinds_keep_kopfs_annotation() -> None:
    storage = _storage()
    deployment = _body("Other", {})
    assert storage.fetch(body=deployment) is None
    patch = kopf.Patch(body=deployment)
    storage.store(body=deployment, patch=patch, essence=storage.build(body=deployment))
    assert STALE in patch["metadata"]["annotations"]


def test_a_handler_that_succeeded_at_once_leaves_nothing_to_write() -> None:
    """kopf stores the handler's state and purges it from the same patch; its own storage
    leaves its marker behind, a write of its own on every new object."""
    body = _body("Dataset", {})
    key = kopf.HandlerId("dataset_changed")
    record: kopf.ProgressRecord = {"started": "2026-01-01T00:00:00", "success": True}
    kopfs = kopf.AnnotationsProgressStorage(prefix=BOOKKEEPING)
    for storage, left in ((kopfs, True), (UnmarkedProgressStorage(prefix=BOOKKEEPING), False)):
        patch = kopf.Patch(body=body)
        storage.store(key=key, record=record, body=body, patch=patch)
        storage.purge(key=key, body=body, patch=patch)
        assert bool(patch) is left


def test_the_essence_is_kopfs_own_and_shares_nothing_with_the_body() -> None:
    """The build that skips copying metadata and status gives kopf's essence, field for field:
    labels, annotations without kopf's marked prefixes or kubectl's last-applied one, no
    status; with a handler's extra field, that field too."""
    storage = _storage()
    kopfs = kopf.AnnotationsDiffBaseStorage(prefix=BOOKKEEPING, key=DIFFBASE_KEY)
    body = _body(
        "Dataset",
        {"ingestJob": "x", "conditions": [{"type": "Ready", "status": "True"}]},
        {
            "team": "a",
            "kubectl.kubernetes.io/last-applied-configuration": "{}",
            "other.example/kopf-managed": "yes",
            "other.example/state": "{}",
        },
    )
    body["metadata"]["labels"] = {"app": "churn"}
    body["metadata"]["managedFields"] = [{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]
    essence = storage.build(body=body)
    assert essence == kopfs.build(body=body)
    assert essence["metadata"] == {"labels": {"app": "churn"}, "annotations": {"team": "a"}}
    assert "status" not in essence
    extra = ["status.ingestJob"]
    with_extra = storage.build(body=body, extra_fields=extra)
    assert with_extra == kopfs.build(body=body, extra_fields=extra)
    assert with_extra["status"] == {"ingestJob": "x"}
    essence["spec"]["source"]["s3"]["uri"] = "s3://b/changed.csv"
    assert body["spec"]["source"]["s3"]["uri"] == "s3://b/k.csv", "a copy, not the body's own"
