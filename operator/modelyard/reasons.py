"""Every reason Modelyard writes into a condition, a run, an event or a termination message.

One member per reason, and one `Explanation` per member: what it means and what to do. The
operations guide's troubleshooting table is generated from `EXPLANATIONS`, and a test fails when a
member has none, so a new reason cannot ship undocumented.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Member names equal their values so code reads like the status it writes."""

    # Progress and success.
    Ingesting = "Ingesting"
    Ingested = "Ingested"
    IngestStarted = "IngestStarted"
    NewVersion = "NewVersion"
    Unchanged = "Unchanged"
    ScheduledRefresh = "ScheduledRefresh"
    DatasetReady = "DatasetReady"
    Training = "Training"
    RunStarted = "RunStarted"
    Succeeded = "Succeeded"
    RunSucceeded = "RunSucceeded"
    Resolved = "Resolved"
    Pinned = "Pinned"
    Latest = "Latest"
    Promoted = "Promoted"
    ModelChanged = "ModelChanged"
    RollingOut = "RollingOut"
    Serving = "Serving"
    ScaledToZero = "ScaledToZero"
    WaitingForNode = "WaitingForNode"
    # Monitoring of the served model, and the retrains it asks for.
    NoDrift = "NoDrift"
    DriftDetected = "DriftDetected"
    QualityMet = "QualityMet"
    QualityDegraded = "QualityDegraded"
    NotEnoughData = "NotEnoughData"
    RetrainTriggered = "RetrainTriggered"
    RetrainDeferred = "RetrainDeferred"
    RetrainAbandoned = "RetrainAbandoned"
    # Waiting on another resource.
    DatasetNotFound = "DatasetNotFound"
    DatasetNotReady = "DatasetNotReady"
    TrainingJobNotFound = "TrainingJobNotFound"
    RunNotFound = "RunNotFound"
    RunNotSucceeded = "RunNotSucceeded"
    ModelNotReady = "ModelNotReady"
    PromotionBlocked = "PromotionBlocked"
    InUse = "InUse"
    DeletionBlocked = "DeletionBlocked"
    # A workload ended with a problem in the spec.
    InvalidArguments = "InvalidArguments"
    InvalidSpec = "InvalidSpec"
    EstimatorNotAllowed = "EstimatorNotAllowed"
    InvalidParams = "InvalidParams"
    InvalidSearch = "InvalidSearch"
    MixedTasks = "MixedTasks"
    InvalidFeatures = "InvalidFeatures"
    MetricNotApplicable = "MetricNotApplicable"
    # A workload ended with a problem in the data.
    SourceNotFound = "SourceNotFound"
    SourceUnreachable = "SourceUnreachable"
    SourceAddressNotAllowed = "SourceAddressNotAllowed"
    SourceSecretInvalid = "SourceSecretInvalid"
    SourceAccessDenied = "SourceAccessDenied"
    PaginationLoop = "PaginationLoop"
    TooManyPages = "TooManyPages"
    QueryFailed = "QueryFailed"
    UnknownFormat = "UnknownFormat"
    MixedFormats = "MixedFormats"
    UnreadableData = "UnreadableData"
    SourceTooLarge = "SourceTooLarge"
    EmptyData = "EmptyData"
    SchemaMismatch = "SchemaMismatch"
    ValidationFailed = "ValidationFailed"
    CleaningNotApplicable = "CleaningNotApplicable"
    TargetNotNumeric = "TargetNotNumeric"
    DatasetVersionMismatch = "DatasetVersionMismatch"
    TrainingFailed = "TrainingFailed"
    ObjectiveNotMet = "ObjectiveNotMet"
    # A run on workers (spec.workers) and its Dask cluster.
    EngineUnavailable = "EngineUnavailable"
    EngineLost = "EngineLost"
    # Findings of a run's evaluation report (status.runs[].report.findings).
    ClassImbalance = "ClassImbalance"
    Overfitting = "Overfitting"
    PossibleLeakage = "PossibleLeakage"
    # A model server could not start.
    ModelNotFound = "ModelNotFound"
    ModelCardNotFound = "ModelCardNotFound"
    InvalidModelCard = "InvalidModelCard"
    DigestMismatch = "DigestMismatch"
    VersionSkew = "VersionSkew"
    ModelLoadFailed = "ModelLoadFailed"
    InvalidModel = "InvalidModel"
    BindFailed = "BindFailed"
    # Infrastructure.
    StorageUnavailable = "StorageUnavailable"
    InternalError = "InternalError"
    JobFailed = "JobFailed"
    BackoffLimitExceeded = "BackoffLimitExceeded"
    DeadlineExceeded = "DeadlineExceeded"
    PodFailurePolicy = "PodFailurePolicy"
    Evicted = "Evicted"
    PermissionDenied = "PermissionDenied"
    # The operator refused what a spec asked, or a result it did not trust.
    ImageNotAllowed = "ImageNotAllowed"
    LocationNotAllowed = "LocationNotAllowed"
    StorageNotAllowed = "StorageNotAllowed"
    SearchTooLarge = "SearchTooLarge"
    NameConflict = "NameConflict"
    InvalidSchedule = "InvalidSchedule"
    ForeignJob = "ForeignJob"
    ResultRejected = "ResultRejected"
    JobVanished = "JobVanished"
    ModelNotPublished = "ModelNotPublished"
    # A child pod cannot start or keeps dying (the kubelet's own reasons).
    CreateContainerConfigError = "CreateContainerConfigError"
    CreateContainerError = "CreateContainerError"
    ErrImagePull = "ErrImagePull"
    ImagePullBackOff = "ImagePullBackOff"
    InvalidImageName = "InvalidImageName"
    ErrImageNeverPull = "ErrImageNeverPull"
    RunContainerError = "RunContainerError"
    Unschedulable = "Unschedulable"
    OOMKilled = "OOMKilled"
    CrashLoopBackOff = "CrashLoopBackOff"
    ReadinessNeverReached = "ReadinessNeverReached"
    # The API server refused the pods of a Deployment or Job (their controllers' reason).
    FailedCreate = "FailedCreate"


