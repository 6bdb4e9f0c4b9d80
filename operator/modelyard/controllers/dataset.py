"""Dataset controller: one ingest Job per (generation, refresh), status from its summary."""

from __future__ import annotations

from typing import Any

import kopf

from modelyard.api import GROUP, VERSION
from modelyard.api.dataset import DatasetSpec
from modelyard.controllers import metrics, trainingjob
from modelyard.controllers.conditions import now, set_condition
from modelyard.controllers.context import Context, from_memo, post_event
from modelyard.controllers.denials import reported
from modelyard.controllers.jobs import failure_reason, outcome
from modelyard.controllers.kube import termination_message
from modelyard.controllers.transient import recorded, retrying
from modelyard.reasons import Reason
from modelyard.resources.jobs import Owner, build_ingest_job, ingest_job_name

KIND = "Dataset"
REFRESH_ANNOTATION = "modelyard.dev/refresh"
HISTORY_LIMIT = 20


@kopf.on.resume(GROUP, VERSION, "datasets")
@kopf.on.create(GROUP, VERSION, "datasets")
@kopf.on.update(GROUP, VERSION, "datasets")
def dataset_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    context, plain = from_memo(memo, kwargs), dict(body)
    with metrics.reconciling(KIND), reported(context, KIND, plain):
        reconcile(context, plain)


def reconcile(context: Context, body: dict[str, Any]) -> None:
    """Start the ingestion this generation and refresh token call for, unless it ran already."""
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return
    status = body.get("status") or {}
    generation = meta.get("generation", 1)
    refresh = (meta.get("annotations") or {}).get(REFRESH_ANNOTATION, "")
    job_name = ingest_job_name(meta["name"], generation, refresh)
    if status.get("ingestJob") == job_name:
        return  # this ingestion was started already; its Job's events carry it on
    spec = DatasetSpec.model_validate(body["spec"])
    owner = Owner(KIND, meta["name"], meta["namespace"], meta["uid"])
    job, created = context.kube.create(build_ingest_job(owner, spec, job_name, context.config))
    has_version = bool(status.get("version"))
    conditions = status.get("conditions")
    if not has_version:
        conditions = set_condition(
            conditions,
            "Ready",
            False,
            Reason.Ingesting,
            f"ingest Job {job_name} is running",
            generation,
        )
    patch = {
        "phase": "Ingesting",
        "ingestJob": job_name,
        "observedGeneration": generation,
        "conditions": set_condition(
            conditions, "Ingested", "Unknown", Reason.Ingesting, f"Job {job_name}", generation
        ),
    }
    context.kube.patch_status(KIND, meta["namespace"], meta["name"], patch)
    metrics.set_phase(KIND, meta["namespace"], meta["name"], "Ingesting")
    if created:
        post_event(body, Reason.IngestStarted, f"started ingest Job {job_name}")
        return
    # The Job was made by a reconcile that died before recording it. If it ended meanwhile, its
    # last event may have come while our status did not name it yet: read it again now that the
    # status does (a later event will find the status naming it) and record its result.
    job = context.kube.get("batch/v1", "Job", meta["namespace"], job_name) or job
    finished = outcome(job)
    if finished is not None:
        on_job_finished(context, job, finished)


def on_job_finished(context: Context, job: dict[str, Any], succeeded: bool) -> None:
    """An ingest Job ended: record the version it published, or why it failed; then tell the
    TrainingJobs that use the Dataset."""
    namespace = job["metadata"]["namespace"]
    name = job["metadata"]["labels"].get("modelyard.dev/dataset")
    if not name:
        return
    job_name = job["metadata"]["name"]
    if recorded(
        f"recording ingest Job {namespace}/{job_name}",
        lambda: _record_job(context, namespace, name, job, succeeded),
    ):
        retrying(
            f"following Dataset {namespace}/{name}",
            lambda: trainingjob.dataset_changed(context, namespace, name),
        )


def _record_job(
    context: Context, namespace: str, name: str, job: dict[str, Any], succeeded: bool
) -> bool:
    """Record the Job's result in status; False when there is none to record (any more)."""
    dataset = context.kube.custom(KIND, namespace, name)
    if dataset is None:
        return False
    status = dataset.get("status") or {}
    job_name = job["metadata"]["name"]
    if status.get("ingestJob") != job_name or status.get("phase") != "Ingesting":
        return False  # a superseded ingestion, or one already recorded
    generation = status.get("observedGeneration")
    summary = termination_message(context.kube, namespace, job_name) or {}
    if succeeded and summary.get("status") == "Succeeded":
        _record_version(context, dataset, summary, generation)
        return True
    reason = summary.get("reason") or failure_reason(job)
    message = summary.get("message") or f"ingest Job {job_name} failed"
    conditions = status.get("conditions")
    for condition in ("Ready", "Ingested"):
        conditions = set_condition(conditions, condition, False, reason, message, generation)
    context.kube.patch_status(KIND, namespace, name, {"phase": "Failed", "conditions": conditions})
    metrics.set_phase(KIND, namespace, name, "Failed")
    post_event(dataset, reason, message, warning=True)
    return True


def _record_version(
    context: Context, dataset: dict[str, Any], summary: dict[str, Any], generation: int | None
) -> None:
    meta = dataset["metadata"]
    status = dataset.get("status") or {}
    version = summary["version"]
    history = [h for h in status.get("history") or [] if h.get("version") != version]
    previous = next((h for h in status.get("history") or [] if h.get("version") == version), None)
    record = {
        "version": version,
        "uri": summary["uri"],
        "rows": summary["rows"],
        "createdAt": (previous or {}).get("createdAt") or summary.get("createdAt") or now(),
    }
    new_version = status.get("version") != version
    message = f"version {version[:19]}… with {summary['rows']} rows"
    conditions = set_condition(
        status.get("conditions"), "Ready", True, Reason.Ingested, message, generation
    )
    conditions = set_condition(conditions, "Ingested", True, Reason.Ingested, message, generation)
    patch = {
        "phase": "Ready",
        "version": version,
        "uri": summary["uri"],
        "format": summary.get("format"),
        "rows": summary["rows"],
        "columns": summary.get("columns"),
        "sizeBytes": summary.get("sizeBytes"),
        "trainRows": summary.get("trainRows"),
        "testRows": summary.get("testRows"),
        "statistics": [_statistics(column) for column in summary.get("statistics") or []],
        "history": ([record, *history])[:HISTORY_LIMIT],
        "conditions": conditions,
    }
    context.kube.patch_status(KIND, meta["namespace"], meta["name"], patch)
    metrics.set_phase(KIND, meta["namespace"], meta["name"], "Ready")
    if new_version:
        post_event(dataset, Reason.NewVersion, f"ingested {message}")
    else:
        post_event(dataset, Reason.Unchanged, f"content unchanged: still {message}")


def _statistics(column: dict[str, Any]) -> dict[str, Any]:
    """Status keeps the fields the CRD declares; the summary may carry more."""
    keys = ("name", "type", "count", "nulls", "min", "max", "mean", "std", "categories")
    return {key: column[key] for key in keys if key in column}
