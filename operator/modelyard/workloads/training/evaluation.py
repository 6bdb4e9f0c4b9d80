"""Test-split metrics for a fitted pipeline: task defaults plus the ones a spec asks for."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn import metrics as skm
from sklearn.pipeline import Pipeline

from modelyard.api.trainingjob import Metric
from modelyard.reasons import Reason
from modelyard.workloads.common.termination import EXIT_INVALID_DATA, EXIT_USAGE, WorkloadError

Array = np.ndarray[Any, Any]

DEFAULTS = {
    "classification": (Metric.ACCURACY, Metric.F1_MACRO, Metric.ROC_AUC),
    "regression": (Metric.RMSE, Metric.MAE, Metric.R2),
}
CLASSIFICATION = frozenset(
    {
        Metric.ACCURACY,
        Metric.BALANCED_ACCURACY,
        Metric.F1_MACRO,
        Metric.F1_WEIGHTED,
        Metric.PRECISION_MACRO,
        Metric.RECALL_MACRO,
        Metric.ROC_AUC,
        Metric.LOG_LOSS,
    }
)
# Metrics computed from predict_proba: undefined without it, or with one class in the test split.
PROBABILISTIC = frozenset({Metric.ROC_AUC, Metric.LOG_LOSS})
# sklearn scorer names for cross-validated search (greater is better, hence the neg_ forms).
SCORERS = {
    Metric.ACCURACY: "accuracy",
    Metric.BALANCED_ACCURACY: "balanced_accuracy",
    Metric.F1_MACRO: "f1_macro",
    Metric.F1_WEIGHTED: "f1_weighted",
    Metric.PRECISION_MACRO: "precision_macro",
    Metric.RECALL_MACRO: "recall_macro",
    Metric.ROC_AUC: "roc_auc_ovr",
    Metric.LOG_LOSS: "neg_log_loss",
    Metric.RMSE: "neg_root_mean_squared_error",
    Metric.MAE: "neg_mean_absolute_error",
    Metric.R2: "r2",
}


def check_metrics(task: str, requested: list[str], where: str) -> None:
    """Refuse metrics that do not apply to the task (rmse for a classifier, say)."""
    for name in requested:
        is_classification = Metric(name) in CLASSIFICATION
        if is_classification != (task == "classification"):
            kind = "classification" if is_classification else "regression"
            raise WorkloadError(
                Reason.MetricNotApplicable,
                f"{where}: {name} is a {kind} metric, but the estimator does {task}",
                EXIT_USAGE,
            )


def check_computable(estimator: Any, requested: list[tuple[str, str]]) -> None:
    """Refuse, before any fitting, metrics this estimator cannot give (roc_auc without
    probabilities): otherwise the run would train for nothing and end without the metric.

    `requested` pairs each metric with the spec field that asks for it.
    """
    if hasattr(estimator, "predict_proba"):
        return
    for where, name in requested:
        if Metric(name) in PROBABILISTIC:
            raise WorkloadError(
                Reason.MetricNotApplicable,
                f"{where}: {name} needs class probabilities, and "
                f"{type(estimator).__name__} with these params gives none (SVC needs "
                "probability: true; SGDClassifier a loss such as log_loss); or choose a metric "
                "such as accuracy or f1_macro",
                EXIT_USAGE,
            )


def check_test_classes(y_test: Array, requested: list[tuple[str, str]]) -> None:
    """Refuse, before fitting, a probability metric the test split cannot define."""
    classes = np.unique(y_test)
    for where, name in requested:
        if Metric(name) in PROBABILISTIC and len(classes) < 2:
            only = ", ".join(str(value) for value in classes[:1]) or "none"
            raise WorkloadError(
                Reason.MetricNotApplicable,
                f"{where}: {name} needs two classes in the test split, which holds only "
                f"class {only}; add data of other classes or choose another metric",
                EXIT_INVALID_DATA,
            )


def metric_names(task: str, requested: list[str]) -> list[str]:
    names = [m.value for m in DEFAULTS[task]]
    return names + [name for name in requested if name not in names]


def evaluate(
    pipeline: Pipeline, x_test: Array, y_test: Array, names: list[str]
) -> dict[str, float]:
    """Each metric's value on the test split; a metric undefined for this data is left out."""
    predicted = pipeline.predict(x_test)
    probabilities = _probabilities(pipeline, x_test)
    results: dict[str, float] = {}
    for name in names:
        value = _compute(Metric(name), y_test, predicted, probabilities, pipeline)
        if value is not None and math.isfinite(value):
            results[name] = round(float(value), 6)
    return results


def _probabilities(pipeline: Pipeline, x: Array) -> Array | None:
    if not hasattr(pipeline, "predict_proba"):
        return None
    try:
        probabilities: Array = pipeline.predict_proba(x)
    except (AttributeError, NotImplementedError):
        return None
    return probabilities


def _compute(
    metric: Metric, y: Array, predicted: Array, proba: Array | None, pipeline: Pipeline
) -> float | None:
    simple: dict[Metric, Callable[[], float]] = {
        Metric.ACCURACY: lambda: skm.accuracy_score(y, predicted),
        Metric.BALANCED_ACCURACY: lambda: skm.balanced_accuracy_score(y, predicted),
        Metric.F1_MACRO: lambda: skm.f1_score(y, predicted, average="macro", zero_division=0),
        Metric.F1_WEIGHTED: lambda: skm.f1_score(y, predicted, average="weighted", zero_division=0),
        Metric.PRECISION_MACRO: lambda: skm.precision_score(
            y, predicted, average="macro", zero_division=0
        ),
        Metric.RECALL_MACRO: lambda: skm.recall_score(
            y, predicted, average="macro", zero_division=0
        ),
        Metric.RMSE: lambda: math.sqrt(skm.mean_squared_error(y, predicted)),
        Metric.MAE: lambda: skm.mean_absolute_error(y, predicted),
        Metric.R2: lambda: skm.r2_score(y, predicted),
    }
    if metric in simple:
        return float(simple[metric]())
    if proba is None or len(np.unique(y)) < 2:
        return None  # roc_auc and log_loss need probabilities and two classes in the test set
    classes = pipeline.classes_
    if metric is Metric.LOG_LOSS:
        return float(skm.log_loss(y, proba, labels=classes))
    if len(classes) == 2:
        return float(skm.roc_auc_score(y, proba[:, 1]))
    try:
        return float(skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes))
    except ValueError:
        return None  # a class absent from the test split
