"""Automatic retrains: a ModelDeployment whose Drifted or QualityDegraded condition is True asks
the TrainingJob whose model it serves to retrain, when that TrainingJob's retrainOn lists the
trigger, nothing of it is training, no retrain of it is pending and its retrainCooldown has passed
since the last one. The Dataset is refreshed first (an annotation its controller folds into the
ingest Job's name); the run starts once that ingestion has ended, on whatever version it left,
and an ingestion that fails abandons the retrain.

Who calls whom: the monitoring gatherer calls `consider` after it wrote a True condition; the
TrainingJob controller calls `refresh_outcome` while it reconciles (the Dataset controller
reconciles the TrainingJobs of a Dataset whose ingestion ended).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes.client.exceptions import ApiException
from pydantic import ValidationError

from modelyard.api import API_VERSION, GROUP
from modelyard.api.refresh import parse_duration
from modelyard.api.trainingjob import RetrainTrigger, TrainingJobSpec
from modelyard.controllers.conditions import get_condition
from modelyard.controllers.context import Context, post_event
from modelyard.controllers.fresh import on_fresh, patch_status
from modelyard.controllers.kube import REQUEST_TIMEOUT
from modelyard.controllers.refresh import format_time, parse_time
from modelyard.reasons import Reason
from modelyard.resources.jobs import ingest_job_name

# Set on the Dataset by the operator: the refresh an automatic retrain asked for. Datasets that
# never had one keep the ingest Job names they had (dataset.refresh_token).
RETRAIN_ANNOTATION = f"{GROUP}/retrain-refresh"
ACTIVE = ("Pending", "Running")
# The condition of a ModelDeployment each trigger follows.
CONDITIONS = {RetrainTrigger.DRIFT: "Drifted", RetrainTrigger.QUALITY_DEGRADED: "QualityDegraded"}
_NAMES = {RetrainTrigger.DRIFT: "Drift", RetrainTrigger.QUALITY_DEGRADED: "QualityDegraded"}

# (namespace, TrainingJob) → requestedAt of the retrain whose cooldown a RetrainDeferred event
# was posted for: one event per cooldown window, not one per gathering. Lost on a restart, which
# costs at most one more event.
_deferred: dict[tuple[str, str], str] = {}
_deferred_lock = threading.Lock()


def cause_of(trigger: RetrainTrigger, deployment: str, evidence: str) -> str:
    """What a run started by `trigger` records as its cause."""
    return f"{_NAMES[trigger]} in ModelDeployment {deployment}: {evidence}"[:1024]


def cooldown_end(last: dict[str, Any] | None, cooldown: str) -> datetime | None:
    """When the next automatic retrain may be asked for; None: at once (there was none)."""
    requested = parse_time((last or {}).get("requestedAt"))
    return None if requested is None else requested + parse_duration(cooldown)


def pending(last: dict[str, Any] | None) -> bool:
    """A retrain was asked for, its refresh has not ended in a run, and it was not abandoned."""
    return bool(last and last.get("refresh") and not last.get("run"))


def refresh_token(now: datetime) -> str:
    """A token no earlier retrain of the Dataset used (the clock only moves on)."""
    return "retrain-" + now.astimezone(UTC).strftime("%Y%m%dt%H%M%S%fz")


def consider(
    context: Context, deployment: dict[str, Any], trigger: RetrainTrigger, evidence: str
) -> None:
    """`deployment` reports `trigger` for the model it serves: retrain its TrainingJob if that
    one asks for it and may now."""
    meta, status = deployment["metadata"], deployment.get("status") or {}
    training_job = (status.get("model") or {}).get("trainingJob")
    if not training_job:
        return  # a model given by URI: nothing to retrain
    cause = cause_of(trigger, meta["name"], evidence)
    on_fresh(
        context,
        "TrainingJob",
        meta["namespace"],
        training_job,
        lambda body: _request(context, body, deployment, trigger, cause),
    )


def _request(
    context: Context,
    body: dict[str, Any],
    deployment: dict[str, Any],
    trigger: RetrainTrigger,
    cause: str,
) -> None:
    meta = body["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    try:
        spec = TrainingJobSpec.model_validate(body["spec"])
    except ValidationError:
        return  # the TrainingJob's own reconcile reports an invalid spec
    if trigger not in (spec.retrain_on or []) or spec.dataset_ref.version:
        return
    status = body.get("status") or {}
    if any(run["phase"] in ACTIVE for run in status.get("runs") or []):
        return  # a run is training already: its model comes before any other
    last = status.get("lastAutomaticRetrain")
    if pending(last):
        return
    now = datetime.now(UTC)
    ends = cooldown_end(last, spec.retrain_cooldown)
    if ends is not None and now < ends:
        _defer(body, last or {}, spec.retrain_cooldown, ends, cause)
        return
    dataset = spec.dataset_ref.name
    if context.kube.custom("Dataset", namespace, dataset) is None:
        return  # the TrainingJob's own reconcile says DatasetNotFound
    token = refresh_token(now)
    record = {
        "trigger": str(trigger),
        "cause": cause,
        "modelDeployment": deployment["metadata"]["name"],
        # Whole seconds, rounded down: the ingest Job made for it is never older.
        "requestedAt": format_time(now),
        "refresh": token,
        "run": None,  # a merge patch keeps keys it does not name
    }
    # Recorded first (guarded by the resourceVersion read): a second gatherer that raced this one
    # conflicts here, and on a new read finds the retrain pending.
    patch_status(context, "TrainingJob", body, {"lastAutomaticRetrain": record})
    try:
        _annotate(context, namespace, dataset, token)
    except ApiException as error:
        abandon(context, namespace, name, token, f"refreshing Dataset {dataset} failed: {error}")
        raise
    message = f"{cause}; refreshing Dataset {dataset}, then training on it"
    post_event(body, Reason.RetrainTriggered, message)
    post_event(deployment, Reason.RetrainTriggered, f"retraining TrainingJob {name}: {message}")


def _annotate(context: Context, namespace: str, dataset: str, token: str) -> None:
    """A merge patch of the one annotation: a server-side apply under the operator's field
    manager would drop the scheduled-refresh annotation it applied, which names ingest Jobs."""
    resource = context.kube.dynamic.resources.get(api_version=API_VERSION, kind="Dataset")
    resource.patch(
        name=dataset,
        namespace=namespace,
        body={"metadata": {"annotations": {RETRAIN_ANNOTATION: token}}},
        content_type="application/merge-patch+json",
        _request_timeout=REQUEST_TIMEOUT,
    )


def _defer(
    body: dict[str, Any], last: dict[str, Any], cooldown: str, ends: datetime, cause: str
) -> None:
    meta = body["metadata"]
    key, requested = (meta["namespace"], meta["name"]), str(last.get("requestedAt"))
    with _deferred_lock:
        if _deferred.get(key) == requested:
            return
        _deferred[key] = requested
    post_event(
        body,
        Reason.RetrainDeferred,
        f"{cause}; not retraining before {format_time(ends)}: the last automatic retrain was "
        f"asked for at {requested} and spec.retrainCooldown is {cooldown}",
    )


@dataclass(frozen=True)
class Outcome:
    """How the Dataset refresh of a pending retrain ended: `run_cause` to start a run with, or
    `abandoned` saying why none starts."""

    run_cause: str | None = None
    abandoned: str | None = None


def refresh_outcome(status: dict[str, Any], dataset: dict[str, Any] | None) -> Outcome | None:
    """The outcome of the pending retrain's refresh once its ingestion has ended; None while
    there is none pending, or it is still on its way."""
    last = status.get("lastAutomaticRetrain")
    if not pending(last):
        return None
    assert last is not None
    token = last["refresh"]
    if dataset is None:
        return Outcome(abandoned="its Dataset does not exist")
    meta = dataset["metadata"]
    annotated = (meta.get("annotations") or {}).get(RETRAIN_ANNOTATION)
    if annotated != token:
        if _newer(annotated, token):
            return Outcome(abandoned=f"Dataset {meta['name']} was refreshed for {annotated}")
        return None  # the annotation is on its way (it is written right after the record)
    # Imported here: the Dataset controller imports the TrainingJob controller, which imports
    # this module.
    from modelyard.controllers.dataset import refresh_token as dataset_token

    current = ingest_job_name(
        meta["name"], meta["uid"], meta.get("generation", 1), dataset_token(meta)
    )
    ds_status = dataset.get("status") or {}
    if ds_status.get("ingestJob") != current or ds_status.get("phase") == "Ingesting":
        return None
    if ds_status.get("phase") == "Ready":
        return Outcome(run_cause=str(last["cause"]))
    ready = get_condition(ds_status.get("conditions"), "Ready") or {}
    return Outcome(
        abandoned=f"refreshing Dataset {meta['name']} failed: "
        f"{ready.get('reason', 'Failed')}: {ready.get('message', '')}".rstrip(": ")
    )


def _newer(annotated: str | None, token: str) -> bool:
    # Tokens carry their time in a fixed-width form: later ones sort after earlier ones.
    return bool(annotated and annotated.startswith("retrain-") and annotated > token)


def abandon(context: Context, namespace: str, name: str, token: str, why: str) -> None:
    """The refresh `token` asked for will bring no run: say so, and let the next trigger (after
    the cooldown) ask again."""

    def clear(body: dict[str, Any]) -> None:
        last = (body.get("status") or {}).get("lastAutomaticRetrain") or {}
        if last.get("refresh") != token or last.get("run"):
            return
        patch_status(context, "TrainingJob", body, {"lastAutomaticRetrain": abandoned(last)})
        post_event(body, Reason.RetrainAbandoned, f"{last.get('cause')}: {why}", warning=True)

    on_fresh(context, "TrainingJob", namespace, name, clear)


def abandoned(last: dict[str, Any]) -> dict[str, Any]:
    """The record of a retrain that brings no run: no refresh pending; its cooldown still counts."""
    return {**last, "refresh": None}


def started(last: dict[str, Any], run_id: str) -> dict[str, Any]:
    return {**last, "run": run_id}
