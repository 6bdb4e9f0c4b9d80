"""Dataset controller: one ingest Job per (generation, refresh), status from its summary; a timer
starts the scheduled refreshes of spec.refresh."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from modelyard import summaries
from modelyard.api import API_VERSION, GROUP, VERSION
from modelyard.api.dataset import DatasetSpec
from modelyard.controllers import metrics, pods, provenance, refresh, trainingjob
from modelyard.controllers.conditions import (
    get_condition,
    now,
    progressing,
    remove_condition,
    set_condition,
    settled,
    stalled,
)
from modelyard.controllers.context import Context, from_memo, post_event
from modelyard.controllers.denials import reported
from modelyard.controllers.fresh import on_fresh, patch_status
from modelyard.controllers.jobs import failure_of, job_output, outcome
from modelyard.controllers.kube import Conflict
from modelyard.controllers.retrain import RETRAIN_ANNOTATION
from modelyard.controllers.stalls import report_stall
from modelyard.controllers.transient import recorded, retrying
from modelyard.policy import locations
from modelyard.reasons import Reason
from modelyard.resources.jobs import Owner, build_ingest_job, ingest_job_name
from modelyard.storage import layout
from modelyard.storage.uri import S3Uri

KIND = "Dataset"
REFRESH_ANNOTATION = "modelyard.dev/refresh"
# The slot of the latest scheduled refresh, written by the operator (server-side apply, field
# manager modelyard): like the manual annotation, it goes into the ingest Job's name, so every
# ingestion is started by reconcile(), one at a time per Dataset, and a restart derives the same
# name again.
SCHEDULED_ANNOTATION = "modelyard.dev/scheduled-refresh"
SCHEDULE_CONDITION = "RefreshScheduled"
HISTORY_LIMIT = 20
# How often the timer looks at each Dataset with spec.refresh (and only those): a slot is started
# at most this late. A tick that has nothing to do makes no API call: it reads kopf's copy of the
# object. No `idle`: our own status writes would keep postponing the ticks.
REFRESH_TICK_SECONDS = 10.0


@kopf.on.resume(GROUP, VERSION, "datasets")
@kopf.on.create(GROUP, VERSION, "datasets")
@kopf.on.update(GROUP, VERSION, "datasets")
def dataset_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    context, plain = from_memo(memo, kwargs), dict(body)
    with metrics.reconciling(KIND), reported(context, KIND, plain):
        try:
            reconcile(context, plain)
        except Conflict as error:  # a Job's event recorded a result meanwhile
            raise kopf.TemporaryError("status changed meanwhile", delay=1) from error


def handled(body: Mapping[str, Any]) -> bool:
    """Whether the status records the ingestion that this generation and these refresh tokens
    ask for: kopf's change detection (bookkeeping.StatusDerivedDiffBase) asks this instead of
    keeping the last handled configuration in an annotation. A stalled Dataset (storage
    refused, foreign Job) records no ingestion, so its reconcile runs on each of its events and
    writes nothing while the stall stands."""
    meta = body["metadata"]
    job_name = ingest_job_name(
        meta["name"], meta["uid"], meta.get("generation", 1), refresh_token(meta)
    )
    return bool((body.get("status") or {}).get("ingestJob") == job_name)


def versions_prefix(context: Context, body: dict[str, Any], spec: DatasetSpec) -> S3Uri:
    """Where this Dataset's versions are written: the operator's choice, never the workload's."""
    meta = body["metadata"]
    root = locations.dataset_root(context.config, spec.storage)
    return layout.datasets_prefix(root, meta["namespace"], meta["name"])


def refusal(context: Context, namespace: str, spec: DatasetSpec) -> tuple[str, str] | None:
    """(reason, message) when the spec asks for storage this namespace may not use."""
    config = context.config
    moved = locations.storage_override_refusal(config, spec.storage)
    if moved:
        return Reason.StorageNotAllowed, moved
    if spec.source.s3 is not None:
        roots = (locations.default_root(config), locations.dataset_root(config, spec.storage))
        outside = locations.location_refusal(
            "spec.source.s3.uri", spec.source.s3.uri, namespace, roots, config
        )
        if outside:
            return Reason.LocationNotAllowed, outside
    return None


