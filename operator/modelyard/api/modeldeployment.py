"""ModelDeployment: which model to serve, how many replicas, canary and promotion rules."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, StringConstraints

from modelyard.api.base import ApiModel, Rule, count_set
from modelyard.api.common import (
    AGE_COLUMN,
    PHASE_COLUMN,
    READY_COLUMN,
    Digest,
    Image,
    KindInfo,
    ObjectName,
    PrinterColumn,
    ResourceBase,
    ResourceRequirements,
    S3Uri,
    StatusBase,
    name_at_most,
)
from modelyard.api.refresh import DURATION_PATTERN, parse_duration
from modelyard.api.trainingjob import Metric
from modelyard.workloads.serving.config import DEFAULT_BATCH_ROWS, INLINE_ROWS, MAX_BATCH_WAIT_MS

# Children beside <name>: the canary track (<name>-canary), and while a canary takes a share,
# the main track's Service (<name>-stable) and the weighted router (<name>-router). A name
# ending in one of these would collide with another ModelDeployment's child.
RESERVED_SUFFIXES = ("-canary", "-stable", "-router")
NAME_MAX = 63 - max(len(suffix) for suffix in RESERVED_SUFFIXES)


class TrainingJobRef(ApiModel):
    name: ObjectName = Field(description="Name of a TrainingJob in the same namespace.")
    run: str | None = Field(
        default=None,
        max_length=63,
        description="A run id (e.g. run-2) to pin; when left out, the latest successful run that "
        "passes spec.promotion is followed. Pointing at an earlier run is a rollback.",
    )


class ModelSource(ApiModel):
    """The model to serve: exactly one of trainingJobRef, or uri together with digest."""

    rules = (
        Rule(
            cel="has(self.trainingJobRef) != has(self.uri)",
            message="exactly one of trainingJobRef or uri must be set",
            check=lambda m: count_set(m.training_job_ref, m.uri) == 1,
        ),
        Rule(
            cel="has(self.uri) == has(self.digest)",
            message="uri and digest go together: a model is only loaded after its digest matches",
            check=lambda m: (m.uri is None) == (m.digest is None),
            field_path=".digest",
        ),
        Rule(
            cel="has(self.uri) == has(self.cardDigest)",
            message="uri and cardDigest go together: the model card is only read after its "
            "digest matches",
            check=lambda m: (m.uri is None) == (m.card_digest is None),
            field_path=".cardDigest",
        ),
    )

    training_job_ref: TrainingJobRef | None = Field(
        default=None, description="Serve a model trained by a TrainingJob."
    )
    uri: S3Uri | None = Field(
        default=None,
        description="s3:// URI of a model.joblib file, in this namespace's storage or a "
        "location the operator allows it to read.",
    )
    digest: Digest | None = Field(default=None, description="sha256:… digest of that file.")
    card_digest: Digest | None = Field(
        default=None,
        description="sha256:… digest of its model card (model.json beside it), as the "
        "TrainingJob run that made it recorded.",
    )


class Autoscaling(ApiModel):
    """A HorizontalPodAutoscaler on CPU utilization."""

    rules = (
        Rule(
            cel="self.minReplicas <= self.maxReplicas",
            message="minReplicas must not exceed maxReplicas",
            check=lambda a: a.min_replicas <= a.max_replicas,
            field_path=".minReplicas",
        ),
    )

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest replicas.")
    max_replicas: int = Field(ge=1, le=1000, description="Most replicas.")
    target_cpu_utilization_percentage: int = Field(
        default=80,
        ge=1,
        le=100,
        alias="targetCPUUtilizationPercentage",
        description="Average CPU utilization to aim for, in percent of the CPU request.",
    )


class Canary(ApiModel):
    """A second model served beside the main one under the same Service URL."""

    model: ModelSource = Field(description="The candidate model.")
    traffic_percent: int = Field(
        ge=0,
        le=100,
        description="Share of requests for the candidate, by weight (a router in front of both "
        "tracks), whatever the replica counts and autoscaling do. 0 takes it out of service; "
        "100 sends it everything.",
    )


class Promotion(ApiModel):
    """A gate: a new run is served only when its metric reaches the minimum."""

    metric: Metric = Field(description="Metric to judge by.")
    minimum: float = Field(
        description="Least acceptable value; for error metrics (rmse, mae, log_loss) the most."
    )


# The most rows a server keeps per process for drift or live quality (a window of
# 100 000 rows x 20 features is 16 MB).
MAX_WINDOW_ROWS = 100_000


class LiveMetric(StrEnum):
    """Metrics computed from the ground truth sent to the feedback endpoint."""

    ACCURACY = "accuracy"
    MAE = "mae"
    RMSE = "rmse"


LIVE_LOWER_IS_BETTER = frozenset({LiveMetric.MAE, LiveMetric.RMSE})


class DriftMonitoring(ApiModel):
    """Input drift: PSI per feature of recent requests against the training baseline."""

    threshold: float = Field(
        default=0.25,
        gt=0,
        le=10,
        description="PSI above which a feature counts as drifted (0.1-0.25 moderate shift, above "
        "0.25 significant).",
    )
    min_rows: int = Field(
        default=200,
        ge=10,
        le=MAX_WINDOW_ROWS,
        description="Recent input rows, over all servers, drift is judged from; fewer leave "
        "Drifted Unknown. Each server keeps at least this many.",
    )


class QualityMonitoring(ApiModel):
    """Live quality from the ground truth sent to the feedback endpoint."""

    metric: LiveMetric = Field(description="accuracy for classifiers; mae or rmse for regressors.")
    minimum: float = Field(
        description="Least acceptable value; for error metrics (mae, rmse) the most."
    )
    min_labels: int = Field(
        default=50,
        ge=1,
        le=MAX_WINDOW_ROWS,
        description="Recent labelled predictions, over all servers, quality is judged from; "
        "fewer leave QualityDegraded Unknown. Each server keeps at least this many.",
    )


class Monitoring(ApiModel):
    """The operator gathers drift and live quality from every server of the main model."""

    rules = (
        Rule(
            cel="duration(self.interval) >= duration('5s')",
            message="interval must be at least 5s",
            check=lambda m: parse_duration(m.interval).total_seconds() >= 5,
            field_path=".interval",
        ),
    )

    drift: DriftMonitoring | None = Field(
        default=None, description="Judge input drift; its scores are shown either way."
    )
    quality: QualityMonitoring | None = Field(
        default=None, description="Judge live quality from feedback."
    )
    interval: Annotated[str, StringConstraints(max_length=32, pattern=DURATION_PATTERN)] = Field(
        default="30s", description="How often the operator gathers from the servers."
    )


class Batching(ApiModel):
    """Adaptive batching: small predictions that queue together in a server share one model
    call, and each gets its own rows' answer."""

    max_rows: int = Field(
        default=DEFAULT_BATCH_ROWS,
        ge=1,
        le=INLINE_ROWS,
        description="Rows one model call takes at most; 1 turns batching off.",
    )
    max_wait_milliseconds: int = Field(
        default=0,
        ge=0,
        le=int(MAX_BATCH_WAIT_MS),
        description="How long the first prediction of a batch waits for others. 0 batches only "
        "the requests a server read together, so a lone request never waits; more trades "
        "latency for larger batches.",
    )


