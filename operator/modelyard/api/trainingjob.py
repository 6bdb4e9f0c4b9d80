"""TrainingJob: which estimator to fit on which Dataset version, and every run's results."""

from __future__ import annotations

import math
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import Field, StringConstraints, field_validator

from modelyard.api.base import ApiModel, Rule, Transition, count_set
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
from modelyard.api.refresh import DURATION_PATTERN


class EstimatorClass(StrEnum):
    """The estimators a TrainingJob may use: scikit-learn's, and LightGBM's scikit-learn
    interface. Nothing outside this list is imported."""

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
    LGBM_CLASSIFIER = "lightgbm.LGBMClassifier"
    LGBM_REGRESSOR = "lightgbm.LGBMRegressor"


# Estimators that train data-parallel across an engine's workers (through lightgbm.dask).
DATA_PARALLEL_ESTIMATORS = (EstimatorClass.LGBM_CLASSIFIER, EstimatorClass.LGBM_REGRESSOR)


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

    strategy: SearchStrategy = Field(
        default=SearchStrategy.GRID, description="grid tries every combination; random samples."
    )
    params: dict[str, Any] | None = Field(
        default=None,
        description="Candidate values per estimator parameter, e.g. {C: [0.1, 1, 10]}. Only with "
        "spec.estimator: each of spec.candidates has its own searchSpace.",
    )
    cv: int = Field(default=5, ge=2, le=20, description="Cross-validation folds.")
    max_trials: int = Field(
        default=10,
        ge=1,
        le=1000,
        description="Combinations sampled by random search (per candidate estimator).",
    )


class CandidateSpec(EstimatorSpec):
    """One estimator model selection tries, with its own search space."""

    search_space: dict[str, Any] | None = Field(
        default=None,
        description="Candidate values per parameter, e.g. {C: [0.1, 1, 10]}; left out, the "
        "estimator is cross-validated with its params alone.",
    )


def _grid_size(space: dict[str, Any] | None) -> int:
    return math.prod(len(v) if isinstance(v, list) else 1 for v in (space or {}).values())


def search_candidates(search: SearchSpec) -> int:
    """How many parameter combinations a search fits (each once per cross-validation fold)."""
    grid = _grid_size(search.params)
    return grid if search.strategy == SearchStrategy.GRID else min(grid, search.max_trials)


def search_trials(spec: TrainingJobSpec) -> int:
    """Parameter combinations the whole run fits: every candidate's, or the one search's."""
    if not spec.candidates:
        return search_candidates(spec.search) if spec.search else 1
    search = spec.search or SearchSpec()
    sizes = [_grid_size(c.search_space) for c in spec.candidates]
    if search.strategy == SearchStrategy.RANDOM:
        sizes = [min(size, search.max_trials) for size in sizes]
    return sum(sizes)


class WorkersSpec(ApiModel):
    """A Dask cluster the operator creates for each run and deletes after it."""

    replicas: int = Field(ge=1, le=100, description="How many Dask workers the run gets.")
    resources: ResourceRequirements | None = Field(
        default=None,
        description="CPU and memory for each worker, e.g. {limits: {cpu: 1, memory: 2Gi}}; "
        "a worker runs as many threads as its CPU limit (at least one).",
    )
    data_parallel: bool = Field(
        default=False,
        description="Train the estimator data-parallel on the snapshot's Parquet row groups, "
        "spread over the workers, so that the training data need not fit in one pod's memory "
        "(LightGBM estimators, without search). Off: the workers run the search's trials and "
        "the candidates' fits, on data the training pod loads.",
    )


class Objective(ApiModel):
    """A quality bar: a run that misses it is recorded with reason ObjectiveNotMet."""

    metric: Metric = Field(description="Metric to judge by.")
    minimum: float = Field(
        description="Least acceptable value; for error metrics (rmse, mae, log_loss) the most."
    )


class RetrainTrigger(StrEnum):
    """Evidence that starts a new run on its own."""

    DATASET_CHANGE = "DatasetChange"
    DRIFT = "Drift"
    QUALITY_DEGRADED = "QualityDegraded"


