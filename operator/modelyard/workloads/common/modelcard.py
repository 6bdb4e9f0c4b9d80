"""model.json: everything the server needs to know about a model file, written by training.

The card travels beside `model.joblib`. The server reads it first, checks the file's digest and
the scikit-learn version against it (and LightGBM's, for a LightGBM model), and only then
unpickles the model.
"""

from __future__ import annotations

from datetime import datetime
from importlib import metadata
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

CARD_FORMAT = 1

FeatureType = Literal["integer", "float", "string", "boolean"]
Label = str | int | float | bool


# Libraries besides scikit-learn whose objects a model file holds, by the top-level package of
# the estimator's import path, with their distribution names: training records their versions in
# the card, and the server refuses a model whose version of them it does not run.
MODEL_LIBRARIES = {"lightgbm": "lightgbm"}


def estimator_library(estimator: str) -> str | None:
    """The library besides scikit-learn the estimator class comes from, or None."""
    return MODEL_LIBRARIES.get(estimator.partition(".")[0])


def estimator_library_versions(estimator: str) -> dict[str, str]:
    """{library: installed version} for the card's `libraries`: the estimator's own library
    besides scikit-learn (lightgbm for a LightGBM model); empty for scikit-learn's estimators."""
    library = estimator_library(estimator)
    return {} if library is None else {library: metadata.version(library)}


class Feature(BaseModel):
    name: str
    type: FeatureType


class NumericBaseline(BaseModel):
    """Training-split distribution of a numeric feature over decile bins, for drift (PSI)."""

    kind: Literal["numeric"] = "numeric"
    feature: str
    edges: list[float] = Field(description="Inner bin edges; len(edges) + 1 bins.")
    proportions: list[float] = Field(description="Share of training rows in each bin.")


class CategoricalBaseline(BaseModel):
    """Training-split frequencies of a categorical feature; unseen values form one extra bin."""

    kind: Literal["categorical"] = "categorical"
    feature: str
    categories: list[str]
    proportions: list[float] = Field(description="One per category, then one for 'other'.")


class DerivedFeatureCard(BaseModel):
    """A feature the pipeline computes from the raw ones (spec.featureEngineering.derived)."""

    name: str
    expression: str
    type: Literal["float", "string"]


class TransformCard(BaseModel):
    """A per-feature choice beyond the defaults (spec.featureEngineering.transforms)."""

    name: str
    encoding: Literal["onehot", "ordinal", "target", "hash"] | None = None
    scaling: Literal["standard", "minmax", "robust", "none"] | None = None
    hash_buckets: int | None = None
    drop: bool = False


class Trial(BaseModel):
    """One cross-validated trial of model selection: an estimator with one set of params."""

    rank: int = Field(description="1 is the trial whose estimator became the model.")
    estimator: str
    params: dict[str, object] = Field(default_factory=dict)
    score: float | None = Field(
        description="Mean cross-validated score (greater is better: error metrics negated); "
        "None when a fit failed and left it undefined."
    )
    score_std: float | None = None
    fit_seconds: float = Field(description="Mean time to fit one fold.")


class DatasetLineage(BaseModel):
    namespace: str | None = None
    name: str | None = None
    version: str
    uri: str


class ModelCard(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format: int = CARD_FORMAT
    name: str = Field(description="Model name used in the inference URLs.")
    estimator: str = Field(description="Import path of the estimator class.")
    params: dict[str, object] = Field(default_factory=dict)
    task: Literal["classification", "regression"]
    target: str
    features: list[Feature] = Field(description="Input columns, in the order the model takes.")
    classes: list[Label] | None = Field(
        default=None, description="Class labels, in predict_proba order."
    )
    metrics: dict[str, float] = Field(default_factory=dict)
    model_file: str = "model.joblib"
    digest: str = Field(description="sha256:<hex> of the model file.")
    libraries: dict[str, str] = Field(
        description="Versions of python, scikit-learn, numpy, joblib, and of the estimator's "
        "own library (lightgbm for a LightGBM model)."
    )
    baseline: list[NumericBaseline | CategoricalBaseline] = Field(default_factory=list)
    derived: list[DerivedFeatureCard] = Field(
        default_factory=list,
        description="Features the pipeline's first step computes from `features`, in order.",
    )
    transforms: list[TransformCard] = Field(default_factory=list)
    leaderboard: list[Trial] = Field(
        default_factory=list, description="Every trial of the run's search, best first."
    )
    dataset: DatasetLineage
    training_job: str | None = None
    run: str | None = None
    created_at: datetime

    @model_serializer(mode="wrap")
    def _without_empty_engineering(self, handler: SerializerFunctionWrapHandler) -> Any:
        # A model without feature engineering or search keeps the card it had before the
        # fields existed.
        document = handler(self)
        for key in ("derived", "transforms", "leaderboard"):
            if isinstance(document, dict) and document.get(key) == []:
                del document[key]
        return document