@dataclass(frozen=True)
class Explanation:
    #: Where it shows: the kinds (or "model server") whose status, events or logs carry it.
    where: str
    #: True when it reports a problem (a False condition or a Warning event).
    problem: bool
    meaning: str
    action: str


_DS, _TJ, _MD = "Dataset", "TrainingJob", "ModelDeployment"
_WORKLOADS = "Dataset, TrainingJob"
_SERVER = "model server (pod logs, ModelDeployment events)"
_REPORT = "TrainingJob (status.runs[].report.findings)"
_FIX_SPEC = "Fix the field named in the message and apply again; the operator retries at once."
_ALL = "Dataset, TrainingJob, ModelDeployment"
_POD_EVENTS = "Read the pod's events (`kubectl describe pod`); the message names the cause."
_IMAGE_FIX = (
    "Check the image name and the node's access to it (pull secrets: workloads.imagePullSecrets)."
)

EXPLANATIONS: dict[Reason, Explanation] = {
    Reason.Ingesting: Explanation(_DS, False, "An ingest Job is running.", "Wait."),
    Reason.Ingested: Explanation(
        _DS, False, "The newest ingest succeeded; status.version is current.", "None."
    ),
    Reason.IngestStarted: Explanation(
        _DS, False, "Event: an ingest Job was created.", "None; `kubectl logs job/<name>`."
    ),
    Reason.NewVersion: Explanation(
        _DS, False, "Event: ingest produced a new content version.", "None."
    ),
    Reason.Unchanged: Explanation(
        _DS, False, "Event: ingest found the same content; the version stays.", "None."
    ),
    Reason.ScheduledRefresh: Explanation(
        _DS,
        False,
        "Event: a slot of spec.refresh came due and its ingestion starts; missed slots run once.",
        "None.",
    ),
    Reason.InvalidSchedule: Explanation(
        _DS,
        True,
        "Condition RefreshScheduled=False: spec.refresh.schedule is no cron expression croniter "
        "accepts, or one that never comes due; no scheduled refresh runs, the rest works.",
        "Fix spec.refresh.schedule (five fields, UTC, e.g. '0 * * * *').",
    ),
    Reason.DatasetReady: Explanation(
        _TJ, False, "The referenced Dataset has the version a run needs.", "None."
    ),
    Reason.Training: Explanation(_TJ, False, "A training run is in progress.", "Wait."),
    Reason.RunStarted: Explanation(_TJ, False, "Event: a training run's Job was created.", "None."),
    Reason.Succeeded: Explanation(
        _TJ, False, "The latest run trained, evaluated and published a model.", "None."
    ),
    Reason.RunSucceeded: Explanation(_TJ, False, "Event: a run succeeded.", "None."),
    Reason.Resolved: Explanation(_MD, False, "spec.model.uri names the model to serve.", "None."),
    Reason.Pinned: Explanation(
        _MD, False, "Serving the run named in spec.model.trainingJobRef.run.", "None."
    ),
    Reason.Latest: Explanation(
        _MD, False, "Serving the latest successful run of the TrainingJob.", "None."
    ),
    Reason.Promoted: Explanation(
        _MD, False, "The model passed the promotion gate and is (or stays) served.", "None."
    ),
    Reason.ModelChanged: Explanation(
        _MD, False, "Event: the served model changed; a rollout follows.", "None."
    ),
    Reason.NoDrift: Explanation(
        _MD,
        False,
        "Drifted=False: no feature's PSI over recent requests exceeds "
        "spec.monitoring.drift.threshold.",
        "None.",
    ),
    Reason.DriftDetected: Explanation(
        _MD,
        True,
        "Drifted=True (and a Warning event): recent requests differ from the training data; the "
        "message names the features and their PSI against the threshold. The model still serves.",
        "Retrain on fresh data (retrainOn: [Drift] does it by itself), or check the clients.",
    ),
    Reason.QualityMet: Explanation(
        _MD, False, "QualityDegraded=False: the live metric meets spec.monitoring.quality.", "None."
    ),
    Reason.QualityDegraded: Explanation(
        _MD,
        True,
        "QualityDegraded=True (and a Warning event): the live metric from feedback misses "
        "spec.monitoring.quality.minimum. The model still serves.",
        "Retrain (retrainOn: [QualityDegraded] does it by itself), or look at recent feedback.",
    ),
    Reason.NotEnoughData: Explanation(
        _MD,
        False,
        "Drifted or QualityDegraded is Unknown: fewer rows (labels) than minRows (minLabels), "
        "no server answered, or a new model serves and its figures are being gathered again.",
        "Wait for traffic (feedback); if servers do not answer, see status.monitoring.unreachable.",
    ),
    Reason.RetrainTriggered: Explanation(
        "TrainingJob, ModelDeployment",
        False,
        "Event: Drift or QualityDegraded asked for a retrain; the Dataset is refreshed, then a run "
        "trains on it. The message is the cause, also in status.lastAutomaticRetrain and the run.",
        "None; the promotion gate decides whether the new model serves.",
    ),
    Reason.RetrainDeferred: Explanation(
        _TJ,
        False,
        "Event: a retrain was asked for within spec.retrainCooldown of the last one; nothing "
        "starts until the cooldown has passed (at most one such event per cooldown).",
        "None, or shorten spec.retrainCooldown.",
    ),
    Reason.RetrainAbandoned: Explanation(
        _TJ,
        True,
        "Event: the Dataset refresh an automatic retrain asked for failed or was replaced; no "
        "run starts for it. The message says why.",
        "Fix the Dataset (see its Ready condition); the next trigger after the cooldown retries.",
    ),
    Reason.RollingOut: Explanation(
        _MD,
        False,
        "Model server pods are starting or being replaced.",
        "Wait; if it lasts, look at the pods' events and logs for a model-server reason below.",
    ),
    Reason.Serving: Explanation(
        _MD, False, "Every track's replicas are ready and serving.", "None."
    ),
    Reason.ScaledToZero: Explanation(
        _MD,
        False,
        "spec.replicas is 0 and every server pod is gone, as asked: the model's URL answers no "
        "request.",
        "Raise spec.replicas (or set spec.autoscaling) to serve again.",
    ),
    Reason.DatasetNotFound: Explanation(
        _TJ,
        True,
        "spec.datasetRef names a Dataset that does not exist (or whose storage holds no "
        "published version).",
        "Create the Dataset or fix spec.datasetRef.name; training starts when it is Ready.",
    ),
    Reason.DatasetNotReady: Explanation(
        _TJ,
        True,
        "The Dataset has no version yet, or not the pinned spec.datasetRef.version.",
        "Wait for the Dataset to be Ready; check its own reason when it fails.",
    ),
    Reason.TrainingJobNotFound: Explanation(
        _MD,
        True,
        "spec.model.trainingJobRef names a TrainingJob that does not exist.",
        "Create it or fix spec.model.trainingJobRef.name.",
    ),
    Reason.RunNotFound: Explanation(
        _MD,
        True,
        "The pinned spec.model.trainingJobRef.run is not in the TrainingJob's status.runs.",
        "Pick a run listed in the TrainingJob's status (runs beyond its history are pruned).",
    ),
    Reason.RunNotSucceeded: Explanation(
        _MD,
        True,
        "The pinned run did not succeed; or the TrainingJob has no successful run and its last "
        "one failed.",
        "Pin a successful run, or unpin; fix what the TrainingJob's reason names (a new run "
        "starts when its spec or data change).",
    ),
    Reason.ModelNotReady: Explanation(
        _MD,
        True,
        "The TrainingJob has no successful run yet.",
        "Wait; look at the TrainingJob's reason when it fails.",
    ),
    Reason.PromotionBlocked: Explanation(
        _MD,
        True,
        "A newer model misses spec.promotion's gate; the previous model keeps serving.",
        "Improve the model, relax the gate, or pin the run explicitly.",
    ),
    Reason.InUse: Explanation(
        f"{_DS}, {_TJ}",
        True,
        "Deletion waits: a TrainingJob or ModelDeployment still references this object.",
        "Delete the dependents first; deletion then completes on its own.",
    ),
    Reason.DeletionBlocked: Explanation(
        f"{_DS}, {_TJ}", True, "Event: deletion is waiting on dependents (see InUse).", "As InUse."
    ),
    Reason.InvalidArguments: Explanation(
        f"{_WORKLOADS}, {_SERVER}",
        True,
        "A workload was started with wrong arguments: an image/operator version mismatch.",
        "Use the operator and workload images of the same release.",
    ),
    Reason.InvalidSpec: Explanation(
        _WORKLOADS,
        True,
        "The spec fails a check the API server cannot make (a featureEngineering expression "
        "that does not parse), or the spec handed to a workload does not parse (an "
        "image/operator version mismatch).",
        "Fix the field named in the message; for a workload, use the operator and workload "
        "images of the same release.",
    ),
    Reason.EstimatorNotAllowed: Explanation(
        _TJ,
        True,
        "spec.estimator.class is not on the trainer's allowlist.",
        "Pick an allowed class (listed in the message and in docs/api.md).",
    ),
    Reason.InvalidParams: Explanation(_TJ, True, "spec.estimator.params are rejected.", _FIX_SPEC),
    Reason.InvalidSearch: Explanation(_TJ, True, "spec.search is not usable.", _FIX_SPEC),
    Reason.MixedTasks: Explanation(
        _TJ,
        True,
        "spec.candidates mixes classifiers and regressors: candidates compete on one task.",
        "Keep the candidates of the Dataset's task; the message names the odd one out.",
    ),
    Reason.InvalidFeatures: Explanation(
        _TJ,
        True,
        "spec.featureEngineering does not fit the Dataset: a derived name collides, an "
        "expression reads an unknown column or mixes numbers and text, or a transform names an "
        "unknown feature or does not fit its type.",
        _FIX_SPEC,
    ),
    Reason.MetricNotApplicable: Explanation(
        f"{_TJ}, {_MD}",
        True,
        "A metric in spec.metrics or spec.objective does not fit the estimator's task "
        "(e.g. rmse for a classifier); on a ModelDeployment, QualityDegraded=Unknown: "
        "spec.monitoring.quality.metric does not fit the served model's task (accuracy is for "
        "classifiers, mae and rmse for regressors), and nothing retrains on it.",
        _FIX_SPEC,
    ),
    Reason.SourceNotFound: Explanation(
        _DS, True, "The source object, prefix or URL does not exist.", _FIX_SPEC
    ),
    Reason.SourceUnreachable: Explanation(
        _DS,
        True,
        "The HTTP source could not be fetched, or the database of a sql source not reached "
        "(connection or login refused).",
        "Check the URL or the connection Secret, and the network policy; the Job retries "
        "within backoffLimit.",
    ),
    Reason.SourceAddressNotAllowed: Explanation(
        _DS,
        True,
        "The HTTP or API source (or a redirect it answered with), or the database host of a "
        "sql source, leads to an address ingest may not reach (loopback, link-local such as "
        "cloud metadata, private, shared or a cluster network), to a scheme other than "
        "http(s), or from https down to http. Not retried.",
        "Serve the data from a public address, and over https to the end if it starts there; "
        "if the network is meant to be reachable, the cluster admin adds it to the chart's "
        "workloads.http.allowedNetworks (MODELYARD_HTTP_ALLOWED_NETWORKS).",
    ),
    Reason.SourceSecretInvalid: Explanation(
        _DS,
        True,
        "The Secret key a sql or api source names (connectionSecretRef, headersSecretRef) is "
        "empty or not in the form the source needs. Not retried.",
        "Put a libpq URI (sql) or `Name: value` header lines (api) under that key.",
    ),
    Reason.SourceAccessDenied: Explanation(
        _DS,
        True,
        "An api source's page answered 401 Unauthorized or 403 Forbidden: the headers from "
        "headersSecretRef are missing, wrong or expired (they are not sent to another host, so "
        "a next link or redirect elsewhere goes without them). Not retried.",
        "Fix the headers in the Secret (e.g. `Authorization: Bearer …`) and apply again.",
    ),
    Reason.PaginationLoop: Explanation(
        _DS,
        True,
        "An api source's next link or cursor leads back to a page already read.",
        "Check spec.source.api.pagination (nextField, cursorField) against the API's answers.",
    ),
    Reason.TooManyPages: Explanation(
        _DS,
        True,
        "An api source has more pages than spec.source.api.pagination.maxPages.",
        "Raise maxPages, or ask the API for larger pages.",
    ),
    Reason.QueryFailed: Explanation(
        _DS,
        True,
        "The database refused or cancelled spec.source.sql.query: a syntax error, a missing "
        "table or column, a missing privilege, a write (the query runs read-only), or "
        "timeoutSeconds reached. The message is the database's own.",
        "Fix the query or the database user's privileges; a timeout is retried within "
        "backoffLimit.",
    ),
    Reason.UnknownFormat: Explanation(
        _DS, True, "The format cannot be inferred from the file name.", "Set spec.format."
    ),
    Reason.MixedFormats: Explanation(
        _DS, True, "A prefix holds files of different formats.", "Keep one format per prefix."
    ),
    Reason.UnreadableData: Explanation(
        _DS,
        True,
        "The bytes are not valid for the format (ragged rows, bad encoding, truncation).",
        "Fix the file; the message names the line or column.",
    ),
    Reason.SourceTooLarge: Explanation(
        _DS,
        True,
        "A compressed source expands more than 100 times (a decompression bomb), the "
        "decompressed source exceeds $MODELYARD_MAX_SOURCE_BYTES, or one page of an api source "
        "exceeds 32 MiB.",
        "Check the file; if it is genuine, ship it uncompressed or raise the limit; ask the API "
        "for smaller pages.",
    ),
    Reason.EmptyData: Explanation(_DS, True, "The source holds no rows.", "Point at data."),
    Reason.SchemaMismatch: Explanation(
        _WORKLOADS,
        True,
        "A column named in spec.schema, spec.features or spec.target is missing or has the "
        "wrong type.",
        "Fix the spec or the data; the message names the column.",
    ),
    Reason.ValidationFailed: Explanation(
        _DS,
        True,
        "Rows break spec.schema's expectations (nulls, ranges, allowed values).",
        "Fix the data or the expectation; the message names the column, rule and rows.",
    ),
    Reason.CleaningNotApplicable: Explanation(
        _DS,
        True,
        "A spec.cleaning rule does not fit its column: text rules (trim, case, mapping) on a "
        "non-text column, outliers or median on a non-numeric one, a constant that is not of "
        "the column's type, or a statistic over a column with no values.",
        "Fix the rule or declare the column's type in spec.schema; the message names the field.",
    ),
    Reason.TargetNotNumeric: Explanation(
        _TJ, True, "A regressor was given a text target.", "Use a classifier or a numeric target."
    ),
    Reason.DatasetVersionMismatch: Explanation(
        _TJ,
        True,
        "Storage holds another version than the run was scheduled for (the Dataset changed "
        "meanwhile).",
        "None: the operator schedules a run for the new version.",
    ),
    Reason.TrainingFailed: Explanation(
        _TJ,
        True,
        "scikit-learn rejected the data during fit (e.g. one class only).",
        "Read the message; fix the data or the estimator.",
    ),
    Reason.EngineUnavailable: Explanation(
        _TJ,
        True,
        "spec.workers asks for a Dask cluster, but the cluster has no Dask operator (its "
        "DaskCluster resource, kubernetes.dask.org/v1, is not installed) or the operator may not "
        "create one.",
        "Install the Dask operator (docs/distributed-training.md) or leave out spec.workers; "
        "the run is retried when the spec changes.",
    ),
    Reason.EngineLost: Explanation(
        _TJ,
        True,
        "The run's Dask cluster failed under it: its scheduler went away, its workers did not "
        "become ready in time, or they kept failing (e.g. out of memory) after the engine's "
        "retries.",
        "Read the message and the worker pods' events; give the workers more memory or fewer "
        "rows per row group.",
    ),
    Reason.ObjectiveNotMet: Explanation(
        _TJ,
        True,
        "The run's metric misses spec.objective; the model is recorded but never promoted.",
        "Improve the model or the data, or lower the objective.",
    ),
    Reason.ClassImbalance: Explanation(
        _REPORT,
        True,
        "The rarest class is under 10 % of the training split (under half an even share with "
        "more than five classes), or the most common is over 10 times as frequent; the message "
        "gives the shares. Accuracy then flatters the model.",
        "Use class_weight or resampling, and judge by balanced_accuracy or f1_macro.",
    ),
    Reason.Overfitting: Explanation(
        _REPORT,
        True,
        "The training-split accuracy (r2 for a regressor) is more than 0.1 above the test "
        "split's; the message gives both.",
        "Regularize (max_depth, min_samples_leaf, alpha, C) or train on more data.",
    ),
    Reason.PossibleLeakage: Explanation(
        _REPORT,
        True,
        "One feature alone predicts the target (a small tree on it scores 0.98 or more, "
        "cross-validated); the message names it. It may be the target under another name or "
        "known only after it.",
        "Drop the feature (featureEngineering.transforms: drop) unless it is known at "
        "prediction time.",
    ),
    Reason.ModelNotFound: Explanation(
        _SERVER, True, "No model file at the URI.", "Check spec.model and the storage settings."
    ),
    Reason.ModelCardNotFound: Explanation(
        _SERVER, True, "The model has no model card beside it.", "Serve models trained here."
    ),
    Reason.InvalidModelCard: Explanation(
        _SERVER, True, "The model card does not parse.", "Retrain; do not edit published cards."
    ),
    Reason.DigestMismatch: Explanation(
        _SERVER,
        True,
        "The model file's sha256 differs from the digest recorded at training: it was "
        "changed or corrupted, so it is not loaded.",
        "Treat as tampering; retrain or restore the artifact.",
    ),
    Reason.VersionSkew: Explanation(
        _SERVER,
        True,
        "The model was trained with another scikit-learn (or, for a LightGBM model, LightGBM) "
        "major.minor than the server runs.",
        "Serve it with the server image of the trainer's release, or retrain.",
    ),
    Reason.ModelLoadFailed: Explanation(
        _SERVER, True, "The model file could not be loaded.", "Read the message; retrain."
    ),
    Reason.InvalidModel: Explanation(
        _SERVER, True, "The loaded object cannot predict.", "Serve models trained here."
    ),
    Reason.BindFailed: Explanation(
        _SERVER, True, "The server cannot listen on its port.", "Check spec ports and policies."
    ),
    Reason.StorageUnavailable: Explanation(
        f"{_WORKLOADS}, {_SERVER}",
        True,
        "S3 storage could not be reached or refused the request; nothing partial was published.",
        "Check the endpoint, bucket and credentials Secret; the Job retries within "
        "backoffLimit, and a refresh or new generation runs again.",
    ),
    Reason.InternalError: Explanation(
        f"{_WORKLOADS}, {_SERVER}",
        True,
        "An unexpected error; the message carries its type and text.",
        "Report it with the pod's logs.",
    ),
    Reason.JobFailed: Explanation(
        _WORKLOADS,
        True,
        "The Job failed without a termination message (e.g. the pod could not start).",
        "`kubectl describe job` and the pod's events (image, quota, OOM).",
    ),
    Reason.BackoffLimitExceeded: Explanation(
        _WORKLOADS,
        True,
        "Kubernetes: the Job's pods failed more often than backoffLimit.",
        "Read the pods' logs; raise backoffLimit only for transient causes.",
    ),
    Reason.DeadlineExceeded: Explanation(
        _WORKLOADS,
        True,
        "Kubernetes: the Job ran longer than its activeDeadlineSeconds.",
        "Give it more time or resources.",
    ),
    Reason.PodFailurePolicy: Explanation(
        _WORKLOADS,
        True,
        "Kubernetes: a pod exited with a code that is never retried (bad spec or data).",
        "Read the run's message; it names the field or data at fault.",
    ),
    Reason.Evicted: Explanation(
        _WORKLOADS,
        True,
        "Kubernetes: the kubelet evicted the Job's last pod (its node ran low on memory or disk, "
        "or the pod used more ephemeral storage than it requested); the message is the kubelet's.",
        "Lower the workload's use of what the message names, or give it more (spec.resources, "
        "the chart's workloads.tmpSize), or run it on a node with room.",
    ),
    Reason.PermissionDenied: Explanation(
        "Dataset, TrainingJob, ModelDeployment",
        True,
        "The API server refused the operator a call; the message names the verb and the resource "
        "(e.g. create jobs.batch). The operator retries every minute and touches nothing else.",
        "Grant the operator's service account that permission (the Helm chart's RBAC has it).",
    ),
    Reason.ImageNotAllowed: Explanation(
        f"{_TJ}, {_MD}",
        True,
        "spec.image names an image the operator's configuration does not allow: workload images "
        "run with the storage credentials and write the results the operator records.",
        "Remove spec.image, or ask the cluster admin to list the image in workloads.allowedImages.",
    ),
    Reason.LocationNotAllowed: Explanation(
        f"{_DS}, {_MD}",
        True,
        "An s3 URI in the spec (a Dataset's source, a ModelDeployment's model) lies outside the "
        "namespace's own storage prefix and the locations the operator lets it read.",
        "Copy the data into this namespace's prefix, or ask the cluster admin to list the "
        "location in storage.readableLocations for this namespace.",
    ),
    Reason.StorageNotAllowed: Explanation(
        _DS,
        True,
        "spec.storage moves the endpoint, bucket or prefix, which this operator does not allow: "
        "every namespace's artifacts live in its own prefix of the operator's storage.",
        "Remove those fields (credentialsSecretRef and region stay allowed), or ask the cluster "
        "admin for storage.allowOverride.",
    ),
    Reason.SearchTooLarge: Explanation(
        _TJ,
        True,
        "spec.search would fit more candidates than the operator allows "
        "(workloads.maxSearchTrials).",
        "Use fewer candidate values, or random search with a smaller maxTrials.",
    ),
    Reason.NameConflict: Explanation(
        _MD,
        True,
        "A Deployment, Service or other child this object needs already exists and belongs to "
        "another object; the operator does not take it over.",
        "Rename one of the two objects, or delete the other object's child.",
    ),
    Reason.ForeignJob: Explanation(
        _WORKLOADS,
        True,
        "A Job with the name of this object's ingestion or run exists but was not made by the "
        "operator for it (another owner, or another pod template); its result is not used.",
        "Delete that Job; the operator then creates its own.",
    ),
    Reason.ResultRejected: Explanation(
        _WORKLOADS,
        True,
        "The workload's result did not come from the operator's own Job and pod, or does not "
        "match what the operator asked of it (another location, dataset version or shape).",
        "Read the message; refresh the Dataset or change the TrainingJob to run again.",
    ),
    Reason.JobVanished: Explanation(
        _WORKLOADS,
        True,
        "The Job of an ingestion or run was deleted before the operator recorded its result "
        "(deleted by hand, or removed by its TTL while the operator was down).",
        "Refresh the Dataset (annotation modelyard.dev/refresh) or change the TrainingJob to "
        "run again; raise workloads.jobTTLSeconds if the operator is often down that long.",
    ),
    Reason.ModelNotPublished: Explanation(
        _SERVER,
        True,
        "The model's directory has no manifest.json: training never finished publishing it.",
        "Serve a model from a successful run.",
    ),
    Reason.CreateContainerConfigError: Explanation(
        _ALL,
        True,
        "A child pod cannot start: a Secret or ConfigMap it references (e.g. the storage "
        "credentials) or one of its keys is missing. The message is the kubelet's.",
        "Create the Secret with the keys named (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) in "
        "this namespace; the pod starts by itself.",
    ),
    Reason.CreateContainerError: Explanation(
        _ALL, True, "The container runtime could not create the container.", _POD_EVENTS
    ),
    Reason.ErrImagePull: Explanation(
        _ALL, True, "The node could not pull the workload image.", _IMAGE_FIX
    ),
    Reason.ImagePullBackOff: Explanation(
        _ALL, True, "The node keeps failing to pull the workload image.", _IMAGE_FIX
    ),
    Reason.InvalidImageName: Explanation(
        _ALL, True, "The workload image reference cannot be parsed.", _IMAGE_FIX
    ),
    Reason.ErrImageNeverPull: Explanation(
        _ALL, True, "The image is not on the node and the pull policy is Never.", _IMAGE_FIX
    ),
    Reason.RunContainerError: Explanation(
        _ALL, True, "The container runtime could not start the container.", _POD_EVENTS
    ),
    Reason.WaitingForNode: Explanation(
        _ALL,
        False,
        "A pod waits for a node with room; the message is the scheduler's. Room often frees as "
        "other pods end, or a cluster autoscaler adds a node.",
        "Wait; it becomes Unschedulable if no node takes the pod within 20 s.",
    ),
    Reason.Unschedulable: Explanation(
        _ALL,
        True,
        "No node took the pod within 20 s of waiting (resources, node selector, taints); the "
        "message is the scheduler's. It clears by itself once a node takes the pod.",
        "Lower the requests, or fix workloads.nodeSelector / tolerations, or add nodes.",
    ),
    Reason.OOMKilled: Explanation(
        _ALL,
        True,
        "A workload container was killed for using more memory than its limit. An ingest or "
        "training Job's pod shows it as progress (Reconciling) while its Job retries, and as the "
        "failure's reason once the Job gives up; each kill also posts a Warning event.",
        "Raise spec.resources.limits.memory (or workloads.resources.limits.memory).",
    ),
    Reason.CrashLoopBackOff: Explanation(
        _ALL,
        True,
        "A container keeps exiting; when the workload reported why, that reason is shown "
        "instead (e.g. DigestMismatch).",
        "Read the message and `kubectl logs`.",
    ),
    Reason.FailedCreate: Explanation(
        _ALL,
        True,
        "The API server refused to create the pods of a model server's Deployment or of an "
        "ingest or training Job: a ResourceQuota of the namespace is used up, or a LimitRange or "
        "an admission policy refuses them. The message is its own. The run or ingestion is not "
        "failed: the controller tries again.",
        "Free or raise the quota the message names, or lower spec.resources (for a Dataset's "
        "ingestion: the chart's workloads.resources); the pods are created as soon as they fit.",
    ),
    Reason.ReadinessNeverReached: Explanation(
        _MD,
        True,
        "New model server pods run but never pass their readiness probe within the "
        "Deployment's progress deadline; or a canary's router cannot reach its two tracks, "
        "though both are ready.",
        "Read the server pods' logs; a model that loads slowly needs more memory or CPU. A "
        "router: let it reach the model servers' port (NetworkPolicy), read its pods' logs.",
    ),
}