def reconcile(context: Context, body: dict[str, Any]) -> None:
    """Start the ingestion this generation and refresh token call for, unless it ran already."""
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return
    namespace, name, uid = meta["namespace"], meta["name"], meta["uid"]
    status = body.get("status") or {}
    generation = meta.get("generation", 1)
    job_name = ingest_job_name(name, uid, generation, refresh_token(meta))
    if status.get("ingestJob") == job_name:
        if status.get("phase") == "Ingesting":
            _check_job_present(context, body)
        return  # this ingestion was started already; its Job's events carry it on
    spec = DatasetSpec.model_validate(body["spec"])
    refused = refusal(context, namespace, spec)
    if refused is not None:
        _stall(context, body, *refused, observed=generation)
        return
    owner = Owner(KIND, name, namespace, uid)
    desired = build_ingest_job(
        owner, spec, job_name, str(versions_prefix(context, body, spec)), context.config
    )
    job, created = context.kube.create(desired)
    foreign = None if created else provenance.foreign_job(job, uid, desired)
    if foreign is not None:
        _stall(context, body, Reason.ForeignJob, foreign, observed=generation)
        return
    message = f"ingest Job {job_name} is running"
    conditions = progressing(
        status.get("conditions"),
        Reason.Ingesting,
        message,
        generation,
        keep_ready=bool(status.get("version")),
    )
    conditions = set_condition(
        conditions, "Ingested", "Unknown", Reason.Ingesting, message, generation
    )
    patch = {
        "phase": "Ingesting",
        "ingestJob": job_name,
        "ingestJobUid": job["metadata"]["uid"],
        "observedGeneration": generation,
        # The Job's own creation time: the same when a restart finds the Job made before it.
        "lastRefreshTime": job["metadata"]["creationTimestamp"],
        "conditions": conditions,
    }
    if spec.refresh is None:  # the timer only follows Datasets that have a schedule
        patch["nextRefreshTime"] = None
        patch["conditions"] = remove_condition(conditions, SCHEDULE_CONDITION)
    else:
        patch.update(_next_refresh(body, patch["lastRefreshTime"]))
    _patch(context, body, patch)
    metrics.set_phase(KIND, namespace, name, "Ingesting")
    if created:
        post_event(body, Reason.IngestStarted, f"started ingest Job {job_name}")
        return
    # The Job was made by a reconcile that died before recording it. If it ended meanwhile, its
    # last event may have come while our status did not name it yet: read it again now that the
    # status does (a later event will find the status naming it) and record its result.
    job = context.kube.get("batch/v1", "Job", namespace, job_name) or job
    finished = outcome(job)
    if finished is not None:
        on_job_finished(context, job, finished)


def refresh_token(meta: Mapping[str, Any]) -> str:
    """The refresh part of the ingest Job's name: the manual annotation, the scheduled slot once
    there is one, and the refresh of the latest automatic retrain once there is one (names of
    Datasets never refreshed on a schedule or for a retrain stay as they were)."""
    annotations = meta.get("annotations") or {}
    manual = annotations.get(REFRESH_ANNOTATION, "")
    scheduled = annotations.get(SCHEDULED_ANNOTATION)
    token = manual if not scheduled else f"{manual}|{scheduled}"
    retrain = annotations.get(RETRAIN_ANNOTATION)
    return token if not retrain else f"{token}#{retrain}"


def _has_refresh(spec: kopf.Spec, **_: Any) -> bool:
    return bool(spec.get("refresh"))


