"""A loaded model plus everything about it that can be worked out once, at load time.

Requests only index into what is precomputed here: feature positions, the input dtype,
whether missing values are accepted, class labels, the version string.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from modelyard.storage.digest import short
from modelyard.workloads.modelcard import CategoricalBaseline, ModelCard, NumericBaseline
from modelyard.workloads.serve.errors import RequestError
from modelyard.workloads.termination import WorkloadError

NUMERIC_TYPES = frozenset({"integer", "float"})


class Model:
    def __init__(self, card: ModelCard, estimator: Any, name: str) -> None:
        self.card = card
        self.name = name
        self.version = short(card.digest)
        self.features: list[str] = [feature.name for feature in card.features]
        self.index: dict[str, int] = {name: i for i, name in enumerate(self.features)}
        self.feature_set = frozenset(self.features)
        # The encoding training uses (workloads/features.py, which needs pyarrow and so is
        # not imported here): integer and float features are float64 with NaN for missing;
        # string and boolean features are categories, `str` values with booleans as
        # "true"/"false", NaN for missing.
        self.numeric: list[bool] = [feature.type in NUMERIC_TYPES for feature in card.features]
        self.boolean: list[bool] = [feature.type == "boolean" for feature in card.features]
        # A float matrix when every feature is a number (the fast path); otherwise an object
        # matrix, as in training.
        self.all_numeric = all(self.numeric)
        self.dtype: type = np.float64 if self.all_numeric else object
        self.is_classifier = card.task == "classification"

        if not callable(getattr(estimator, "predict", None)):
            raise WorkloadError("InvalidModel", f"{type(estimator).__name__} has no predict()")
        self._predict = estimator.predict
        self._predict_proba = getattr(estimator, "predict_proba", None)
        self.classes: list[Any] = []
        if self.is_classifier:
            self.classes = np.asarray(getattr(estimator, "classes_", [])).tolist()
            if card.classes is not None and [str(c) for c in card.classes] != [
                str(c) for c in self.classes
            ]:
                raise WorkloadError(
                    "InvalidModel",
                    f"the card lists classes {card.classes} but the model predicts "
                    f"{self.classes}: card and model file do not belong together",
                )
        self.has_proba = self.is_classifier and callable(self._predict_proba)

        sample = self._sample_row()
        try:
            self._predict(sample)
        except Exception as error:
            raise WorkloadError(
                "InvalidModel",
                f"the model fails on a sample row built from its card's features: "
                f"{type(error).__name__}: {error}",
            ) from None
        self.accepts_missing = self._accepts_missing(sample)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        try:
            result: np.ndarray = self._predict(matrix)
        except (ValueError, TypeError) as error:
            # What slips past input validation (say an unseen category the encoder refuses)
            # is still the request's fault, not the server's.
            raise RequestError(422, f"the model rejected the input: {error}") from None
        return result

    def require_proba(self) -> None:
        if not self.has_proba:
            kind = "a regression model" if not self.is_classifier else "a classifier without it"
            raise RequestError(422, f"model {self.name!r} is {kind}: no probabilities")

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        self.require_proba()
        assert self._predict_proba is not None  # has_proba says so
        try:
            result: np.ndarray = self._predict_proba(matrix)
        except (ValueError, TypeError) as error:
            raise RequestError(422, f"the model rejected the input: {error}") from None
        return result

    def _sample_row(self) -> np.ndarray:
        """One plausible row: training's median bin edge per number, a seen category per string."""
        baselines = {baseline.feature: baseline for baseline in self.card.baseline}
        row: list[Any] = []
        for name, numeric, boolean in zip(self.features, self.numeric, self.boolean, strict=True):
            baseline = baselines.get(name)
            if boolean:
                row.append("false")
            elif numeric:
                edges = baseline.edges if isinstance(baseline, NumericBaseline) else []
                row.append(float(edges[len(edges) // 2]) if edges else 0.0)
            else:
                categories = (
                    baseline.categories if isinstance(baseline, CategoricalBaseline) else []
                )
                row.append(categories[0] if categories else "")
        return np.array([row], dtype=self.dtype)

    def _accepts_missing(self, sample: np.ndarray) -> bool:
        """Whether the pipeline copes with NaN (an imputer, or an estimator that handles it).

        Asking the model beats guessing from its class names: any step may or may not.
        """
        missing = sample.copy()
        missing[0, :] = np.nan
        try:
            self._predict(missing)
        except Exception:
            return False
        return True
