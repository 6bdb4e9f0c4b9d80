"""A loaded model plus everything about it that can be worked out once, at load time.

Requests only index into what is precomputed here: feature positions, the input dtype,
whether missing values are accepted, class labels, the version string.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
from sklearn.pipeline import Pipeline

from modelyard.reasons import Reason
from modelyard.storage.digest import short
from modelyard.workloads.common.modelcard import CategoricalBaseline, ModelCard, NumericBaseline
from modelyard.workloads.common.termination import WorkloadError
from modelyard.workloads.serving.compiled import Compiled, compile_pipeline
from modelyard.workloads.serving.errors import RequestError
from modelyard.workloads.training.transformers import derived_of

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
            raise WorkloadError(Reason.InvalidModel, f"{type(estimator).__name__} has no predict()")
        options = _predict_options(estimator)
        self._predict: Callable[[np.ndarray], np.ndarray] = partial(estimator.predict, **options)
        proba = getattr(estimator, "predict_proba", None)
        self._predict_proba: Callable[[np.ndarray], np.ndarray] | None = (
            partial(proba, **options) if callable(proba) else None
        )
        self.classes: list[Any] = []
        if self.is_classifier:
            self.classes = np.asarray(getattr(estimator, "classes_", [])).tolist()
            if card.classes is not None and [str(c) for c in card.classes] != [
                str(c) for c in self.classes
            ]:
                raise WorkloadError(
                    Reason.InvalidModel,
                    f"the card lists classes {card.classes} but the model predicts "
                    f"{self.classes}: card and model file do not belong together",
                )
        declared = [(feature.name, feature.expression) for feature in card.derived]
        computed = derived_of(estimator)
        if declared != computed:
            # Requests carry the raw columns only: a pipeline that derives other features than
            # the card says would answer for inputs the card does not describe.
            raise WorkloadError(
                Reason.InvalidModel,
                f"the card declares derived features {declared} but the model computes "
                f"{computed}: card and model file do not belong together",
            )
        self.has_proba = self.is_classifier and callable(self._predict_proba)

        sample = self._sample_row()
        try:
            self._predict(sample)
        except Exception as error:
            raise WorkloadError(
                Reason.InvalidModel,
                f"the model fails on a sample row built from its card's features: "
                f"{type(error).__name__}: {error}",
            ) from None
        self.accepts_missing = self._accepts_missing(sample)

        # Serve with plain numpy when the pipeline compiles and agrees with scikit-learn on
        # varied rows (see compiled.py); otherwise scikit-learn serves every request.
        self.engine = "scikit-learn"
        compiled = compile_pipeline(estimator)
        if compiled is not None and self._agrees(compiled):
            self._predict = compiled.predict
            if compiled.predict_proba is not None:
                self._predict_proba = compiled.predict_proba
            self.engine = "numpy"

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

    def _agrees(self, compiled: Compiled) -> bool:
        """Whether the compiled pipeline answers exactly as scikit-learn on sample rows."""
        rng = np.random.default_rng(0)
        batches = [self._varied_rows(rng, missing=False)]
        if self.accepts_missing:
            batches.append(self._varied_rows(rng, missing=True))
        if not self.all_numeric:
            unseen = self._varied_rows(rng, missing=False)[:1]
            for column, numeric in enumerate(self.numeric):
                if not numeric:
                    unseen[0, column] = "\x00unseen"
            batches.append(unseen)
        # One row as well as many: compiled forests take another path for small batches.
        batches += [rows[:1] for rows in batches]
        try:
            for rows in batches:
                if not _same(_outcome(self._predict, rows), _outcome(compiled.predict, rows)):
                    return False
                if compiled.predict_proba is not None and self._predict_proba is not None:
                    expected = _outcome(self._predict_proba, rows)
                    if not _same(expected, _outcome(compiled.predict_proba, rows)):
                        return False
        except Exception:
            return False
        return True

    def _varied_rows(self, rng: np.random.Generator, missing: bool) -> np.ndarray:
        """Rows spread over the training distribution (the baseline's bins), and beyond it."""
        count = 64
        baselines = {baseline.feature: baseline for baseline in self.card.baseline}
        rows: np.ndarray = np.empty((count, len(self.features)), dtype=self.dtype)
        for column, name in enumerate(self.features):
            baseline = baselines.get(name)
            if self.boolean[column]:
                values: list[Any] = ["true", "false"]
            elif self.numeric[column]:
                edges = baseline.edges if isinstance(baseline, NumericBaseline) else [0.0]
                edges = edges or [0.0]
                spread = (edges[-1] - edges[0]) or 1.0
                values = [*edges, edges[0] - spread, edges[-1] + spread]
            else:
                categories = (
                    baseline.categories if isinstance(baseline, CategoricalBaseline) else []
                )
                values = categories or [""]
            picked = [values[i] for i in rng.integers(0, len(values), count)]
            if self.numeric[column]:
                noise = rng.normal(0.0, 0.05, count) * (abs(np.asarray(picked)) + 1.0)
                picked = (np.asarray(picked, dtype=np.float64) + noise).tolist()
            rows[:, column] = picked
        if missing:
            rows[rng.random(rows.shape) < 0.2] = np.nan
        return rows

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


def _predict_options(estimator: Any) -> dict[str, Any]:
    """Keyword arguments for the final step's predict(): LightGBM predicts on one thread. By
    default it takes the training pod's thread count, and starting that many OpenMP threads per
    request costs milliseconds; a server scales by processes (--workers), not threads."""
    final = estimator.steps[-1][1] if isinstance(estimator, Pipeline) else estimator
    return {"num_threads": 1} if type(final).__module__.startswith("lightgbm.") else {}


def _outcome(function: Callable[[np.ndarray], np.ndarray], rows: np.ndarray) -> Any:
    """The result, or the kind of error: a compiled model must also refuse what sklearn refuses."""
    try:
        return function(rows)
    except ValueError:
        return ValueError


def _same(expected: Any, actual: Any) -> bool:
    if not isinstance(expected, np.ndarray) or not isinstance(actual, np.ndarray):
        return expected is actual
    if expected.shape != actual.shape:
        return False
    if expected.dtype.kind == "f":
        # Same arithmetic, but BLAS may sum in another order: equal to the last few ulps.
        return bool(np.allclose(expected, actual, rtol=1e-9, atol=1e-12))
    return bool(np.array_equal(expected, actual))