@kopf.timer(GROUP, VERSION, "datasets", interval=REFRESH_TICK_SECONDS, when=_has_refresh)
def dataset_refresh_tick(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    context, plain = from_memo(memo), dict(body)
    if not _refresh_work(plain, datetime.now(UTC)):
        return
    meta = plain["metadata"]
    with metrics.reconciling(KIND), reported(context, KIND, plain):
        on_fresh(context, KIND, meta["namespace"], meta["name"], lambda d: _refresh(context, d))


def _refresh_plan(body: dict[str, Any], now: datetime) -> refresh.Plan | str | None:
    """The plan for `body`'s schedule, the message of an invalid one, or None without one."""
    spec = DatasetSpec.model_validate(body["spec"]).refresh
    if spec is None or body["metadata"].get("deletionTimestamp"):
        return None
    status = body.get("status") or {}
    annotations = body["metadata"].get("annotations") or {}
    try:
        return refresh.plan(
            spec,
            refresh.parse_time(status.get("lastRefreshTime")),
            refresh.parse_time(status.get("nextRefreshTime")),
            refresh.token_slot(annotations.get(SCHEDULED_ANNOTATION)),
            now,
        )
    except refresh.InvalidSchedule as error:
        return f"spec.refresh.schedule: {error}; no scheduled refresh runs"


def _next_refresh(body: dict[str, Any], started: str) -> dict[str, Any]:
    """The next refresh time counted from an ingestion that started at `started`, for the
    status write that records the start: an interval counts from the first start, and the
    timer's next tick (up to REFRESH_TICK_SECONDS later) would leave the status without it
    until then. Nothing when the schedule is invalid or the time is already recorded."""
    status = {**(body.get("status") or {}), "lastRefreshTime": started}
    planned = _refresh_plan({**body, "status": status}, datetime.now(UTC))
    if not isinstance(planned, refresh.Plan):
        return {}
    upcoming = refresh.format_time(planned.next)
    return {} if upcoming == status.get("nextRefreshTime") else {"nextRefreshTime": upcoming}


def _refresh_work(body: dict[str, Any], now: datetime) -> bool:
    """Whether `body` needs a write: a slot to start, a next time or condition to change."""
    planned = _refresh_plan(body, now)
    if planned is None:
        return False
    status = body.get("status") or {}
    condition = get_condition(status.get("conditions"), SCHEDULE_CONDITION)
    if isinstance(planned, str):
        return (condition or {}).get("message") != planned or bool(status.get("nextRefreshTime"))
    return (
        (planned.due is not None and _idle(body))
        or condition is not None
        or refresh.format_time(planned.next) != status.get("nextRefreshTime")
    )


def _idle(body: dict[str, Any]) -> bool:
    """No ingestion running or about to: the one the current generation and refresh tokens ask
    for was started and has ended. Until reconcile() recorded its start (a restart may come in
    between), the status still names the one before."""
    meta, status = body["metadata"], body.get("status") or {}
    current = ingest_job_name(
        meta["name"], meta["uid"], meta.get("generation", 1), refresh_token(meta)
    )
    return status.get("ingestJob") == current and status.get("phase") != "Ingesting"


def _refresh(context: Context, body: dict[str, Any]) -> None:
    """Record the schedule's next time, and start the slot that is due unless an ingestion is
    running (refreshes never overlap: the slot waits for it to end). The tick after a start
    records the next time, once reconcile() recorded the start."""
    planned = _refresh_plan(body, datetime.now(UTC))
    if planned is None:
        return
    meta, status = body["metadata"], body.get("status") or {}
    generation = meta.get("generation")
    conditions = status.get("conditions")
    if isinstance(planned, str):
        condition = get_condition(conditions, SCHEDULE_CONDITION) or {}
        if condition.get("message") != planned or status.get("nextRefreshTime"):
            conditions = set_condition(
                conditions, SCHEDULE_CONDITION, False, Reason.InvalidSchedule, planned, generation
            )
            _patch(context, body, {"conditions": conditions, "nextRefreshTime": None})
            post_event(body, Reason.InvalidSchedule, planned, warning=True)
        return
    if planned.due is not None and _idle(body):
        token = refresh.slot_token(planned.due)
        # Guarded by the resourceVersion read: an ingestion started meanwhile makes this conflict,
        # and the slot is looked at again on a new read.
        context.kube.apply(
            {
                "apiVersion": API_VERSION,
                "kind": KIND,
                "metadata": {
                    "name": meta["name"],
                    "namespace": meta["namespace"],
                    "resourceVersion": meta["resourceVersion"],
                    "annotations": {SCHEDULED_ANNOTATION: token},
                },
            }
        )
        post_event(
            body,
            Reason.ScheduledRefresh,
            f"refresh {token} for the slot due at {refresh.format_time(planned.due)}",
        )
        return
    patch: dict[str, Any] = {}
    if get_condition(conditions, SCHEDULE_CONDITION) is not None:
        patch["conditions"] = remove_condition(conditions, SCHEDULE_CONDITION)
    next_time = refresh.format_time(planned.next)
    if next_time != status.get("nextRefreshTime"):
        patch["nextRefreshTime"] = next_time
    if patch:
        _patch(context, body, patch)


def _patch(context: Context, body: dict[str, Any], patch: dict[str, Any]) -> None:
    """A late handler for an older Job never overwrites a newer ingestion: Conflict."""
    patch_status(context, KIND, body, patch)


def _stall(
    context: Context,
    body: dict[str, Any],
    reason: str,
    message: str,
    observed: int | None = None,
) -> None:
    """Stop with a problem only a human can fix: Failed, Ready=False and Stalled=True."""
    status = body.get("status") or {}
    generation = body["metadata"].get("generation")
    conditions = stalled(status.get("conditions"), reason, message, generation)
    conditions = set_condition(conditions, "Ingested", False, reason, message, generation)
    patch: dict[str, Any] = {"phase": "Failed", "conditions": conditions}
    if observed is not None:
        patch["observedGeneration"] = observed
    report_stall(KIND, body, patch, lambda p: _patch(context, body, p), reason, message)


def _check_job_present(context: Context, body: dict[str, Any]) -> None:
    """An ingestion whose Job is gone before its result was recorded (deleted by hand, or by its
    TTL while the operator was down) would say Ingesting forever: fail it with the reason."""
    meta, status = body["metadata"], body.get("status") or {}
    job = context.kube.get("batch/v1", "Job", meta["namespace"], status["ingestJob"])
    if job is None or job["metadata"]["uid"] != status.get("ingestJobUid"):
        _vanished(context, body)


def _vanished(context: Context, body: dict[str, Any]) -> None:
    job_name = (body.get("status") or {}).get("ingestJob")
    _stall(
        context,
        body,
        Reason.JobVanished,
        f"ingest Job {job_name} was deleted before its result was recorded; "
        f"refresh the Dataset (annotate {REFRESH_ANNOTATION}) to ingest again",
    )


def on_job_deleted(context: Context, job: dict[str, Any]) -> None:
    """A Job of ours went away: if its ingestion was still waiting for it, that ends it."""
    namespace = job["metadata"]["namespace"]
    name = job["metadata"]["labels"].get("modelyard.dev/dataset")
    if not name:
        return

    def vanish(dataset: dict[str, Any]) -> None:
        status = dataset.get("status") or {}
        if (
            status.get("phase") == "Ingesting"
            and status.get("ingestJobUid") == (job["metadata"]["uid"])
        ):
            _vanished(context, dataset)

    on_fresh(context, KIND, namespace, name, vanish)


def on_pod(context: Context, pod: dict[str, Any]) -> None:
    """A pod of an ingest Job changed: a pod that cannot start stalls the ingestion with the
    pod's own reason; once it runs again, the ingestion is back in progress."""
    meta = pod["metadata"]
    name = meta["labels"].get("modelyard.dev/dataset")
    if name:
        uid = provenance.controller_uid(meta)
        _show_pod(context, meta["namespace"], name, uid, pods.problem(pod), pod)


def on_job_refused(context: Context, job: dict[str, Any], refusal: pods.PodProblem) -> None:
    """The API server refused the pod of an ingest Job (a quota, an admission policy): the
    ingestion stalls in its words until the Job controller's next try gets the pod created."""
    meta = job["metadata"]
    name = meta["labels"].get("modelyard.dev/dataset")
    if name:
        _show_pod(context, meta["namespace"], name, meta["uid"], refusal, None)


def _show_pod(
    context: Context,
    namespace: str,
    name: str,
    job_uid: str | None,
    found: pods.PodProblem | None,
    pod: dict[str, Any] | None,
) -> None:
    def report(dataset: dict[str, Any]) -> None:
        status = dataset.get("status") or {}
        if (
            status.get("phase") != "Ingesting"
            or job_uid is None
            or job_uid != status.get("ingestJobUid")
        ):
            return  # not the pod of the ingestion in flight
        conditions = status.get("conditions")
        generation = dataset["metadata"].get("generation")
        has_version = bool(status.get("version"))
        if found is not None:
            shown = pods.showing(conditions, found, generation, has_version)
            if shown is None:
                return
            _patch(context, dataset, {"conditions": shown})
            if found.warns:
                post_event(dataset, found.reason, found.message, warning=True)
        elif pod is not None and pods.recovered(pod, conditions):
            message = f"ingest Job {status['ingestJob']} is running"
            conditions = progressing(conditions, Reason.Ingesting, message, generation, has_version)
            _patch(context, dataset, {"conditions": conditions})

    on_fresh(context, KIND, namespace, name, report)


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
        lambda: bool(
            on_fresh(
                context,
                KIND,
                namespace,
                name,
                lambda dataset: _record_job(context, dataset, job, succeeded),
            )
        ),
    ):
        retrying(
            f"following Dataset {namespace}/{name}",
            lambda: trainingjob.dataset_changed(context, namespace, name),
        )


