"""TrainingJob controller: waits for its Dataset, starts one Job per run, records each run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kopf
from kubernetes.dynamic.exceptions import ConflictError

from modelyard.api import GROUP, VERSION
from modelyard.api.dataset import DatasetSpec
from modelyard.api.trainingjob import Metric, RetrainPolicy, TrainingJobSpec
from modelyard.controllers import metrics, modeldeployment
from modelyard.controllers.conditions import now, set_condition
from modelyard.controllers.context import Context, from_memo, post_event
from modelyard.controllers.denials import reported
from modelyard.controllers.jobs import failure_reason, outcome
from modelyard.controllers.kube import termination_message
from modelyard.controllers.transient import recorded, retrying
from modelyard.reasons import Reason
from modelyard.resources.jobs import Owner, build_training_job, training_job_name

KIND = "TrainingJob"
ACTIVE = ("Pending", "Running")
ATTEMPTS = 5
# The metric shown in `kubectl get tj` when there is no objective.
DEFAULT_METRIC = {"classification": Metric.ACCURACY, "regression": Metric.R2}


@kopf.on.resume(GROUP, VERSION, "trainingjobs")
@kopf.on.create(GROUP, VERSION, "trainingjobs")
@kopf.on.update(GROUP, VERSION, "trainingjobs")
def trainingjob_changed(body: kopf.Body, memo: kopf.Memo, **kwargs: Any) -> None:
    context, plain = from_memo(memo, kwargs), dict(body)
    with metrics.reconciling(KIND), reported(context, KIND, plain):
        try:
            reconcile(context, plain)
        except ConflictError as error:  # a Job's event recorded a run meanwhile
            raise kopf.TemporaryError("status changed meanwhile", delay=1) from error


def dataset_changed(context: Context, namespace: str, dataset: str) -> None:
    """A Dataset's ingestion ended: TrainingJobs waiting for it or following it may start."""
    for name in context.related().trainingjobs_using(namespace, dataset):

        def follow(body: dict[str, Any]) -> None:
            if body["spec"]["datasetRef"]["name"] == dataset:
                with metrics.reconciling(KIND), reported(context, KIND, body, retry=False):
                    reconcile(context, body)

        on_fresh(context, namespace, name, follow)


def on_fresh(
    context: Context, namespace: str, name: str, action: Callable[[dict[str, Any]], None]
) -> None:
    """`action` on the TrainingJob as it is now; again on a new read when its status changed
    between our read and our patch (runs[] is replaced whole: a stale copy would lose a run)."""
    for _ in range(ATTEMPTS):
        body = context.kube.custom(KIND, namespace, name)
        if body is None:
            return
        try:
            action(body)
        except ConflictError:
            continue
        return
    raise RuntimeError(f"{KIND} {namespace}/{name} kept changing under {ATTEMPTS} attempts")


