"""Automatic retrains: a ModelDeployment whose Drifted or QualityDegraded condition is True asks
the TrainingJob whose model it serves to retrain, when that TrainingJob's retrainOn lists the
trigger, nothing of it is training, no retrain of it is pending and its retrainCooldown has passed
since the last one. The Dataset is refreshed first (an annotation its controller folds into the
ingest Job's name); the run starts once that ingestion has ended, on whatever version it left,
and an ingestion that fails abandons the retrain, as does a refresh the Dataset refuses or that
has not started within START_BOUND. A ModelDeployment that pins a run, or has a canary taking a
share of the traffic, asks for no retrain: the new run could not serve by itself.

Who calls whom: the monitoring gatherer calls `consider` after it wrote a True condition (which
also abandons a pending retrain that is past hope: no Dataset event comes for a refresh that never
started); the TrainingJob controller calls `refresh_outcome` while it reconciles (the Dataset
controller reconciles the TrainingJobs of a Dataset whose ingestion ended).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from modelyard.api import API_VERSION, GROUP
from modelyard.api.modeldeployment import ModelDeploymentSpec
from modelyard.api.refresh import parse_duration
from modelyard.api.trainingjob import RetrainTrigger, TrainingJobSpec
from modelyard.controllers.conditions import get_condition
from modelyard.controllers.context import Context, post_event
from modelyard.controllers.fresh import on_fresh, patch_status
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
# A retrain whose Dataset refresh has not started this long after it was asked for is abandoned
# (the Dataset controller refused it, or the annotation never landed): pending, it would block
# every later retrain.
START_BOUND = timedelta(minutes=10)
# A Dataset not Ready for one of these starts no refresh until a human acts.
REFUSALS = frozenset(
    {
        Reason.StorageNotAllowed,
        Reason.LocationNotAllowed,
        Reason.ForeignJob,
        Reason.InvalidSpec,
    }
)

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
    if not training_job or not follows_latest(deployment):
        return
    cause = cause_of(trigger, meta["name"], evidence)
    # Chosen once: a retry of the write below annotates the Dataset with the same token.
    now = datetime.now(UTC)
    on_fresh(
        context,
        "TrainingJob",
        meta["namespace"],
        training_job,
        lambda body: _request(context, body, deployment, trigger, cause, now),
    )


def follows_latest(deployment: dict[str, Any]) -> bool:
    """Whether a new run of its TrainingJob could serve by itself: not when the deployment pins
    a run (a rollback would be retrained every cooldown, to no effect), nor while a canary takes
    a share of its traffic (a person is deciding between two models; a new run would change the
    main track under that decision)."""
    try:
        spec = ModelDeploymentSpec.model_validate(deployment["spec"])
    except ValidationError:
        return False  # its reconcile reports it
    ref = spec.model.training_job_ref
    if ref is None or ref.run is not None:
        return False
    return spec.canary is None or spec.canary.traffic_percent == 0


def _request(
    context: Context,
    body: dict[str, Any],
    deployment: dict[str, Any],
    trigger: RetrainTrigger,
    cause: str,
    now: datetime,
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
    dataset_name = spec.dataset_ref.name
    if last is not None and pending(last):
        # Nothing else may look at it for a long time (no Dataset event comes for a refresh
        # that never started): abandon it here once it is past hope.
        dataset = context.kube.custom("Dataset", namespace, dataset_name)
        outcome = refresh_outcome(status, dataset, now)
        if outcome is not None and outcome.abandoned:
            patch_status(context, "TrainingJob", body, {"lastAutomaticRetrain": abandoned(last)})
            why = f"{last.get('cause')}: {outcome.abandoned}"
            post_event(body, Reason.RetrainAbandoned, why, warning=True)
        return
    ends = cooldown_end(last, spec.retrain_cooldown)
    if ends is not None and now < ends:
        _defer(body, last or {}, spec.retrain_cooldown, ends, cause)
        return
    if context.kube.custom("Dataset", namespace, dataset_name) is None:
        return  # the TrainingJob's own reconcile says DatasetNotFound
    token = refresh_token(now)
    # The Dataset first, then the record: a record always names a refresh that was asked for,
    # so a crash or a failed call in between leaves at most one extra ingestion, never a
    # retrain pending forever. A retry annotates the same token again.
    _annotate(context, namespace, dataset_name, token)
    record = {
        "trigger": str(trigger),
        "cause": cause,
        "modelDeployment": deployment["metadata"]["name"],
        # Whole seconds, rounded down: the ingest Job made for it is never older.
        "requestedAt": format_time(now),
        "refresh": token,
        "run": None,  # a merge patch keeps keys it does not name
    }
    # Guarded by the resourceVersion read: a second gatherer that raced this one conflicts here,
    # and on a new read finds the retrain pending (the refresh it asked for serves both).
    patch_status(context, "TrainingJob", body, {"lastAutomaticRetrain": record})
    message = f"{cause}; refreshing Dataset {dataset_name}, then training on it"
    post_event(body, Reason.RetrainTriggered, message)
    post_event(deployment, Reason.RetrainTriggered, f"retraining TrainingJob {name}: {message}")


def _annotate(context: Context, namespace: str, dataset: str, token: str) -> None:
    """A merge patch of the one annotation: a server-side apply under the operator's field
    manager would drop the scheduled-refresh annotation it applied, which names ingest Jobs."""
    patch = {"metadata": {"annotations": {RETRAIN_ANNOTATION: token}}}
    context.kube.patch(API_VERSION, "Dataset", namespace, dataset, patch)


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


def refresh_outcome(
    status: dict[str, Any], dataset: dict[str, Any] | None, now: datetime | None = None
) -> Outcome | None:
    """The outcome of the pending retrain's refresh once its ingestion has ended; None while
    there is none pending, or it is still on its way.

    Any ingestion started after the retrain was asked for serves it: its own, or that of a later
    retrain of another TrainingJob of the same Dataset (whose token replaced this one's).
    """
    last = status.get("lastAutomaticRetrain")
    if not pending(last):
        return None
    assert last is not None
    if dataset is None:
        return Outcome(abandoned="its Dataset does not exist")
    meta, ds_status = dataset["metadata"], dataset.get("status") or {}
    name = meta["name"]
    if not _refresh_started(last, meta, ds_status):
        ready = get_condition(ds_status.get("conditions"), "Ready") or {}
        reason = ready.get("reason") if ready.get("status") == "False" else None
        said = f"{reason}: {ready.get('message', '')}".rstrip(": ") if reason else ""
        if reason in REFUSALS:
            return Outcome(abandoned=f"Dataset {name} refused the refresh: {said}")
        requested = parse_time(last.get("requestedAt"))
        if requested is None or (now or datetime.now(UTC)) - requested >= START_BOUND:
            return Outcome(
                abandoned=f"Dataset {name} did not start the refresh within "
                f"{int(START_BOUND.total_seconds() // 60)} minutes" + (f" ({said})" if said else "")
            )
        return None  # the Dataset controller has yet to start it
    if ds_status.get("phase") == "Ingesting":
        return None
    if ds_status.get("phase") == "Ready":
        return Outcome(run_cause=str(last["cause"]))
    ready = get_condition(ds_status.get("conditions"), "Ready") or {}
    return Outcome(
        abandoned=f"refreshing Dataset {name} failed: "
        f"{ready.get('reason', 'Failed')}: {ready.get('message', '')}".rstrip(": ")
    )


def _refresh_started(last: dict[str, Any], meta: dict[str, Any], status: dict[str, Any]) -> bool:
    """Whether the Dataset's current ingestion was started for this retrain or after it: it is
    the one its present annotations name, and those carry this retrain's token or a later one,
    or (when the annotation was replaced by an older racing token, or removed) its Job is no
    older than the request."""
    # Imported here: the Dataset controller imports the TrainingJob controller, which imports
    # this module.
    from modelyard.controllers.dataset import refresh_token as dataset_token

    current = ingest_job_name(
        meta["name"], meta["uid"], meta.get("generation", 1), dataset_token(meta)
    )
    if status.get("ingestJob") != current:
        return False
    annotated = (meta.get("annotations") or {}).get(RETRAIN_ANNOTATION) or ""
    # Tokens carry their time in a fixed-width form: later ones sort after earlier ones.
    if annotated.startswith("retrain-") and annotated >= str(last["refresh"]):
        return True
    job_made, requested = (
        parse_time(status.get("lastRefreshTime")),
        parse_time(last.get("requestedAt")),
    )
    return job_made is not None and requested is not None and job_made >= requested


def abandoned(last: dict[str, Any]) -> dict[str, Any]:
    """The record of a retrain that brings no run: no refresh pending; its cooldown still counts."""
    return {**last, "refresh": None}


def started(last: dict[str, Any], run_id: str) -> dict[str, Any]:
    return {**last, "run": run_id}