class TrainingJobSpec(ApiModel):
    rules = (
        Rule(
            cel="has(self.estimator) != has(self.candidates)",
            message="exactly one of estimator or candidates must be set",
            check=lambda s: count_set(s.estimator, s.candidates) == 1,
        ),
        Rule(
            cel="!has(self.candidates) || !has(self.search) || !has(self.search.params)",
            message="with candidates, each candidate's searchSpace is searched: leave out "
            "search.params",
            check=lambda s: not s.candidates or s.search is None or s.search.params is None,
            field_path=".search.params",
        ),
        Rule(
            cel="!has(self.estimator) || !has(self.search) || has(self.search.params)",
            message="search.params is required with estimator: the values to try",
            check=lambda s: s.estimator is None or s.search is None or s.search.params is not None,
            field_path=".search.params",
        ),
        Rule(
            cel="!has(self.workers) || !self.workers.dataParallel || (has(self.estimator) && "
            + "self.estimator.class in ["
            + ", ".join(f"'{c}'" for c in DATA_PARALLEL_ESTIMATORS)
            + "])",
            message="workers.dataParallel trains one of "
            + ", ".join(DATA_PARALLEL_ESTIMATORS)
            + " given as estimator",
            check=lambda s: (
                s.workers is None
                or not s.workers.data_parallel
                or (s.estimator is not None and s.estimator.class_ in DATA_PARALLEL_ESTIMATORS)
            ),
            field_path=".workers.dataParallel",
        ),
        Rule(
            cel="!has(self.workers) || !self.workers.dataParallel || !has(self.search)",
            message="a data-parallel run trains once on the whole snapshot: leave out search, "
            "or turn workers.dataParallel off to spread the search's trials over the workers",
            check=lambda s: s.workers is None or not s.workers.data_parallel or s.search is None,
            field_path=".workers.dataParallel",
        ),
        Rule(
            cel="!has(self.retrainOn) || self.retrainOn.all(t, t == 'DatasetChange') || "
            "!has(self.datasetRef.version)",
            message="Drift and QualityDegraded retrain on refreshed data, which a pinned "
            "datasetRef.version never sees: unpin it",
            check=lambda s: (
                s.dataset_ref.version is None
                or all(t == RetrainTrigger.DATASET_CHANGE for t in s.retrain_on or [])
            ),
            field_path=".retrainOn",
        ),
    )

    dataset_ref: DatasetRef = Field(description="The Dataset to train on.")
    estimator: EstimatorSpec | None = Field(
        default=None, description="The scikit-learn estimator to fit (or list candidates)."
    )
    candidates: list[CandidateSpec] | None = Field(
        default=None,
        min_length=1,
        max_length=10,
        description="Estimators to choose from: each is searched under the same "
        "cross-validation and the best by the objective's metric (or the task default) is the "
        "run's model. Every trial is on the leaderboard.",
    )
    feature_engineering: FeatureEngineeringSpec | None = Field(
        default=None,
        description="Derived columns and per-feature encoding and scaling, fitted as steps of "
        "the model's pipeline.",
    )
    search: SearchSpec | None = Field(
        default=None,
        description="Hyperparameter search; with candidates, its strategy, folds and trials "
        "apply to each candidate's searchSpace.",
    )
    metrics: list[Metric] | None = Field(
        default=None,
        max_length=16,
        description="Metrics to compute besides the defaults for the task.",
    )
    objective: Objective | None = Field(default=None, description="Quality bar for a run.")
    retrain_on: list[RetrainTrigger] | None = Field(
        default=None,
        max_length=3,
        json_schema_extra={"x-kubernetes-list-type": "set"},
        description="What starts a new run by itself, each listed once: DatasetChange, whenever "
        "the Dataset gets "
        "a new version; Drift and QualityDegraded, when a ModelDeployment serving this "
        "TrainingJob's model reports that condition: the Dataset is refreshed first, then the "
        "run trains on what it holds. Left out, runs start only when the spec changes.",
    )
    retrain_cooldown: Annotated[str, StringConstraints(max_length=32, pattern=DURATION_PATTERN)] = (
        Field(
            default="1h",
            description="Least time between two runs started by Drift or QualityDegraded, so a "
            "lasting drift does not retrain in a loop, e.g. 30m or 6h.",
        )
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="CPU and memory for the training container."
    )
    workers: WorkersSpec | None = Field(
        default=None,
        description="Run on a Dask cluster of this many workers, created for each run and "
        "deleted after it (needs the Dask operator, see docs/distributed-training.md). Left out, "
        "the run is one pod.",
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

    @field_validator("retrain_on", mode="before")
    @classmethod
    def _retrain_on_of_earlier_releases(cls, value: Any) -> Any:
        # Before the model stage retrainOn was one string, defaulted to Never: objects stored then
        # still hold it. Read Never as nothing and DatasetChange as that one trigger.
        if value == "Never":
            return None
        if isinstance(value, str):
            return [value]
        return value

    @field_validator("retrain_on")
    @classmethod
    def _each_trigger_once(cls, value: list[RetrainTrigger] | None) -> list[RetrainTrigger] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("each trigger may be listed once")
        return value


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
# Trials of a run's search shown in status; the model card holds them all.
LEADERBOARD_TOP = 5


class LeaderboardEntry(ApiModel):
    rank: int = Field(ge=1, description="1 is the trial whose estimator became the model.")
    estimator: str = Field(max_length=128, description="Estimator class.")
    params: dict[str, Any] | None = Field(default=None, description="Parameters of the trial.")
    score: float = Field(
        description="Mean cross-validated score of the selection metric (negated for error "
        "metrics, as scikit-learn scores: greater is better)."
    )
    score_std: float | None = Field(default=None, description="Its standard deviation.")
    fit_seconds: float | None = Field(default=None, description="Mean time to fit one fold.")


class Finding(ApiModel):
    """A problem a reviewer would flag in the evaluation."""

    reason: str = Field(
        max_length=64, description="ClassImbalance, Overfitting or PossibleLeakage."
    )
    message: str = Field(max_length=1024, description="What was seen, with the numbers.")


class EvaluationReport(ApiModel):
    uri: S3Uri = Field(description="s3:// URI of the run's report.html; its plots lie beside it.")
    digest: Digest | None = Field(default=None, description="sha256 of report.html.")
    plots: list[str] | None = Field(
        default=None, max_length=16, description="File names of the PNG plots beside it."
    )
    findings: list[Finding] | None = Field(
        default=None, max_length=16, description="Problems found: imbalance, overfitting, leakage."
    )


class RunProgress(ApiModel):
    """How far a run on workers has come, while it runs."""

    workers: int = Field(ge=0, description="Workers the run asked for.")
    workers_ready: int = Field(ge=0, description="Of those, how many are ready.")
    trials_done: int | None = Field(
        default=None, ge=0, description="Fits of the search done, one per trial and fold."
    )
    trials_total: int | None = Field(
        default=None, ge=0, description="Fits the search makes in all."
    )


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
    estimator: str | None = Field(
        default=None, max_length=128, description="Class of the estimator the run chose."
    )
    cause: str | None = Field(
        default=None,
        max_length=1024,
        description="What started the run: the spec, a new Dataset version, or the drift or "
        "quality evidence of an automatic retrain.",
    )
    leaderboard: list[LeaderboardEntry] | None = Field(
        default=None,
        max_length=LEADERBOARD_TOP,
        description=f"The best {LEADERBOARD_TOP} trials of the search, best first; the model "
        "card lists every trial.",
    )
    report: EvaluationReport | None = Field(
        default=None, description="Plots and findings on the test split."
    )
    progress: RunProgress | None = Field(
        default=None, description="Workers ready and trials done, while a run on workers runs."
    )


class PrimaryMetric(ApiModel):
    name: str = Field(description="Metric name.")
    value: float = Field(description="Its value on the test split.")


Phase = Literal["Pending", "Running", "Succeeded", "Failed"]


class AutomaticRetrain(ApiModel):
    trigger: RetrainTrigger = Field(description="Drift or QualityDegraded.")
    cause: str = Field(max_length=1024, description="The evidence, e.g. which feature drifted.")
    model_deployment: str | None = Field(
        default=None, description="The ModelDeployment that reported it."
    )
    requested_at: datetime = Field(description="When the retrain was asked for.")
    refresh: str | None = Field(
        default=None,
        max_length=63,
        description="Token of the Dataset refresh it asked for; the run starts once that "
        "ingestion ends.",
    )
    run: str | None = Field(default=None, description="The run it started, once started.")


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
    last_automatic_retrain: AutomaticRetrain | None = Field(
        default=None,
        description="The latest retrain that drift or live quality asked for; spec.retrainCooldown "
        "counts from it.",
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
