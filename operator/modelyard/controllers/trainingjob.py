"""TrainingJob controller: waits for its Dataset, starts one Job per run, records each run."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kopf
from pydantic import ValidationError

from modelyard import summaries
from modelyard.api import GROUP, VERSION
from modelyard.api.dataset import DatasetSpec
from modelyard.api.trainingjob import Metric, RetrainTrigger, TrainingJobSpec, search_trials
from modelyard.controllers import engine, metrics, modeldeployment, pods, provenance, retrain
from modelyard.controllers.conditions import (
    now,
    progressing,
    set_condition,
    settled,
    stalled,
)
from modelyard.controllers.context import Context, from_memo, post_event
from modelyard.controllers.denials import reported
from modelyard.controllers.fresh import on_fresh, patch_status
from modelyard.controllers.jobs import failure_of, job_env, job_output, outcome
from modelyard.controllers.kube import Conflict
from modelyard.controllers.stalls import report_stall
from modelyard.controllers.transient import recorded, retrying
from modelyard.manifests import describe
from modelyard.policy import locations
from modelyard.policy.images import image_refusal
from modelyard.reasons import Reason
from modelyard.resources.dask import CLUSTER_LABEL
from modelyard.resources.jobs import Owner, build_training_job
from modelyard.storage import layout
from modelyard.storage.uri import S3Uri

KIND = "TrainingJob"
ACTIVE = ("Pending", "Running")
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
        except Conflict as error:  # a Job's event recorded a run meanwhile
            raise kopf.TemporaryError("status changed meanwhile", delay=1) from error


def dataset_changed(context: Context, namespace: str, dataset: str) -> None:
    """A Dataset's ingestion ended: TrainingJobs waiting for it or following it may start."""
    for name in context.related().trainingjobs_using(namespace, dataset):

        def follow(body: dict[str, Any]) -> None:
            if body["spec"]["datasetRef"]["name"] == dataset:
                with metrics.reconciling(KIND), reported(context, KIND, body, retry=False):
                    reconcile(context, body)

        on_fresh(context, KIND, namespace, name, follow)


def model_output(
    context: Context, body: dict[str, Any], dataset: dict[str, Any], run: str
) -> S3Uri:
    """Where a run's model goes: beside its Dataset's versions, under this object's UID, so a
    TrainingJob created again under the same name never writes over the first one's models."""
    meta = body["metadata"]
    storage = DatasetSpec.model_validate(dataset["spec"]).storage
    root = locations.dataset_root(context.config, storage)
    return layout.model_prefix(root, meta["namespace"], meta["name"], meta["uid"], run)


def refusal(context: Context, spec: TrainingJobSpec) -> tuple[str, str] | None:
    """(reason, message) when the spec asks for what this operator does not run."""
    config = context.config
    refused = image_refusal(spec.image, config.trainer_image, config.allowed_images)
    if refused is not None:
        return Reason.ImageNotAllowed, refused
    if spec.search is not None or spec.candidates:
        candidates = search_trials(spec)
        if candidates > config.max_search_trials:
            return Reason.SearchTooLarge, (
                f"spec.search: {candidates} candidates, more than the {config.max_search_trials} "
                "this operator allows (workloads.maxSearchTrials)"
            )
    return None


