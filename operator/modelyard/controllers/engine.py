"""The Dask cluster of a run on workers: created before the run's training Job, deleted when the
run ends, swept when the operator finds one whose run is over, and the run's progress (workers
ready, trials done) kept in status while it runs.

The DaskCluster is owned by the TrainingJob and the run's TLS Secret by the DaskCluster, so
deleting the TrainingJob removes both by garbage collection; the dask operator's own children
(scheduler, workers) are owned by the DaskCluster and go with it.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import kopf

from modelyard.api import GROUP, VERSION
from modelyard.api.common import StorageSpec
from modelyard.api.trainingjob import TrainingJobSpec
from modelyard.controllers.context import Context, from_memo
from modelyard.controllers.fresh import on_fresh, patch_status
from modelyard.controllers.kube import ApiError, Forbidden, NotFound, UnknownKind
from modelyard.controllers.provenance import controller_uid
from modelyard.engine import contract, tls
from modelyard.resources.common import Manifest, storage_env
from modelyard.resources.dask import (
    API_VERSION,
    CLUSTER_LABEL,
    DASK_COMPONENT_LABEL,
    KIND,
    RUN_LABEL,
    build_dask_cluster,
    build_tls_secret,
)
from modelyard.resources.jobs import TRAIN_COMPONENT, Owner

TRAINING_JOB = "TrainingJob"
ACTIVE = ("Pending", "Running")  # a run's phases while it is in flight
PROGRESS_SECONDS = 5.0
# The progress line is among the last few the training pod printed; a line longer than this is
# not one (the read is bounded too).
LOG_TAIL_LINES = 20
LOG_LIMIT_BYTES = 64 * 1024
# Bounds of a progress value: display only, but it goes into status.
MAX_TRIALS = 10_000_000


class Unavailable(Exception):
    """No Dask operator to run on, or no right to use it; the message names spec.workers."""


def start(
    context: Context,
    owner: Owner,
    spec: TrainingJobSpec,
    run: str,
    job_name: str,
    dataset_storage: StorageSpec | None,
) -> str | None:
    """The run's DaskCluster and TLS Secret, created unless they exist; or why a DaskCluster
    under the run's name is not the operator's."""
    assert spec.workers is not None
    cluster = contract.cluster_name(job_name)
    desired = build_dask_cluster(
        owner,
        cluster,
        run,
        spec.workers,
        spec.image or context.config.trainer_image,
        storage_env(context.config, dataset_storage),
        context.config,
        scheduler_resources=spec.resources,
    )
    try:
        made, _ = context.kube.create(desired)
    except (UnknownKind, NotFound) as error:
        raise Unavailable(
            f"spec.workers: this cluster has no {KIND} resource ({API_VERSION}); install the "
            "Dask operator or leave out spec.workers"
        ) from error
    except Forbidden as error:
        raise Unavailable(
            f"spec.workers: the operator may not create {KIND}s ({API_VERSION}) in "
            f"{owner.namespace}; grant it the rights its chart gives"
        ) from error
    if controller_uid(made["metadata"]) != owner.uid:
        return f"{KIND} {cluster} exists and belongs to another object"
    secret = build_tls_secret(owner, cluster, made["metadata"]["uid"], run, tls.issue(cluster))
    try:
        # Made earlier for this cluster when it exists: a retry never reads (or replaces) it.
        context.kube.create_only(secret)
    except Forbidden as error:
        stop(context, owner.namespace, job_name, owner.uid)
        raise Unavailable(
            f"spec.workers: the operator may not create the Secret {secret['metadata']['name']} "
            f"for the run's {KIND} in {owner.namespace}"
        ) from error
    return None


def stop(context: Context, namespace: str, job_name: str, owner_uid: str) -> None:
    """Delete the DaskCluster of the run whose training Job is `job_name`, if it is there and
    ours; its children and the Secret go by garbage collection."""
    cluster = contract.cluster_name(job_name)
    try:
        found = context.kube.get(API_VERSION, KIND, namespace, cluster)
    except UnknownKind:
        return  # no Dask operator (any more): nothing of it can be left
    if found is not None and controller_uid(found["metadata"]) == owner_uid:
        context.kube.delete(API_VERSION, KIND, namespace, cluster)


def cluster_of(run: dict[str, Any]) -> str:
    """The name of the run's DaskCluster (its pods carry it in CLUSTER_LABEL)."""
    return contract.cluster_name(run["job"])