class ModelDeploymentSpec(ApiModel):
    rules = (
        Rule(
            cel="!(has(self.replicas) && has(self.autoscaling))",
            message="set either replicas or autoscaling, not both",
            check=lambda s: s.replicas is None or s.autoscaling is None,
            field_path=".autoscaling",
        ),
    )

    model: ModelSource = Field(description="The model to serve.")
    replicas: int | None = Field(
        default=None,
        ge=0,
        le=1000,
        description=(
            "Fixed number of replicas (1 when left out). 0 removes every server: the model's "
            "URL answers nothing, and status reads Ready with reason ScaledToZero."
        ),
    )
    autoscaling: Autoscaling | None = Field(
        default=None, description="Scale on CPU instead of a fixed replica count."
    )
    canary: Canary | None = Field(default=None, description="Serve a candidate beside the model.")
    promotion: Promotion | None = Field(
        default=None, description="Only follow TrainingJob runs that pass this gate."
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="CPU and memory for each server container."
    )
    image: Image | None = Field(default=None, description="Server image, overriding the default.")
    batching: Batching | None = Field(
        default=None,
        description=f"Adaptive batching in each server; on when left out ({DEFAULT_BATCH_ROWS} "
        "rows a call, no added wait).",
    )
    monitoring: Monitoring | None = Field(
        default=None,
        description="Gather drift and live quality from the servers into status, with the "
        "Drifted and QualityDegraded conditions; a TrainingJob whose retrainOn lists them "
        "retrains when they turn True.",
    )


class ServedModel(ApiModel):
    """A model with its full lineage: file, digest, the run that made it and the data it saw."""

    uri: S3Uri = Field(description="Where the model file lives.")
    digest: Digest = Field(description="sha256 of the model file.")
    card_digest: Digest | None = Field(
        default=None, description="sha256 of its model card, checked before the card is read."
    )
    endpoint: str | None = Field(
        default=None,
        max_length=2048,
        description="S3 endpoint the model is read from: where it was written, kept when the "
        "operator's storage settings change later.",
    )
    training_job: str | None = Field(default=None, description="TrainingJob that produced it.")
    run: str | None = Field(default=None, description="Run id within that TrainingJob.")
    dataset: str | None = Field(default=None, description="Dataset it was trained on.")
    dataset_version: Digest | None = Field(default=None, description="Dataset version used.")