def reconcile(context: Context, body: dict[str, Any]) -> None:
    meta = body["metadata"]
    if meta.get("deletionTimestamp"):
        return
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation", 1)
    status = body.get("status") or {}
    try:
        spec = TrainingJobSpec.model_validate(body["spec"])
    except ValidationError as error:
        # What the API server cannot check (expressions): a stall naming the field, not a retry.
        message = "; ".join(f"spec.{line}" for line in describe(error, "spec").splitlines())
        _stall(context, body, status.get("conditions"), Reason.InvalidSpec, message)
        return
    runs: list[dict[str, Any]] = list(status.get("runs") or [])
    conditions = status.get("conditions")
    has_model = bool(status.get("model"))

    refused = refusal(context, spec)
    if refused is not None:
        _stall(context, body, conditions, *refused)
        return
    if spec.workers is not None:
        engine.sweep(context, body)
    dataset = context.kube.custom("Dataset", namespace, spec.dataset_ref.name)
    # The Dataset refresh of a pending automatic retrain, once it has ended.
    retraining = retrain.refresh_outcome(status, dataset)
    last_retrain = status.get("lastAutomaticRetrain")
    if retraining is not None and retraining.abandoned:
        last_retrain = retrain.abandoned(last_retrain or {})
        post_event(
            body,
            Reason.RetrainAbandoned,
            f"{last_retrain.get('cause')}: {retraining.abandoned}",
            warning=True,
        )
    resolved = _dataset_version(dataset, spec)
    if isinstance(resolved, Waiting):
        reason, message = resolved.reason, resolved.message
        conditions = set_condition(conditions, "DatasetReady", False, reason, message, generation)
        patch: dict[str, Any] = {"observedGeneration": generation}
        if last_retrain != status.get("lastAutomaticRetrain"):
            patch["lastAutomaticRetrain"] = last_retrain
        if not any(run["phase"] in ACTIVE for run in runs):
            if resolved.failed:
                conditions = stalled(conditions, reason, message, generation)
            else:
                conditions = progressing(conditions, reason, message, generation, has_model)
            if not runs:
                patch["phase"] = "Pending"
        patch["conditions"] = conditions
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
        run_version = run["datasetVersion"]
        job = context.kube.get("batch/v1", "Job", namespace, run["job"])
        if job is None or (run.get("jobUid") and job["metadata"]["uid"] != run["jobUid"]):
            # Gone before its result was recorded (deleted, or removed by its TTL while the
            # operator was down): the run would say Running forever.
            _vanish_run(context, body, run["id"])
            return
        if not run.get("jobUid"):
            run["jobUid"] = job["metadata"]["uid"]
        uri = uri_of(dataset, run_version) or uri
    elif (
        cause := _run_cause(
            spec, latest, generation, version, retraining.run_cause if retraining else None
        )
    ) is not None:
        run_id = f"run-{_next_run_number(runs)}"
        try:
            started = _start_job(context, body, spec, run_id, version, dataset, uri)
        except engine.Unavailable as error:
            _stall(context, body, conditions, Reason.EngineUnavailable, str(error))
            return
        if isinstance(started, str):
            _stall(context, body, conditions, Reason.ForeignJob, started)
            return
        job, created = started
        runs.append(
            {
                "id": run_id,
                "datasetVersion": version,
                "job": job["metadata"]["name"],
                "jobUid": job["metadata"]["uid"],
                "generation": generation,
                "phase": "Running",
                "startedAt": now(),
                "cause": cause,
                # Kept current while the run's workers work; gone when it ends.
                **(
                    {"progress": {"workers": spec.workers.replicas, "workersReady": 0}}
                    if spec.workers is not None
                    else {}
                ),
            }
        )
        runs = _bounded(context, body, runs, spec.run_history_limit)
        if retraining is not None and retraining.run_cause and last_retrain:
            last_retrain = retrain.started(last_retrain, run_id)
        if created:
            post_event(
                body,
                Reason.RunStarted,
                f"{run_id} trains on dataset version {version[:19]}…: {cause}",
            )
    if any(run["phase"] in ACTIVE for run in runs):
        run = [r for r in runs if r["phase"] in ACTIVE][-1]
        conditions = progressing(
            conditions,
            Reason.Training,
            f"{run['id']} on {run['datasetVersion'][:19]}…",
            generation,
            keep_ready=has_model,
        )
    elif latest is not None:
        # No run now: the status is the last run's, whatever a wait for the Dataset (being
        # refreshed, failed for a while) wrote meanwhile.
        conditions = _after_run(conditions, latest, generation)[0]
    phase = _phase(runs)
    patch = {
        "observedGeneration": generation,
        "conditions": conditions,
        "runs": runs,
        "phase": phase,
    }
    if last_retrain != status.get("lastAutomaticRetrain"):
        patch["lastAutomaticRetrain"] = last_retrain
    _patch_status(context, body, patch)
    metrics.set_phase(KIND, namespace, name, phase)
    if created:
        # ModelDeployments that stalled on this TrainingJob's failed runs wait for this one.
        modeldeployment.trainingjob_changed(context, namespace, name)
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
    patch_status(context, KIND, body, patch)