def reconcile(context: Context, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation", 1)
    spec = TrainingJobSpec.model_validate(body["spec"])
    status = body.get("status") or {}
    runs: list[dict[str, Any]] = list(status.get("runs") or [])
    conditions = status.get("conditions")

    dataset = context.kube.custom("Dataset", namespace, spec.dataset_ref.name)
    resolved = _dataset_version(dataset, spec)
    if isinstance(resolved, Waiting):
        reason, message = resolved.reason, resolved.message
        conditions = set_condition(conditions, "DatasetReady", False, reason, message, generation)
        patch: dict[str, Any] = {"observedGeneration": generation, "conditions": conditions}
        if not runs:
            patch["phase"] = "Pending"
            patch["conditions"] = set_condition(
                conditions, "Ready", False, reason, message, generation
            )
        _patch_status(context, body, patch)
        metrics.set_phase(KIND, namespace, name, patch.get("phase", status.get("phase")))
        return
    assert dataset is not None  # _dataset_version said Waiting otherwise
    version, uri = resolved
    conditions = set_condition(
        conditions,
        "DatasetReady",
        True,
        Reason.DatasetReady,
        f"{spec.dataset_ref.name} {version[:19]}…",
        generation,
    )
    active = [run for run in runs if run["phase"] in ACTIVE]
    latest = runs[-1] if runs else None
    job: dict[str, Any] | None = None
    created = False
    if active:
        run = active[-1]
        job, created = _start_job(
            context,
            body,
            spec,
            run["id"],
            run["datasetVersion"],
            dataset,
            uri_of(dataset, run["datasetVersion"]) or uri,
        )
    elif _needs_run(spec, latest, generation, version):
        run_id = f"run-{len(runs) + 1}"
        job, created = _start_job(context, body, spec, run_id, version, dataset, uri)
        runs.append(
            {
                "id": run_id,
                "datasetVersion": version,
                "job": training_job_name(name, run_id),
                "generation": generation,
                "phase": "Running",
                "startedAt": now(),
            }
        )
        conditions = set_condition(
            conditions, "Ready", False, Reason.Training, f"{run_id} on {version[:19]}…", generation
        )
        if created:
            post_event(
                body, Reason.RunStarted, f"{run_id} trains on dataset version {version[:19]}…"
            )
    phase = _phase(runs)
    _patch_status(
        context,
        body,
        {"observedGeneration": generation, "conditions": conditions, "runs": runs, "phase": phase},
    )
    metrics.set_phase(KIND, namespace, name, phase)
    if job is None or created:
        return
    # The run's Job was made by a reconcile that died before recording it. If it ended
    # meanwhile, its last event may have come while no status named the run: read it again now
    # that the status does (a later event will find it there) and record its result.
    job = context.kube.get("batch/v1", "Job", namespace, job["metadata"]["name"]) or job
    finished = outcome(job)
    if finished is not None:
        on_job_finished(context, job, finished)


def _patch_status(context: Context, body: dict[str, Any], patch: dict[str, Any]) -> None:
    """Patch status unless it holds these values already: a reconcile of a copy that is only
    missing kopf's own later annotation (its watch event lags under load) writes nothing, and
    so does not conflict with the write it would repeat."""
    status = body.get("status") or {}
    if all(status.get(key) == value for key, value in patch.items()):
        return
    meta = body["metadata"]
    context.kube.patch_status(
        KIND, meta["namespace"], meta["name"], patch, meta.get("resourceVersion")
    )


def uri_of(dataset: dict[str, Any], version: str) -> str | None:
    status = dataset.get("status") or {}
    if status.get("version") == version:
        return str(status["uri"])
    for record in status.get("history") or []:
        if record.get("version") == version:
            return str(record["uri"])
    return None


@dataclass(frozen=True)
class Waiting:
    """Why there is no dataset version to train on yet."""

    reason: str
    message: str


def _dataset_version(
    dataset: dict[str, Any] | None, spec: TrainingJobSpec
) -> tuple[str, str] | Waiting:
    """(version, uri) to train on, or why there is none yet."""
    ref = spec.dataset_ref
    if dataset is None:
        return Waiting(Reason.DatasetNotFound, f"Dataset {ref.name} does not exist")
    status = dataset.get("status") or {}
    if ref.version:
        uri = uri_of(dataset, ref.version)
        if uri is None:
            return Waiting(
                Reason.DatasetNotReady, f"Dataset {ref.name} has no version {ref.version}"
            )
        return ref.version, uri
    if status.get("phase") != "Ready" or not status.get("version"):
        phase = status.get("phase") or "Pending"
        return Waiting(Reason.DatasetNotReady, f"Dataset {ref.name} is {phase}")
    return str(status["version"]), str(status["uri"])


def _needs_run(
    spec: TrainingJobSpec, latest: dict[str, Any] | None, generation: int, version: str
) -> bool:
    if latest is None:
        return True
    if latest.get("generation") != generation:
        return True  # the spec changed since the last run
    follows_data = spec.retrain_on == RetrainPolicy.DATASET_CHANGE and not spec.dataset_ref.version
    return follows_data and latest.get("datasetVersion") != version


def _start_job(
    context: Context,
    body: dict[str, Any],
    spec: TrainingJobSpec,
    run_id: str,
    version: str,
    dataset: dict[str, Any],
    uri: str,
) -> tuple[dict[str, Any], bool]:
    """The run's Job, created unless it exists, and whether this call created it."""
    meta = body["metadata"]
    owner = Owner(KIND, meta["name"], meta["namespace"], meta["uid"])
    dataset_storage = DatasetSpec.model_validate(dataset["spec"]).storage
    job = build_training_job(owner, spec, run_id, uri, version, dataset_storage, context.config)
    return context.kube.create(job)


def _phase(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "Pending"
    latest = runs[-1]["phase"]
    return "Running" if latest in ACTIVE else str(latest)


def on_job_finished(context: Context, job: dict[str, Any], succeeded: bool) -> None:
    """A training Job ended: record the run, promote its model, tell ModelDeployments."""
    labels = job["metadata"]["labels"]
    namespace, name, run_id = (
        job["metadata"]["namespace"],
        labels.get("modelyard.dev/trainingjob"),
        labels.get("modelyard.dev/run"),
    )
    if not name or not run_id:
        return

    def record() -> bool:
        done: list[bool] = []
        on_fresh(
            context,
            namespace,
            name,
            lambda body: done.append(_record_run(context, body, job, run_id, succeeded)),
        )
        return any(done)

    if not recorded(f"recording run {run_id} of TrainingJob {namespace}/{name}", record):
        return  # unknown, or recorded before: a repeated event or a relist

    def follow() -> None:
        # The data may have moved on while this run trained; deployments may take its model.
        on_fresh(context, namespace, name, lambda body: reconcile(context, body))
        modeldeployment.trainingjob_changed(context, namespace, name)

    retrying(f"following TrainingJob {namespace}/{name}", follow)


def _record_run(
    context: Context, body: dict[str, Any], job: dict[str, Any], run_id: str, succeeded: bool
) -> bool:
    """Record the run's result in status; False when there is none to record (any more)."""
    namespace, name = body["metadata"]["namespace"], body["metadata"]["name"]
    status = body.get("status") or {}
    runs = list(status.get("runs") or [])
    index = next((i for i, run in enumerate(runs) if run["id"] == run_id), None)
    if index is None or runs[index]["phase"] not in ACTIVE:
        return False
    summary = termination_message(context.kube, namespace, job["metadata"]["name"]) or {}
    run = dict(runs[index])
    run["finishedAt"] = now()
    for key in ("metrics", "model", "params"):
        if summary.get(key) is not None:
            run[key] = summary[key]
    generation = body["metadata"].get("generation")
    conditions = status.get("conditions")
    patch: dict[str, Any] = {}
    if succeeded and summary.get("status") == "Succeeded":
        run["phase"] = "Succeeded"
        run["reason"] = Reason.Succeeded
        spec = TrainingJobSpec.model_validate(body["spec"])
        patch.update(
            model=run.get("model"),
            metrics=run.get("metrics"),
            datasetVersion=run.get("datasetVersion"),
            latestRun=run_id,
            primaryMetric=_primary_metric(spec, summary),
        )
        message = f"{run_id}: " + ", ".join(
            f"{k}={v:g}" for k, v in (run.get("metrics") or {}).items()
        )
        conditions = set_condition(conditions, "Ready", True, Reason.Succeeded, message, generation)
        metrics.RUNS.labels(namespace, name, "succeeded").inc()
        post_event(body, Reason.RunSucceeded, message)
    else:
        run["phase"] = "Failed"
        run["reason"] = summary.get("reason") or failure_reason(job)
        run["message"] = summary.get("message") or f"training Job {job['metadata']['name']} failed"
        conditions = set_condition(
            conditions, "Ready", False, run["reason"], f"{run_id}: {run['message']}", generation
        )
        metrics.RUNS.labels(namespace, name, "failed").inc()
        post_event(body, run["reason"], f"{run_id}: {run['message']}", warning=True)
    runs[index] = run
    patch.update(runs=runs, conditions=conditions, phase=_phase(runs))
    context.kube.patch_status(KIND, namespace, name, patch, body["metadata"]["resourceVersion"])
    metrics.set_phase(KIND, namespace, name, patch["phase"])
    return True


def _primary_metric(spec: TrainingJobSpec, summary: dict[str, Any]) -> dict[str, Any] | None:
    values: dict[str, float] = summary.get("metrics") or {}
    if spec.objective:
        metric = str(spec.objective.metric)
    else:
        metric = DEFAULT_METRIC.get(summary.get("task", ""), Metric.ACCURACY).value
    if metric not in values:
        return None
    return {"name": metric, "value": values[metric]}
