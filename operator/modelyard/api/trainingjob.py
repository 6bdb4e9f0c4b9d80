"""TrainingJob: which estimator to fit on which Dataset version, and every run's results."""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from modelyard.api.base import ApiModel, Transition
from modelyard.api.common import (
    AGE_COLUMN,
    LABEL_VALUE_MAX,
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
from modelyard.api.features import FeatureEngineeringSpec


class EstimatorClass(StrEnum):
    """The scikit-learn estimators a TrainingJob may use. Nothing outside this list is imported."""

    LOGISTIC_REGRESSION = "sklearn.linear_model.LogisticRegression"
    LINEAR_REGRESSION = "sklearn.linear_model.LinearRegression"
    RIDGE = "sklearn.linear_model.Ridge"
    RIDGE_CLASSIFIER = "sklearn.linear_model.RidgeClassifier"
    LASSO = "sklearn.linear_model.Lasso"
    ELASTIC_NET = "sklearn.linear_model.ElasticNet"
    SGD_CLASSIFIER = "sklearn.linear_model.SGDClassifier"
    SGD_REGRESSOR = "sklearn.linear_model.SGDRegressor"
    DECISION_TREE_CLASSIFIER = "sklearn.tree.DecisionTreeClassifier"
    DECISION_TREE_REGRESSOR = "sklearn.tree.DecisionTreeRegressor"
    RANDOM_FOREST_CLASSIFIER = "sklearn.ensemble.RandomForestClassifier"
    RANDOM_FOREST_REGRESSOR = "sklearn.ensemble.RandomForestRegressor"
    EXTRA_TREES_CLASSIFIER = "sklearn.ensemble.ExtraTreesClassifier"
    EXTRA_TREES_REGRESSOR = "sklearn.ensemble.ExtraTreesRegressor"
    GRADIENT_BOOSTING_CLASSIFIER = "sklearn.ensemble.GradientBoostingClassifier"
    GRADIENT_BOOSTING_REGRESSOR = "sklearn.ensemble.GradientBoostingRegressor"
    HIST_GRADIENT_BOOSTING_CLASSIFIER = "sklearn.ensemble.HistGradientBoostingClassifier"
    HIST_GRADIENT_BOOSTING_REGRESSOR = "sklearn.ensemble.HistGradientBoostingRegressor"
    SVC = "sklearn.svm.SVC"
    SVR = "sklearn.svm.SVR"
    LINEAR_SVC = "sklearn.svm.LinearSVC"
    K_NEIGHBORS_CLASSIFIER = "sklearn.neighbors.KNeighborsClassifier"
    K_NEIGHBORS_REGRESSOR = "sklearn.neighbors.KNeighborsRegressor"
    GAUSSIAN_NB = "sklearn.naive_bayes.GaussianNB"


class Metric(StrEnum):
    """Evaluation metrics, computed on the held-out test split."""

    ACCURACY = "accuracy"
    BALANCED_ACCURACY = "balanced_accuracy"
    F1_MACRO = "f1_macro"
    F1_WEIGHTED = "f1_weighted"
    PRECISION_MACRO = "precision_macro"
    RECALL_MACRO = "recall_macro"
    ROC_AUC = "roc_auc"
    LOG_LOSS = "log_loss"
    RMSE = "rmse"
    MAE = "mae"
    R2 = "r2"


# Metrics where smaller is better; an objective's `minimum` is then read as a maximum.
LOWER_IS_BETTER = frozenset({Metric.LOG_LOSS, Metric.RMSE, Metric.MAE})


def meets(metric: str, value: float, threshold: float) -> bool:
    """Whether `value` clears a bar: at least `threshold`, or at most it for error metrics."""
    return value <= threshold if Metric(metric) in LOWER_IS_BETTER else value >= threshold


class DatasetRef(ApiModel):
    rules = (
        Transition(
            cel="self.name == oldSelf.name",
            message="datasetRef.name is immutable: create a new TrainingJob for another Dataset",
            field_path=".name",
        ),
    )

    name: ObjectName = Field(
        description="Name of a Dataset in the same namespace. Cannot change after creation."
    )
    version: Digest | None = Field(
        default=None,
        description="A Dataset version (sha256:…) to pin; the Dataset's current one when left out.",
    )


class EstimatorSpec(ApiModel):
    class_: EstimatorClass = Field(
        alias="class", description="Import path of an allowed scikit-learn estimator."
    )
    params: dict[str, Any] | None = Field(
        default=None, description="Constructor parameters, e.g. {n_estimators: 200, max_depth: 8}."
    )


class SearchStrategy(StrEnum):
    GRID = "grid"
    RANDOM = "random"


class SearchSpec(ApiModel):
    """Hyperparameter search by cross-validation on the training split."""

    strategy: SearchStrategy = Field(description="grid tries every combination; random samples.")
    params: dict[str, Any] = Field(
        description="Candidate values per estimator parameter, e.g. {C: [0.1, 1, 10]}."
    )
    cv: int = Field(default=5, ge=2, le=20, description="Cross-validation folds.")
    max_trials: int = Field(
        default=10, ge=1, le=1000, description="Candidates sampled by random search."
    )


def search_candidates(search: SearchSpec) -> int:
    """How many parameter combinations a search fits (each once per cross-validation fold)."""
    grid = math.prod(len(v) if isinstance(v, list) else 1 for v in search.params.values())
    return grid if search.strategy == SearchStrategy.GRID else min(grid, search.max_trials)


class Objective(ApiModel):
    """A quality bar: a run that misses it is recorded with reason ObjectiveNotMet."""

    metric: Metric = Field(description="Metric to judge by.")
    minimum: float = Field(
        description="Least acceptable value; for error metrics (rmse, mae, log_loss) the most."
    )


class RetrainPolicy(StrEnum):
    DATASET_CHANGE = "DatasetChange"
    NEVER = "Never"


class TrainingJobSpec(ApiModel):
    dataset_ref: DatasetRef = Field(description="The Dataset to train on.")
    estimator: EstimatorSpec = Field(description="The scikit-learn estimator to fit.")
    feature_engineering: FeatureEngineeringSpec | None = Field(
        default=None,
        description="Derived columns and per-feature encoding and scaling, fitted as steps of "
        "the model's pipeline.",
    )
    search: SearchSpec | None = Field(default=None, description="Optional hyperparameter search.")
    metrics: list[Metric] | None = Field(
        default=None,
        max_length=16,
        description="Metrics to compute besides the defaults for the task.",
    )
    objective: Objective | None = Field(default=None, description="Quality bar for a run.")
    retrain_on: RetrainPolicy = Field(
        default=RetrainPolicy.NEVER,
        description="DatasetChange starts a new run whenever the Dataset gets a new version.",
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="CPU and memory for the training container."
    )
    image: Image | None = Field(default=None, description="Trainer image, overriding the default.")
    backoff_limit: int = Field(
        default=2, ge=0, le=10, description="Retries of a failed training pod before the run fails."
    )
    run_history_limit: int = Field(
        default=10,
        ge=1,
        le=100,
        description="Most runs kept in status.runs. Older finished runs are dropped from status, "
        "except the latest successful one and those a ModelDeployment serves or pins; their "
        "models and cards stay in storage.",
    )
    active_deadline_seconds: int | None = Field(
        default=None, ge=1, description="Longest a run may take before it is stopped and failed."
    )


class ModelArtifact(ApiModel):
    uri: S3Uri = Field(description="Where the model file lives.")
    digest: Digest = Field(description="sha256 of the model file, checked before loading.")
    card_digest: Digest | None = Field(
        default=None,
        description="sha256 of the model card (model.json beside the model file), checked "
        "before it is read.",
    )
    endpoint: str | None = Field(
        default=None,
        max_length=2048,
        description="S3 endpoint the model was written to; its servers read it there even "
        "after the operator's storage settings change.",
    )


RunPhase = Literal["Pending", "Running", "Succeeded", "Failed"]


class Run(ApiModel):
    id: str = Field(max_length=63, description="Run identifier, e.g. run-3.")
    dataset_version: Digest | None = Field(default=None, description="Dataset version trained on.")
    job: str | None = Field(default=None, description="Name of the Kubernetes Job of this run.")
    job_uid: str | None = Field(
        default=None,
        max_length=64,
        description="UID of that Job: only its result is recorded, never that of another Job "
        "under the same name.",
    )
    generation: int | None = Field(
        default=None, ge=0, description="The TrainingJob's metadata.generation this run trained."
    )
    phase: RunPhase = Field(description="Pending, Running, Succeeded or Failed.")
    reason: str | None = Field(default=None, description="Why it ended so, e.g. ObjectiveNotMet.")
    message: str | None = Field(default=None, description="Details for humans.")
    started_at: datetime | None = Field(default=None, description="When the run started.")
    finished_at: datetime | None = Field(default=None, description="When the run ended.")
    params: dict[str, Any] | None = Field(
        default=None, description="Estimator parameters used (the best ones after a search)."
    )
    metrics: dict[str, float] | None = Field(default=None, description="Test-split metrics.")
    model: ModelArtifact | None = Field(default=None, description="The trained model.")


class PrimaryMetric(ApiModel):
    name: str = Field(description="Metric name.")
    value: float = Field(description="Its value on the test split.")


Phase = Literal["Pending", "Running", "Succeeded", "Failed"]


class TrainingJobStatus(StatusBase):
    phase: Phase | None = Field(
        default=None, description="One-word summary: Pending, Running, Succeeded or Failed."
    )
    runs: list[Run] | None = Field(default=None, description="Every run, oldest first.")
    model: ModelArtifact | None = Field(
        default=None, description="Model of the latest successful run."
    )
    metrics: dict[str, float] | None = Field(
        default=None, description="Metrics of the latest successful run."
    )
    dataset_version: Digest | None = Field(
        default=None, description="Dataset version behind the latest successful run."
    )
    latest_run: str | None = Field(default=None, description="Id of the latest successful run.")
    primary_metric: PrimaryMetric | None = Field(
        default=None, description="The objective's metric (or the task default) of that run."
    )


class TrainingJob(ResourceBase):
    """Fits a scikit-learn estimator on a Dataset version; each run is recorded with lineage."""

    info = KindInfo(
        kind="TrainingJob",
        plural="trainingjobs",
        singular="trainingjob",
        short_names=("tj",),
        columns=(
            READY_COLUMN,
            PHASE_COLUMN,
            PrinterColumn("Run", ".status.latestRun", description="Latest successful run"),
            PrinterColumn("Metric", ".status.primaryMetric.name"),
            PrinterColumn("Score", ".status.primaryMetric.value", type="number"),
            AGE_COLUMN,
        ),
        description="Fits a scikit-learn estimator on a Dataset version, recording each run.",
    )
    rules = (name_at_most(LABEL_VALUE_MAX, "it labels the training Jobs and pods made for it"),)

    kind: Literal["TrainingJob"] = "TrainingJob"
    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None