def _stall(
    context: Context,
    body: dict[str, Any],
    conditions: list[dict[str, Any]] | None,
    reason: str,
    message: str,
) -> None:
    """Refuse to start a run: Ready=False and Stalled=True with the reason, and an Event."""
    generation = body["metadata"].get("generation")
    patch = {
        "observedGeneration": generation,
        "conditions": stalled(conditions, reason, message, generation),
        "phase": "Failed",
    }
    report_stall(KIND, body, patch, lambda p: _patch_status(context, body, p), reason, message)


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
    """Why there is no dataset version to train on yet; `failed`: not until a human acts."""

    reason: str
    message: str
    failed: bool = False


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
        return Waiting(
            Reason.DatasetNotReady, f"Dataset {ref.name} is {phase}", failed=phase == "Failed"
        )
    return str(status["version"]), str(status["uri"])


def _run_cause(
    spec: TrainingJobSpec,
    latest: dict[str, Any] | None,
    generation: int,
    version: str,
    retrain_cause: str | None,
) -> str | None:
    """Why a new run starts now, as the run records it; None when none should.
    `retrain_cause`: an automatic retrain whose Dataset refresh has ingested, which trains on the
    current version whether it changed or not."""
    if retrain_cause is not None:
        return retrain_cause
    if latest is None:
        return f"first run (generation {generation})"
    if latest.get("generation") != generation:
        return f"spec changed (generation {generation})"
    follows_data = (
        RetrainTrigger.DATASET_CHANGE in (spec.retrain_on or []) and not spec.dataset_ref.version
    )
    if follows_data and latest.get("datasetVersion") != version:
        return f"new Dataset version {version}"
    return None


def _start_job(
    context: Context,
    body: dict[str, Any],
    spec: TrainingJobSpec,
    run_id: str,
    version: str,
    dataset: dict[str, Any],
    uri: str,
) -> tuple[dict[str, Any], bool] | str:
    """The run's Job, created unless it exists, and whether this call created it; or why a Job
    under its name is not the operator's."""
    meta = body["metadata"]
    owner = Owner(KIND, meta["name"], meta["namespace"], meta["uid"])
    dataset_storage = DatasetSpec.model_validate(dataset["spec"]).storage
    output = model_output(context, body, dataset, run_id)
    desired = build_training_job(
        owner, spec, run_id, uri, version, dataset_storage, str(output), context.config
    )
    job_name = desired["metadata"]["name"]
    if spec.workers is not None:
        # Before the Job: its pod connects to the cluster as soon as it starts.
        foreign = engine.start(context, owner, spec, run_id, job_name, dataset_storage)
        if foreign is not None:
            return foreign
    job, created = context.kube.create(desired)
    foreign = None if created else provenance.foreign_job(job, meta["uid"], desired)
    if foreign is not None and spec.workers is not None:
        engine.stop(context, meta["namespace"], job_name, meta["uid"])
    return foreign if foreign is not None else (job, created)


def _next_run_number(runs: list[dict[str, Any]]) -> int:
    """One more than the highest run number: ids are never reused, though old runs are dropped
    from status (the newest run, which carries the highest number, is never dropped)."""
    return 1 + max((int(run["id"].rpartition("-")[2]) for run in runs), default=0)


def _bounded(
    context: Context, body: dict[str, Any], runs: list[dict[str, Any]], limit: int
) -> list[dict[str, Any]]:
    """`runs` with the oldest finished ones dropped until at most `limit` are left, keeping
    every run in progress, the latest successful run and the runs ModelDeployments serve or pin:
    status must not grow toward etcd's object size limit under retrainOn: DatasetChange."""
    if len(runs) <= limit:
        return runs
    meta = body["metadata"]
    kept = _runs_in_use(context, meta["namespace"], meta["name"])
    succeeded = [run["id"] for run in runs if run["phase"] == "Succeeded"]
    if succeeded:
        kept.add(succeeded[-1])
    excess = len(runs) - limit
    dropped: set[str] = set()
    for run in runs[:-1]:
        if len(dropped) == excess:
            break
        if run["phase"] not in ACTIVE and run["id"] not in kept:
            dropped.add(run["id"])
    return [run for run in runs if run["id"] not in dropped]