class CanaryStatus(ApiModel):
    model: ServedModel = Field(description="The candidate and its lineage.")
    traffic_percent: int = Field(
        ge=0, le=100, description="Share of requests it receives now, in percent."
    )
    replicas: int = Field(ge=0, description="Replicas serving the candidate.")


class HistoryEntry(ApiModel):
    model: ServedModel = Field(description="A model served before.")
    served_from: datetime | None = Field(default=None, description="When it started serving.")
    served_until: datetime = Field(description="When it was replaced.")


class FeatureDrift(ApiModel):
    name: str = Field(max_length=256, description="Feature.")
    psi: float = Field(description="Population stability index against the training baseline.")


class DriftStatus(ApiModel):
    rows: int = Field(ge=0, description="Recent input rows the scores are computed over.")
    max_psi: float | None = Field(default=None, description="The largest score.")
    features: list[FeatureDrift] | None = Field(
        default=None, max_length=64, description="Scores per feature, largest first."
    )


class QualityStatus(ApiModel):
    metric: LiveMetric = Field(description="The live metric.")
    value: float | None = Field(default=None, description="Its value; absent without labels.")
    labels: int = Field(ge=0, description="Labelled predictions it is computed from.")


class MonitoringStatus(ApiModel):
    observed_at: datetime = Field(description="When the servers were last gathered from.")
    model_digest: Digest | None = Field(
        default=None, description="Digest of the model the figures are for."
    )
    servers: int = Field(ge=0, description="Server processes (replicas x workers) answering.")
    unreachable: int = Field(default=0, ge=0, description="Server processes that did not answer.")
    drift: DriftStatus | None = Field(default=None, description="Input drift.")
    quality: QualityStatus | None = Field(default=None, description="Live quality.")


Phase = Literal["Pending", "Progressing", "Ready", "Failed"]


class ModelDeploymentStatus(StatusBase):
    phase: Phase | None = Field(
        default=None, description="One-word summary: Pending, Progressing, Ready or Failed."
    )
    url: str | None = Field(default=None, description="In-cluster URL of the model server.")
    model: ServedModel | None = Field(default=None, description="The model now served.")
    served_since: datetime | None = Field(default=None, description="When it started serving.")
    canary: CanaryStatus | None = Field(default=None, description="The canary, when there is one.")
    replicas: int | None = Field(default=None, ge=0, description="Replicas of the main model.")
    ready_replicas: int | None = Field(default=None, ge=0, description="Of which ready.")
    history: list[HistoryEntry] | None = Field(
        default=None, max_length=20, description="Models served before, newest first."
    )
    monitoring: MonitoringStatus | None = Field(
        default=None, description="Drift and live quality gathered from the servers."
    )


class ModelDeployment(ResourceBase):
    """Serves a model over HTTP (Open Inference Protocol V2 and KServe V1) with lineage."""

    info = KindInfo(
        kind="ModelDeployment",
        plural="modeldeployments",
        singular="modeldeployment",
        short_names=("mdep",),
        columns=(
            READY_COLUMN,
            PHASE_COLUMN,
            PrinterColumn("Model", ".status.model.run", description="Run served"),
            PrinterColumn("Replicas", ".status.readyReplicas", type="integer"),
            PrinterColumn("URL", ".status.url"),
            AGE_COLUMN,
        ),
        description="Serves a model over HTTP (Open Inference Protocol V2 and KServe V1).",
    )
    rules = (
        Rule(
            cel="self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')",
            message="must start with a letter and hold only lowercase letters, digits and '-' "
            "(no dots): it names the model's Service",
            check=lambda d: bool(
                re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", d.metadata.name or "a")
            ),
            field_path=".metadata.name",
        ),
        name_at_most(NAME_MAX, "its children are named <name>-canary, -stable, -router"),
        Rule(
            cel=" && ".join(f"!self.metadata.name.endsWith('{s}')" for s in RESERVED_SUFFIXES),
            message=f"must not end in {', '.join(RESERVED_SUFFIXES)}: those suffixes name the "
            "children of the ModelDeployment without them",
            check=lambda d: not (d.metadata.name or "").endswith(RESERVED_SUFFIXES),
            field_path=".metadata.name",
        ),
    )

    kind: Literal["ModelDeployment"] = "ModelDeployment"
    spec: ModelDeploymentSpec
    status: ModelDeploymentStatus | None = None
