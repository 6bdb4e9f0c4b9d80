"""The scikit-learn Pipeline a TrainingJob fits: derived features, preprocessing, the estimator.

The pipeline takes a 2-D numpy array with columns in the model card's feature order (the raw
columns): float64 when every feature is numeric, an object array otherwise. When
spec.featureEngineering derives features, its first step appends them (transformers.py), so the
server feeds raw columns and gets the same features. By default numeric columns are imputed
(median) and standard-scaled; string and boolean columns are imputed (most frequent) and one-hot
encoded, with categories unseen in training ignored at prediction time. spec.featureEngineering
.transforms picks another scaling or encoding per feature, or drops it.
"""

from __future__ import annotations

import importlib
import inspect
import re
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, is_classifier
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    RobustScaler,
    StandardScaler,
    TargetEncoder,
)
from sklearn.utils._param_validation import InvalidParameterError

from modelyard.api.features import ColumnTransform, Encoding, FeatureEngineeringSpec, Scaling
from modelyard.api.trainingjob import EstimatorClass
from modelyard.expressions.parse import NUMBER, STRING, ExpressionError, Kind
from modelyard.reasons import Reason
from modelyard.workloads.common.modelcard import DerivedFeatureCard, Feature, TransformCard
from modelyard.workloads.common.termination import EXIT_USAGE, WorkloadError
from modelyard.workloads.training.transformers import DerivedFeatures, HashedColumn

ESTIMATOR_STEP = "model"
DERIVE_STEP = "derive"
NUMERIC_TYPES = frozenset({"integer", "float"})
DEFAULT_HASH_BUCKETS = 32
CARD_TYPE: dict[Kind, Literal["float", "string"]] = {NUMBER: "float", STRING: "string"}
# LightGBM's scikit-learn estimators: its own parameter checks and defaults (_lightgbm).
LIGHTGBM_ESTIMATORS = frozenset(c for c in EstimatorClass if c.value.startswith("lightgbm."))
SCALERS: dict[Scaling, type[Any]] = {
    Scaling.STANDARD: StandardScaler,
    Scaling.MINMAX: MinMaxScaler,
    Scaling.ROBUST: RobustScaler,
}


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


def build_estimator(path: str, params: dict[str, Any] | None, threads: int = 1) -> BaseEstimator:
    """The estimator with `params`, checked; WorkloadError (InvalidParams) naming
    spec.estimator.params for what is wrong. `threads`: native threads one fit may use
    (LightGBM's n_jobs when the spec does not set it)."""
    cls = estimator_class(path)
    if path in LIGHTGBM_ESTIMATORS:
        return _lightgbm(cls, params or {}, threads)
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


def _lightgbm(cls: type[BaseEstimator], params: dict[str, Any], threads: int) -> BaseEstimator:
    """A LightGBM estimator with our defaults where the spec sets none: no log lines
    (verbosity -1) and `threads` threads (n_jobs). LightGBM takes any keyword, only warns of an
    unknown one, and of two names for one parameter silently keeps one (its scikit-learn
    estimators always pass their own arguments, so `num_leaf` would lose to num_leaves' default);
    then it checks values when it fits. All of that is refused here, before the download."""
    from lightgbm.basic import _ConfigAliases

    arguments = {*inspect.signature(cls).parameters} - {"kwargs"}
    # Each LightGBM parameter with every name it goes by.
    names = [{name, *aliases} for name, aliases in _ConfigAliases._get_all_param_aliases().items()]
    for key in [key for key in params if key not in arguments]:
        same = set().union(*(group for group in names if key in group)) - {key}
        if not same:
            raise _invalid(f"{key!r} is not a parameter of {cls.__name__} or of LightGBM")
        argument = sorted(same & arguments)
        if argument:
            raise _invalid(
                f"{key!r} is LightGBM's name for {cls.__name__}'s {argument[0]!r}: "
                f"set {argument[0]!r} instead"
            )
        twice = sorted(same & set(params))
        if twice:
            raise _invalid(f"{key!r} and {twice[0]!r} name the same LightGBM parameter")
    defaults: dict[str, Any] = {"n_jobs": threads}
    if _ConfigAliases.get("verbosity").isdisjoint(params):
        defaults["verbosity"] = -1
    settings = {**defaults, **params}
    # Checked quietly and on one thread, whatever the spec asks of the real fit.
    quiet = {k: v for k, v in settings.items() if k not in _ConfigAliases.get("verbosity")}
    error = _lightgbm_refusal(cls(**{**quiet, "verbosity": -1, "n_jobs": 1}))
    if error is not None:
        raise _invalid(error)
    return cls(**settings)