def _runs_in_use(context: Context, namespace: str, name: str) -> set[str]:
    """Runs of this TrainingJob that ModelDeployments serve (main or canary) or pin."""
    used: set[str] = set()
    for deployment_name in context.related().modeldeployments_using(namespace, name):
        deployment = context.kube.custom("ModelDeployment", namespace, deployment_name) or {}
        spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
        for source in (spec.get("model"), (spec.get("canary") or {}).get("model")):
            ref = (source or {}).get("trainingJobRef") or {}
            if ref.get("name") == name and ref.get("run"):
                used.add(ref["run"])
        for served in (status.get("model") or {}, (status.get("canary") or {}).get("model") or {}):
            if served.get("trainingJob") == name and served.get("run"):
                used.add(served["run"])
    return used


def _phase(runs: list[dict[str, Any]]) -> str:
    if not runs:
        return "Pending"
    latest = runs[-1]["phase"]
    return "Running" if latest in ACTIVE else str(latest)


def _run_of(job: dict[str, Any]) -> tuple[str, str, str] | None:
    labels = job["metadata"]["labels"]
    name, run_id = labels.get("modelyard.dev/trainingjob"), labels.get("modelyard.dev/run")
    if not name or not run_id:
        return None
    return job["metadata"]["namespace"], name, run_id


def on_job_finished(context: Context, job: dict[str, Any], succeeded: bool) -> None:
    """A training Job ended: record the run, promote its model, tell ModelDeployments."""
    found = _run_of(job)
    if found is None:
        return
    namespace, name, run_id = found

    def record() -> bool:
        done: list[bool] = []
        on_fresh(
            context,
            KIND,
            namespace,
            name,
            lambda body: done.append(_record_run(context, body, job, run_id, succeeded)),
        )
        return any(done)

    if not recorded(f"recording run {run_id} of TrainingJob {namespace}/{name}", record):
        return  # unknown, or recorded before: a repeated event or a relist

    def follow() -> None:
        # The data may have moved on while this run trained; deployments may take its model.
        on_fresh(context, KIND, namespace, name, lambda body: reconcile(context, body))
        modeldeployment.trainingjob_changed(context, namespace, name)

    retrying(f"following TrainingJob {namespace}/{name}", follow)


def on_pod(context: Context, pod: dict[str, Any]) -> None:
    """A pod of a run's Job changed: a pod that cannot start stalls the TrainingJob with the
    pod's own reason; once it runs again, training is back in progress."""
    meta = pod["metadata"]
    job_uid = provenance.controller_uid(meta)

    def of_run(run: dict[str, Any]) -> bool:
        return job_uid is not None and job_uid == run.get("jobUid")

    _show_pod(context, meta, of_run, pods.problem(pod), pod)


def on_engine_pod(context: Context, pod: dict[str, Any]) -> None:
    """A pod of a run's Dask cluster (its scheduler or a worker) changed: one that cannot start
    stalls the TrainingJob in its own words at once, where the training pod would wait for its
    workers until it gave up (EngineLost)."""
    meta = pod["metadata"]
    cluster = meta["labels"].get(CLUSTER_LABEL)

    def of_run(run: dict[str, Any]) -> bool:
        return bool(run.get("job")) and engine.cluster_of(run) == cluster

    _show_pod(context, meta, of_run, pods.problem(pod), pod)


def on_job_refused(context: Context, job: dict[str, Any], refusal: pods.PodProblem) -> None:
    """The API server refused the pod of a run's Job (a quota, an admission policy): the
    TrainingJob stalls in its words until the Job controller's next try gets the pod created."""
    job_uid = job["metadata"]["uid"]
    _show_pod(context, job["metadata"], lambda run: job_uid == run.get("jobUid"), refusal, None)


