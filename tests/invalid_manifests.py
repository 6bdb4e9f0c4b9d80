"""A catalogue of invalid manifests, each with the field it must be blamed on.

The unit tier checks that the pydantic models reject each one naming `field`; the integration
tier applies the same documents to a real API server and checks the CRD schema and CEL rules
reject them there too, naming the same field.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

DIGEST = "sha256:" + "0" * 64

DATASET: dict[str, Any] = {
    "apiVersion": "modelyard.dev/v1alpha1",
    "kind": "Dataset",
    "metadata": {"name": "bad"},
    "spec": {"source": {"s3": {"uri": "s3://data/iris.csv"}}, "target": "species"},
}
TRAINING_JOB: dict[str, Any] = {
    "apiVersion": "modelyard.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "bad"},
    "spec": {
        "datasetRef": {"name": "iris"},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
    },
}
MODEL_DEPLOYMENT: dict[str, Any] = {
    "apiVersion": "modelyard.dev/v1alpha1",
    "kind": "ModelDeployment",
    "metadata": {"name": "bad"},
    "spec": {"model": {"trainingJobRef": {"name": "iris-classifier"}}},
}


@dataclass(frozen=True)
class Invalid:
    id: str
    document: dict[str, Any]
    field: str  # dotted path, as both pydantic and the API server name it
    message: str  # a fragment of the explanation both give (case-insensitive)
    cel: bool = False  # caught by a CEL rule (API server only), not by the OpenAPI schema
    server_message: str | None = None  # where the API server words it differently


def _with(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `base` with the dotted `path` in spec set to `value` (None removes it)."""
    document = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node = document["spec"]
    for part in parents:
        node = node.setdefault(part, {})
    if value is None:
        node.pop(leaf, None)
    else:
        node[leaf] = value
    return document


CATALOGUE: tuple[Invalid, ...] = (
    Invalid(
        "dataset-two-sources",
        _with(DATASET, "source.builtin", {"name": "iris"}),
        "spec.source",
        "exactly one of s3, http or builtin",
        cel=True,
    ),
    Invalid(
        "dataset-no-source", _with(DATASET, "source", {}), "spec.source", "exactly one of", cel=True
    ),
    Invalid(
        "dataset-unknown-builtin",
        _with(DATASET, "source", {"builtin": {"name": "mnist"}}),
        "spec.source.builtin.name",
        "iris",
    ),
    Invalid(
        "dataset-s3-uri-without-scheme",
        _with(DATASET, "source.s3.uri", "data/iris.csv"),
        "spec.source.s3.uri",
        "s3://",
    ),
    Invalid(
        "dataset-test-fraction-one",
        _with(DATASET, "split", {"testFraction": 1.0}),
        "spec.split.testFraction",
        "less than 1",
    ),
    Invalid(
        "dataset-test-fraction-zero",
        _with(DATASET, "split", {"testFraction": 0}),
        "spec.split.testFraction",
        "greater than 0",
    ),
    Invalid(
        "dataset-unknown-format",
        _with(DATASET, "format", "xlsx"),
        "spec.format",
        "csv",
    ),
    Invalid(
        "dataset-no-target",
        _with(DATASET, "target", None),
        "spec.target",
        "target is required unless source is builtin",
        cel=True,
    ),
    Invalid(
        "dataset-target-among-features",
        _with(DATASET, "features", ["petal_length", "species"]),
        "spec.features",
        "target must not be listed in features",
        cel=True,
    ),
    Invalid(
        "dataset-column-min-above-max",
        _with(DATASET, "schema", {"columns": [{"name": "age", "min": 10, "max": 1}]}),
        "spec.schema.columns[0]",
        "min must not exceed max",
        cel=True,
    ),
    Invalid(
        "dataset-column-unknown-type",
        _with(DATASET, "schema", {"columns": [{"name": "age", "type": "decimal"}]}),
        "spec.schema.columns[0].type",
        "integer",
    ),
    Invalid(
        "trainingjob-estimator-outside-allowlist",
        _with(TRAINING_JOB, "estimator.class", "os.system"),
        "spec.estimator.class",
        "sklearn.linear_model.LogisticRegression",
    ),
    Invalid(
        "trainingjob-no-dataset",
        _with(TRAINING_JOB, "datasetRef", None),
        "spec.datasetRef",
        "required",
    ),
    Invalid(
        "trainingjob-bad-dataset-version",
        _with(TRAINING_JOB, "datasetRef.version", "v1"),
        "spec.datasetRef.version",
        "sha256",
    ),
    Invalid(
        "trainingjob-unknown-retrain-policy",
        _with(TRAINING_JOB, "retrainOn", "Always"),
        "spec.retrainOn",
        "DatasetChange",
    ),
    Invalid(
        "trainingjob-unknown-metric",
        _with(TRAINING_JOB, "objective", {"metric": "auc", "minimum": 0.9}),
        "spec.objective.metric",
        "roc_auc",
    ),
    Invalid(
        "trainingjob-one-fold",
        _with(TRAINING_JOB, "search", {"strategy": "grid", "params": {"C": [1]}, "cv": 1}),
        "spec.search.cv",
        "greater than or equal to 2",
    ),
    Invalid(
        "trainingjob-negative-backoff",
        _with(TRAINING_JOB, "backoffLimit", -1),
        "spec.backoffLimit",
        "greater than or equal to 0",
    ),
    Invalid(
        "modeldeployment-two-models",
        _with(MODEL_DEPLOYMENT, "model.uri", "s3://models/m.joblib"),
        "spec.model",
        "exactly one of trainingJobRef or uri",
        cel=True,
    ),
    Invalid(
        "modeldeployment-uri-without-digest",
        {**MODEL_DEPLOYMENT, "spec": {"model": {"uri": "s3://models/m.joblib"}}},
        "spec.model.digest",
        "uri and digest go together",
        cel=True,
    ),
    Invalid(
        "modeldeployment-traffic-over-100",
        _with(
            MODEL_DEPLOYMENT,
            "canary",
            {"model": {"uri": "s3://models/m.joblib", "digest": DIGEST}, "trafficPercent": 150},
        ),
        "spec.canary.trafficPercent",
        "less than or equal to 100",
    ),
    Invalid(
        "modeldeployment-min-above-max-replicas",
        _with(MODEL_DEPLOYMENT, "autoscaling", {"minReplicas": 5, "maxReplicas": 2}),
        "spec.autoscaling.minReplicas",
        "minReplicas must not exceed maxReplicas",
        cel=True,
    ),
    Invalid(
        "modeldeployment-replicas-and-autoscaling",
        _with(
            _with(MODEL_DEPLOYMENT, "replicas", 2),
            "autoscaling",
            {"maxReplicas": 4},
        ),
        "spec.autoscaling",
        "either replicas or autoscaling",
        cel=True,
    ),
    Invalid(
        "modeldeployment-bad-quantity",
        _with(MODEL_DEPLOYMENT, "resources", {"limits": {"memory": "lots"}}),
        "spec.resources.limits.memory",
        "quantity",
        server_message="should match",
    ),
)
