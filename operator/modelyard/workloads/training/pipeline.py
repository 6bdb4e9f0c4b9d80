"""The scikit-learn Pipeline a TrainingJob fits: automatic preprocessing, then the estimator.

The pipeline takes a 2-D numpy array with columns in the model card's feature order: float64
when every feature is numeric, an object array otherwise. Numeric columns are imputed (median)
and scaled; string and boolean columns are imputed (most frequent) and one-hot encoded, with
categories unseen in training ignored at prediction time.
"""

from __future__ import annotations

import importlib
from typing import Any

from sklearn.base import BaseEstimator, is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler
from sklearn.utils._param_validation import InvalidParameterError

from modelyard.api.trainingjob import EstimatorClass
from modelyard.reasons import Reason
from modelyard.workloads.common.modelcard import Feature
from modelyard.workloads.common.termination import EXIT_USAGE, WorkloadError

ESTIMATOR_STEP = "model"
NUMERIC_TYPES = frozenset({"integer", "float"})


def estimator_class(path: str) -> type[BaseEstimator]:
    """The class at `path`, only if it is on the allowlist: nothing else is ever imported."""
    allowed = {member.value for member in EstimatorClass}
    if path not in allowed:
        raise WorkloadError(
            Reason.EstimatorNotAllowed,
            f"spec.estimator.class: {path!r} is not an allowed estimator; allowed: "
            + ", ".join(sorted(allowed)),
            EXIT_USAGE,
        )
    module, _, name = path.rpartition(".")
    cls: type[BaseEstimator] = getattr(importlib.import_module(module), name)
    return cls


def build_estimator(path: str, params: dict[str, Any] | None) -> BaseEstimator:
    cls = estimator_class(path)
    try:
        estimator = cls(**(params or {}))
        # scikit-learn checks values only in fit(); checking now refuses a bad value (a
        # negative n_estimators) before the data is downloaded rather than after.
        estimator._validate_params()
    except (TypeError, InvalidParameterError) as error:
        raise WorkloadError(
            Reason.InvalidParams, f"spec.estimator.params: {error}", EXIT_USAGE
        ) from None
    return estimator


def build_pipeline(features: list[Feature], estimator: BaseEstimator) -> Pipeline:
    numeric = [i for i, f in enumerate(features) if f.type in NUMERIC_TYPES]
    categorical = [i for i, f in enumerate(features) if f.type not in NUMERIC_TYPES]
    transformers: list[tuple[str, Any, list[int]]] = []
    if numeric:
        transformers.append(
            (
                "numeric",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                numeric,
            )
        )
    if categorical:
        transformers.append(
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="most_frequent")),
                        ("encode", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                categorical,
            )
        )
    preprocess = ColumnTransformer(transformers, remainder="drop")
    return Pipeline([("preprocess", preprocess), (ESTIMATOR_STEP, estimator)])


def task_of(estimator: BaseEstimator) -> str:
    return "classification" if is_classifier(estimator) else "regression"