def _show_pod(
    context: Context,
    meta: dict[str, Any],
    of_run: Callable[[dict[str, Any]], bool],
    found: pods.PodProblem | None,
    pod: dict[str, Any] | None,
) -> None:
    """Show the problem of the pod (or Job) with `meta`'s labels on its run in flight (the run
    `of_run` says it belongs to), or that it is over."""
    labels = meta["labels"]
    name, run_id = labels.get("modelyard.dev/trainingjob"), labels.get("modelyard.dev/run")
    if not name or not run_id:
        return

    def report(body: dict[str, Any]) -> None:
        status = body.get("status") or {}
        run = next((r for r in status.get("runs") or [] if r["id"] == run_id), None)
        if run is None or run["phase"] not in ACTIVE or not of_run(run):
            return  # not a pod of the run in flight
        conditions = status.get("conditions")
        generation = body["metadata"].get("generation")
        if found is not None:
            ours = dataclasses.replace(found, message=f"{run_id}: {found.message}")
            shown = pods.showing(conditions, ours, generation, bool(status.get("model")))
            if shown is None:
                return
            _patch_status(context, body, {"conditions": shown})
            if ours.warns:
                post_event(body, ours.reason, ours.message, warning=True)
        elif pod is not None and pods.recovered(pod, conditions):
            message = f"{run_id} on {run['datasetVersion'][:19]}…"
            conditions = progressing(
                conditions, Reason.Training, message, generation, bool(status.get("model"))
            )
            _patch_status(context, body, {"conditions": conditions})

    on_fresh(context, KIND, meta["namespace"], name, report)


def on_job_deleted(context: Context, job: dict[str, Any]) -> None:
    """A Job of ours went away: if its run was still waiting for it, that run has failed."""
    found = _run_of(job)
    if found is None:
        return
    namespace, name, run_id = found

    def vanish(body: dict[str, Any]) -> None:
        run = next(
            (r for r in (body.get("status") or {}).get("runs") or [] if r["id"] == run_id), None
        )
        if run and run["phase"] in ACTIVE and run.get("jobUid") == job["metadata"]["uid"]:
            _vanish_run(context, body, run_id)

    on_fresh(context, KIND, namespace, name, vanish)


def _vanish_run(context: Context, body: dict[str, Any], run_id: str) -> None:
    runs = list((body.get("status") or {}).get("runs") or [])
    index = next(i for i, run in enumerate(runs) if run["id"] == run_id)
    message = (
        f"training Job {runs[index].get('job')} was deleted before its result was recorded; "
        "change the TrainingJob to train again"
    )
    _end_run(
        context,
        body,
        runs,
        index,
        {"phase": "Failed", "reason": Reason.JobVanished, "message": message},
    )


def _record_run(
    context: Context, body: dict[str, Any], job: dict[str, Any], run_id: str, succeeded: bool
) -> bool:
    """Record the run's result in status; False when there is none to record (any more). Only
    the Job this run's record names, by name and UID, counts: a Job that merely carries our
    labels is never read."""
    status = body.get("status") or {}
    runs = list(status.get("runs") or [])
    index = next((i for i, run in enumerate(runs) if run["id"] == run_id), None)
    if index is None or runs[index]["phase"] not in ACTIVE:
        return False
    run = runs[index]
    job_meta = job["metadata"]
    if (
        job_meta["name"] != run.get("job")
        or job_meta["uid"] != run.get("jobUid")
        or provenance.controller_uid(job_meta) != body["metadata"]["uid"]
    ):
        return False  # not the Job the operator started for this run
    own = provenance.own_pods(context.kube, job)
    summary = provenance.termination_summary(job, own) or {}
    if summary.get("status") not in ("Succeeded", "Failed") or "model" not in summary:
        # No model to report: the workload failed before training, or left nothing.
        reason, message = failure_of(job, summary, own, "training Job")
        _end_run(
            context, body, runs, index, {"phase": "Failed", "reason": reason, "message": message}
        )
        return True
    try:
        result = summaries.expect_training(summary, run_id, run["datasetVersion"], job_output(job))
    except summaries.Rejected as rejected:
        message = f"training Job {job_meta['name']}: {rejected}"
        _end_run(
            context,
            body,
            runs,
            index,
            {"phase": "Failed", "reason": Reason.ResultRejected, "message": message},
        )
        return True
    model = result.model.model_dump(by_alias=True)
    endpoint = job_env(job, "MODELYARD_S3_ENDPOINT")
    if endpoint:
        model["endpoint"] = endpoint  # where it was written, whatever the settings become
    fields: dict[str, Any] = {
        "metrics": {str(k): v for k, v in result.metrics.items()},
        "model": model,
    }
    if result.params is not None:
        fields["params"] = result.params
    if result.estimator is not None:
        fields["estimator"] = result.estimator
    if result.leaderboard:
        fields["leaderboard"] = [entry.to_dict() for entry in result.leaderboard]
    if result.report is not None:
        fields["report"] = result.report.model_dump(mode="json", exclude_none=True)
    if succeeded and result.status == "Succeeded":
        fields.update(phase="Succeeded", reason=Reason.Succeeded)
    else:  # trained and published, but missed its objective (or the Job failed after all)
        reason, message = failure_of(job, summary, own, "training Job")
        fields.update(phase="Failed", reason=reason, message=message)
    _end_run(context, body, runs, index, fields, result.task)
    return True