def _invalid(detail: str) -> WorkloadError:
    return WorkloadError(Reason.InvalidParams, f"spec.estimator.params: {detail}", EXIT_USAGE)


def _lightgbm_refusal(estimator: BaseEstimator) -> str | None:
    """Why LightGBM refuses the estimator's parameters, or None. It checks them only in fit(),
    so the estimator is fitted on a few synthetic rows, on one thread. A classifier's params
    pass when they fit two classes or three (`objective: multiclass` needs three, `binary`
    two; the dataset's are not known yet); the first refusal is the one reported."""
    from lightgbm.basic import LightGBMError

    rows = np.arange(24, dtype=np.float64).reshape(12, 2)
    if is_classifier(estimator):
        # Labels 0, 1 (binary) then 0, 1, 2 (multiclass).
        labels: list[np.ndarray] = [np.arange(12) % 2, np.arange(12) % 3]
    else:
        # In (0, 1]: valid for every regression objective (poisson and gamma need positive
        # labels, cross-entropy labels within [0, 1]).
        labels = [np.arange(1, 13) / 12]
    refusals = []
    for y in labels:
        try:
            estimator.fit(rows, y)
        except (LightGBMError, ValueError, TypeError) as error:
            # LightGBM's checks end with the C++ source file and line: not for users.
            refusals.append(re.sub(r" at \S+, line \d+ \.?$", "", str(error).strip()))
        else:
            return None
    return refusals[0]


def build_pipeline(
    features: list[Feature],
    estimator: BaseEstimator,
    engineering: FeatureEngineeringSpec | None = None,
    target: str | None = None,
) -> Pipeline:
    """The unfitted pipeline over the raw `features`; WorkloadError (InvalidFeatures) when
    `engineering` does not fit them. Without `engineering` it is the default pipeline."""
    derived = _derive_step(features, engineering, target)
    columns = [(f.name, f.type in NUMERIC_TYPES) for f in features]
    if derived is not None:
        kinds = derived.kinds()
        columns += [
            (name, kind == NUMBER) for (name, _), kind in zip(derived.derived, kinds, strict=True)
        ]
    transforms = _transforms(engineering, columns)
    groups: dict[str, list[int]] = {}
    special: list[tuple[str, Any, list[int]]] = []
    for index, (name, numeric) in enumerate(columns):
        choice = transforms.get(name)
        if choice is not None and choice.drop:
            continue
        if numeric:
            scaling = (choice.scaling if choice else None) or Scaling.STANDARD
            group = "numeric" if scaling == Scaling.STANDARD else f"numeric_{scaling}"
        else:
            encoding = (choice.encoding if choice else None) or Encoding.ONEHOT
            if encoding == Encoding.HASH:
                assert choice is not None
                buckets = choice.hash_buckets or DEFAULT_HASH_BUCKETS
                special.append((f"hash_{name}", HashedColumn(buckets), [index]))
                continue
            group = "categorical" if encoding == Encoding.ONEHOT else f"categorical_{encoding}"
        groups.setdefault(group, []).append(index)
    # The default groups come first, in the default order, so a pipeline without feature
    # engineering is exactly the one trained before it existed.
    ordered = sorted(groups, key=lambda g: (g not in ("numeric", "categorical"), g != "numeric", g))
    transformers = [
        (group, _group_transformer(group, is_classifier(estimator)), groups[group])
        for group in ordered
    ]
    transformers += special
    if not transformers:
        raise WorkloadError(
            Reason.InvalidFeatures,
            "spec.featureEngineering.transforms: every feature is dropped: the model has no input",
            EXIT_USAGE,
        )
    preprocess = ColumnTransformer(transformers, remainder="drop")
    steps: list[tuple[str, Any]] = [("preprocess", preprocess), (ESTIMATOR_STEP, estimator)]
    if derived is not None:
        steps.insert(0, (DERIVE_STEP, derived))
    return Pipeline(steps)


