"""Pipeline steps of our own: derived features, and one column hashed into buckets.

They are pickled inside model.joblib and run in the model server, so they need numpy and
scikit-learn only. A fitted step keeps the expression texts, not parsed trees: the pickle holds
plain strings and the server parses them again (once; parsing is cached).
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction import FeatureHasher

from modelyard.expressions.evaluate import evaluate
from modelyard.expressions.parse import NUMBER, STRING, Kind, infer_kind, parse

Array = np.ndarray[Any, Any]

# How a raw column (its model card type) reads inside an expression.
KIND_OF_TYPE: dict[str, Kind] = {
    "integer": NUMBER,
    "float": NUMBER,
    "boolean": NUMBER,  # 1 / 0, so `flag and x > 3` reads naturally
    "string": STRING,
}


class DerivedFeatures(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """Appends one column per derived feature to the raw input matrix.

    `inputs` are the raw columns (name, card type) in matrix order; `derived` are (name,
    expression) pairs, each able to read the raw columns and the derived ones before it.
    Numeric results are float64 with NaN for missing and for ±inf (so that imputers downstream
    treat a division by zero as a missing value); string results are `str` or NaN.
    """

    def __init__(
        self,
        inputs: tuple[tuple[str, str], ...] = (),
        derived: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.inputs = inputs
        self.derived = derived

    def kinds(self) -> list[Kind]:
        """The kind of each derived feature; raises ExpressionError for a bad expression."""
        known: dict[str, Kind] = {name: KIND_OF_TYPE[type_] for name, type_ in self.inputs}
        kinds: list[Kind] = []
        for name, expression in self.derived:
            kind = infer_kind(parse(expression), known)
            known[name] = kind
            kinds.append(kind)
        return kinds

    def fit(self, x: Array, y: Any = None) -> Self:
        self.kinds_ = self.kinds()
        self.n_features_in_ = len(self.inputs)
        return self

    def transform(self, x: Array) -> Array:
        rows = len(x)
        columns: dict[str, Array] = {}
        for i, (name, type_) in enumerate(self.inputs):
            columns[name] = _as_expression_input(x[:, i], type_)
        results: list[Array] = []
        for (name, expression), kind in zip(self.derived, self.kinds_, strict=True):
            value = evaluate(parse(expression), columns, rows)
            if kind == NUMBER:
                value = np.asarray(value, dtype=np.float64)
                value[~np.isfinite(value)] = np.nan
            columns[name] = value
            results.append(value)
        if x.dtype != object and all(kind == NUMBER for kind in self.kinds_):
            return np.column_stack([np.asarray(x, dtype=np.float64), *results])
        matrix = np.empty((rows, x.shape[1] + len(results)), dtype=object)
        matrix[:, : x.shape[1]] = x
        for j, value in enumerate(results):
            matrix[:, x.shape[1] + j] = value
        return matrix


def _as_expression_input(values: Array, type_: str) -> Array:
    if type_ == "boolean":  # the matrix holds "true" / "false" / NaN
        result = np.full(len(values), np.nan)
        result[values == "true"] = 1.0
        result[values == "false"] = 0.0
        return result
    if KIND_OF_TYPE[type_] == NUMBER:
        return np.asarray(values, dtype=np.float64)
    return np.asarray(values, dtype=object)


class HashedColumn(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    """One categorical column hashed into `buckets` columns (scikit-learn's FeatureHasher):
    a value sets its bucket to 1; a missing value sets none."""

    def __init__(self, buckets: int = 32) -> None:
        self.buckets = buckets

    def fit(self, x: Array, y: Any = None) -> Self:
        self.n_features_in_ = 1
        return self

    def transform(self, x: Array) -> Array:
        hasher = FeatureHasher(n_features=self.buckets, input_type="string", alternate_sign=False)
        tokens = [[value] if isinstance(value, str) else [] for value in x[:, 0].tolist()]
        result: Array = hasher.transform(tokens).toarray()
        return result


def derived_of(estimator: Any) -> list[tuple[str, str]]:
    """The (name, expression) pairs a fitted pipeline computes first; [] when it derives none."""
    steps = getattr(estimator, "steps", None)
    if steps and isinstance(steps[0][1], DerivedFeatures):
        return [tuple(pair) for pair in steps[0][1].derived]  # type: ignore[misc]
    return []