def sweep(context: Context, body: dict[str, Any]) -> None:
    """Delete this TrainingJob's DaskClusters whose run is over: one that ended while the
    operator was down, or between recording its end and deleting its cluster. A cluster of a run
    newer than every recorded one is kept: its run is being started (its record not written yet).
    """
    meta = body["metadata"]
    runs = (body.get("status") or {}).get("runs") or []
    in_flight = {cluster_of(run) for run in runs if run.get("phase") in ACTIVE and run.get("job")}
    ended = {run["id"] for run in runs if run.get("phase") not in ACTIVE}
    newest = max((_run_number(run["id"]) or 0 for run in runs), default=0)
    selector = f"app.kubernetes.io/managed-by=modelyard,modelyard.dev/trainingjob={meta['name']}"
    try:
        clusters = context.kube.list_objects(API_VERSION, KIND, meta["namespace"], selector)
    except UnknownKind:
        return
    for cluster in clusters:
        name, run = cluster["metadata"]["name"], cluster["metadata"]["labels"].get(RUN_LABEL, "")
        number = _run_number(run)
        over = run in ended or (number is not None and number < newest)
        if controller_uid(cluster["metadata"]) == meta["uid"] and name not in in_flight and over:
            context.kube.delete(API_VERSION, KIND, meta["namespace"], name)


def _run_number(run: str) -> int | None:
    """3 for run-3; None for anything else."""
    prefix, _, number = run.rpartition("-")
    return int(number) if prefix == "run" and number.isdigit() else None


# --- progress ---------------------------------------------------------------------------------


def _on_workers(status: kopf.Status, **_: Any) -> bool:
    """A run on workers is in flight: it carries progress from its start until it ends."""
    return any(run.get("progress") for run in status.get("runs") or [])


@kopf.timer(GROUP, VERSION, "trainingjobs", interval=PROGRESS_SECONDS, when=_on_workers)
def progress_tick(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    context, plain = from_memo(memo), dict(body)
    meta = plain["metadata"]
    for run in (plain.get("status") or {}).get("runs") or []:
        if run.get("progress") and run.get("jobUid"):
            latest = progress(context, meta["namespace"], run)
            if latest != run["progress"]:
                record = functools.partial(_record, context, run=run, latest=latest)
                on_fresh(context, TRAINING_JOB, meta["namespace"], meta["name"], record)


def _record(
    context: Context, body: dict[str, Any], *, run: dict[str, Any], latest: dict[str, Any]
) -> None:
    runs = list((body.get("status") or {}).get("runs") or [])
    for index, current in enumerate(runs):
        if current["id"] == run["id"] and current.get("jobUid") == run["jobUid"]:
            if not current.get("progress") or current["progress"] == latest:
                return  # ended meanwhile, or written by another tick
            runs[index] = {**current, "progress": latest}
            patch_status(context, TRAINING_JOB, body, {"runs": runs})
            return


def progress(context: Context, namespace: str, run: dict[str, Any]) -> dict[str, Any]:
    """The run's progress now: its workers as it started with them, how many of their pods are
    ready, and the trials the training pod last reported (kept when it reported none since)."""
    previous = run["progress"]
    cluster = cluster_of(run)
    workers = context.kube.list_objects(
        "v1", "Pod", namespace, f"{CLUSTER_LABEL}={cluster},{DASK_COMPONENT_LABEL}=worker"
    )
    latest: dict[str, Any] = {
        "workers": previous["workers"],
        "workersReady": sum(1 for pod in workers if _ready(pod)),
    }
    trials = _trials(context, namespace, run["jobUid"])
    if trials is None and "trialsTotal" in previous:
        trials = previous.get("trialsDone", 0), previous["trialsTotal"]
    if trials is not None:
        latest["trialsDone"], latest["trialsTotal"] = trials
    return latest


def _ready(pod: Manifest) -> bool:
    if pod["metadata"].get("deletionTimestamp"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _trials(context: Context, namespace: str, job_uid: str) -> tuple[int, int] | None:
    pods = context.kube.list_objects(
        "v1", "Pod", namespace, f"batch.kubernetes.io/controller-uid={job_uid}"
    )
    running = [pod for pod in pods if (pod.get("status") or {}).get("phase") == "Running"]
    if not running:
        return None
    newest = max(running, key=lambda pod: pod["metadata"].get("creationTimestamp") or "")
    try:
        log = context.kube.pod_log(
            namespace, newest["metadata"]["name"], TRAIN_COMPONENT, LOG_TAIL_LINES, LOG_LIMIT_BYTES
        )
    except ApiError:
        return None  # the container is not up yet, or just went: next tick
    return parse_progress(log)


def parse_progress(log: str) -> tuple[int, int] | None:
    """(trials done, trials in all) from the latest well-formed progress line of `log`."""
    for line in reversed(log.splitlines()):
        if contract.PROGRESS_KEY not in line:
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        report = value.get(contract.PROGRESS_KEY) if isinstance(value, dict) else None
        if not isinstance(report, dict):
            continue
        done, total = report.get("trialsDone"), report.get("trialsTotal")
        if (
            isinstance(done, int)
            and isinstance(total, int)
            and not isinstance(done, bool)
            and not isinstance(total, bool)
            and 0 <= done <= total <= MAX_TRIALS
        ):
            return done, total
    return None