def _record_job(
    context: Context, dataset: dict[str, Any], job: dict[str, Any], succeeded: bool
) -> bool:
    """Record the Job's result in status; False when there is none to record (any more). Only
    the Job this Dataset's status names, by name and UID, counts: a Job that merely carries our
    labels is never read."""
    status = dataset.get("status") or {}
    job_meta = job["metadata"]
    if (
        status.get("ingestJob") != job_meta["name"]
        or status.get("ingestJobUid") != job_meta["uid"]
        or status.get("phase") != "Ingesting"
        or provenance.controller_uid(job_meta) != dataset["metadata"]["uid"]
    ):
        return False  # a superseded ingestion, one already recorded, or not ours
    own = provenance.own_pods(context.kube, job)
    summary = provenance.termination_summary(job, own) or {}
    if not (succeeded and summary.get("status") == "Succeeded"):
        _stall(context, dataset, *failure_of(job, summary, own, "ingest Job"))
        return True
    try:
        result = summaries.expect_ingest(summary, job_output(job))
    except summaries.Rejected as rejected:
        _stall(
            context, dataset, Reason.ResultRejected, f"ingest Job {job_meta['name']}: {rejected}"
        )
        return True
    _record_version(context, dataset, result)
    return True


def _record_version(
    context: Context, dataset: dict[str, Any], result: summaries.IngestResult
) -> None:
    meta = dataset["metadata"]
    status = dataset.get("status") or {}
    generation = status.get("observedGeneration")
    version = result.version
    history = [h for h in status.get("history") or [] if h.get("version") != version]
    previous = next((h for h in status.get("history") or [] if h.get("version") == version), None)
    record = {
        "version": version,
        "uri": result.uri,
        "rows": result.rows,
        "createdAt": (previous or {}).get("createdAt") or result.created_at or now(),
    }
    new_version = status.get("version") != version
    message = f"version {version[:19]}… with {result.rows} rows"
    conditions = settled(status.get("conditions"), Reason.Ingested, message, generation)
    conditions = set_condition(conditions, "Ingested", True, Reason.Ingested, message, generation)
    patch = {
        "phase": "Ready",
        "version": version,
        "uri": result.uri,
        "format": result.format,
        "rows": result.rows,
        "columns": result.columns,
        "sizeBytes": result.size_bytes,
        "trainRows": result.train_rows,
        "testRows": result.test_rows,
        "statistics": [column.to_dict() for column in result.statistics],
        # None removes the counts of an earlier version when this one declares no cleaning.
        "cleaning": (
            None if result.cleaning is None else [count.to_dict() for count in result.cleaning]
        ),
        "history": ([record, *history])[:HISTORY_LIMIT],
        "conditions": conditions,
    }
    _patch(context, dataset, patch)
    metrics.set_phase(KIND, meta["namespace"], meta["name"], "Ready")
    if new_version:
        post_event(dataset, Reason.NewVersion, f"ingested {message}")
    else:
        post_event(dataset, Reason.Unchanged, f"content unchanged: still {message}")