def _group_transformer(group: str, classifier: bool) -> Any:
    if group.startswith("numeric"):
        impute = SimpleImputer(strategy="median")
        scaling = group.removeprefix("numeric").removeprefix("_") or Scaling.STANDARD
        if scaling == Scaling.NONE:
            return Pipeline([("impute", impute)])
        return Pipeline([("impute", impute), ("scale", SCALERS[Scaling(scaling)]())])
    encoding = group.removeprefix("categorical").removeprefix("_") or Encoding.ONEHOT
    if encoding == Encoding.ORDINAL:
        # Unseen and missing categories alike become -1: nothing is known of either.
        return OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1
        )
    if encoding == Encoding.TARGET:
        # Cross-fitted in fit_transform (scikit-learn's TargetEncoder), so a row's own target
        # never leaks into its encoding; seeded folds keep a run reproducible.
        folds = StratifiedKFold if classifier else KFold
        # For a regressor the target is continuous even when its values are whole numbers,
        # which "auto" would read as classes: one column per distinct value, not the mean.
        return TargetEncoder(
            target_type="auto" if classifier else "continuous",
            cv=folds(n_splits=5, shuffle=True, random_state=0),
        )
    return Pipeline(
        [
            ("impute", SimpleImputer(strategy="most_frequent")),
            ("encode", OneHotEncoder(handle_unknown="ignore")),
        ]
    )


def _derive_step(
    features: list[Feature], engineering: FeatureEngineeringSpec | None, target: str | None
) -> DerivedFeatures | None:
    if engineering is None or not engineering.derived:
        return None
    taken = {f.name for f in features} | ({target} if target else set())
    seen: set[str] = set()
    for i, feature in enumerate(engineering.derived):
        if feature.name in taken or feature.name in seen:
            raise WorkloadError(
                Reason.InvalidFeatures,
                f"spec.featureEngineering.derived[{i}].name: {feature.name!r} is already a "
                + ("derived feature" if feature.name in seen else "column of the dataset"),
                EXIT_USAGE,
            )
        seen.add(feature.name)
    step = DerivedFeatures(
        inputs=tuple((f.name, f.type) for f in features),
        derived=tuple((d.name, d.expression) for d in engineering.derived),
    )
    # Checked one by one so the error names the expression at fault.
    for i in range(len(engineering.derived)):
        partial = DerivedFeatures(inputs=step.inputs, derived=step.derived[: i + 1])
        try:
            partial.kinds()
        except ExpressionError as error:
            raise WorkloadError(
                Reason.InvalidFeatures,
                f"spec.featureEngineering.derived[{i}].expression: {error}",
                EXIT_USAGE,
            ) from None
    return step


def _transforms(
    engineering: FeatureEngineeringSpec | None, columns: list[tuple[str, bool]]
) -> dict[str, ColumnTransform]:
    if engineering is None or not engineering.transforms:
        return {}
    numeric = dict(columns)
    chosen: dict[str, ColumnTransform] = {}
    for transform in engineering.transforms:
        where = f"spec.featureEngineering.transforms[{transform.name}]"
        if transform.name not in numeric:
            raise WorkloadError(
                Reason.InvalidFeatures,
                f"{where}: no feature {transform.name!r}; features: "
                + ", ".join(name for name, _ in columns),
                EXIT_USAGE,
            )
        if transform.name in chosen:
            raise WorkloadError(Reason.InvalidFeatures, f"{where}: given twice", EXIT_USAGE)
        if transform.encoding is not None and numeric[transform.name]:
            raise WorkloadError(
                Reason.InvalidFeatures,
                f"{where}.encoding: {transform.name!r} is numeric: numbers are scaled, not encoded",
                EXIT_USAGE,
            )
        if transform.scaling is not None and not numeric[transform.name]:
            raise WorkloadError(
                Reason.InvalidFeatures,
                f"{where}.scaling: {transform.name!r} is categorical: categories are encoded, "
                "not scaled",
                EXIT_USAGE,
            )
        chosen[transform.name] = transform
    return chosen


def engineering_card(
    pipeline: Pipeline, engineering: FeatureEngineeringSpec | None
) -> dict[str, Any]:
    """The model card's `derived` and `transforms`: what the pipeline computes beyond defaults."""
    step = pipeline.steps[0][1]
    derived = []
    if isinstance(step, DerivedFeatures):
        derived = [
            DerivedFeatureCard(name=name, expression=expression, type=CARD_TYPE[kind])
            for (name, expression), kind in zip(step.derived, step.kinds(), strict=True)
        ]
    transforms = [
        TransformCard(
            name=t.name,
            encoding=t.encoding,
            scaling=t.scaling,
            hash_buckets=t.hash_buckets,
            drop=t.drop,
        )
        for t in (engineering.transforms if engineering and engineering.transforms else [])
    ]
    return {"derived": derived, "transforms": transforms}


def task_of(estimator: BaseEstimator) -> str:
    return "classification" if is_classifier(estimator) else "regression"