def _end_run(
    context: Context,
    body: dict[str, Any],
    runs: list[dict[str, Any]],
    index: int,
    fields: dict[str, Any],
    task: str | None = None,
) -> None:
    """Record how run `index` ended, and what that makes of the TrainingJob's status."""
    meta = body["metadata"]
    namespace, name, generation = meta["namespace"], meta["name"], meta.get("generation")
    status = body.get("status") or {}
    run = {**runs[index], **fields, "finishedAt": now()}
    on_workers = run.pop("progress", None) is not None
    runs = [*runs[:index], run, *runs[index + 1 :]]
    conditions = status.get("conditions")
    patch: dict[str, Any] = {}
    if run["phase"] == "Succeeded":
        try:
            spec: TrainingJobSpec | None = TrainingJobSpec.model_validate(body["spec"])
        except ValidationError:
            spec = None  # edited into an invalid spec meanwhile: reconcile says so; still record
        patch.update(
            model=run.get("model"),
            metrics=run.get("metrics"),
            datasetVersion=run.get("datasetVersion"),
            latestRun=run["id"],
            primaryMetric=_primary_metric(spec, run.get("metrics") or {}, task),
        )
        conditions, message = _after_run(conditions, run, generation)
        metrics.RUNS.labels(namespace, name, "succeeded").inc()
        post_event(body, Reason.RunSucceeded, message)
    else:
        conditions, message = _after_run(conditions, run, generation)
        metrics.RUNS.labels(namespace, name, "failed").inc()
        post_event(body, run["reason"], message, warning=True)
    patch.update(runs=runs, conditions=conditions, phase=_phase(runs))
    context.kube.patch_status(KIND, namespace, name, patch, meta["resourceVersion"])
    metrics.set_phase(KIND, namespace, name, patch["phase"])
    if on_workers and run.get("job"):
        # Recorded: the run's engine is done with. Its pods and Secret go with the DaskCluster
        # (and should the operator stop right here, the next reconcile's sweep deletes it).
        engine.stop(context, namespace, run["job"], meta["uid"])


def _after_run(
    conditions: list[dict[str, Any]] | None, run: dict[str, Any], generation: int | None
) -> tuple[list[dict[str, Any]], str]:
    """The conditions an ended run leaves, and their message: done when it succeeded, stalled
    on its reason when it failed."""
    if run["phase"] == "Succeeded":
        message = f"{run['id']}: " + ", ".join(
            f"{k}={v:g}" for k, v in (run.get("metrics") or {}).items()
        )
        return settled(conditions, Reason.Succeeded, message, generation), message
    message = f"{run['id']}: {run.get('message')}"
    return stalled(conditions, run.get("reason") or Reason.JobFailed, message, generation), message


def _primary_metric(
    spec: TrainingJobSpec | None, values: dict[str, float], task: str | None
) -> dict[str, Any] | None:
    if spec is not None and spec.objective:
        metric = str(spec.objective.metric)
    else:
        metric = DEFAULT_METRIC.get(task or "", Metric.ACCURACY).value
    if metric not in values:
        return None
    return {"name": metric, "value": values[metric]}
