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
SQL_QUERY = "SELECT * FROM orders ORDER BY id"
SQL_SECRET = {"name": "shop-db", "key": "uri"}
TRAINING_JOB: dict[str, Any] = {
    "apiVersion": "modelyard.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "bad"},
    "spec": {
        "datasetRef": {"name": "iris"},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
    },
}
CANDIDATES_JOB: dict[str, Any] = {
    **TRAINING_JOB,
    "spec": {
        "datasetRef": {"name": "iris"},
        "candidates": [{"class": "sklearn.naive_bayes.GaussianNB"}],
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
        "exactly one of s3, http, sql, api or builtin",
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
        _with(TRAINING_JOB, "retrainOn", ["Always"]),
        "spec.retrainOn[0]",
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
        "trainingjob-estimator-and-candidates",
        _with(TRAINING_JOB, "candidates", [{"class": "sklearn.naive_bayes.GaussianNB"}]),
        "spec",
        "exactly one of estimator or candidates",
        cel=True,
    ),
    Invalid(
        "trainingjob-neither-estimator-nor-candidates",
        _with(TRAINING_JOB, "estimator", None),
        "spec",
        "exactly one of estimator or candidates",
        cel=True,
    ),
    Invalid(
        "trainingjob-search-params-with-candidates",
        _with(
            _with(CANDIDATES_JOB, "search.params", {"var_smoothing": [1e-9, 1e-8]}),
            "search.strategy",
            "grid",
        ),
        "spec.search.params",
        "leave out search.params",
        cel=True,
    ),
    Invalid(
        "trainingjob-search-without-params",
        _with(TRAINING_JOB, "search", {"strategy": "grid", "cv": 3}),
        "spec.search.params",
        "search.params is required with estimator",
        cel=True,
    ),
    Invalid(
        "trainingjob-drift-with-pinned-version",
        _with(_with(TRAINING_JOB, "datasetRef.version", DIGEST), "retrainOn", ["Drift"]),
        "spec.retrainOn",
        "unpin it",
        cel=True,
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
        "modeldeployment-uri-without-card-digest",
        {**MODEL_DEPLOYMENT, "spec": {"model": {"uri": "s3://models/m.joblib", "digest": DIGEST}}},
        "spec.model.cardDigest",
        "uri and cardDigest go together",
        cel=True,
    ),
    Invalid(
        "modeldeployment-traffic-over-100",
        _with(
            MODEL_DEPLOYMENT,
            "canary",
            {
                "model": {"uri": "s3://models/m.joblib", "digest": DIGEST, "cardDigest": DIGEST},
                "trafficPercent": 150,
            },
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
    # Wrong types.
    Invalid(
        "dataset-s3-source-as-string",
        _with(DATASET, "source", {"s3": "s3://data/iris.csv"}),
        "spec.source.s3",
        "valid dictionary",
        server_message="must be of type object",
    ),
    Invalid(
        "dataset-features-as-string",
        _with(DATASET, "features", "petal_length,petal_width"),
        "spec.features",
        "valid list",
        server_message="must be of type array",
    ),
    Invalid(
        "trainingjob-params-as-list",
        _with(TRAINING_JOB, "estimator.params", [200, 8]),
        "spec.estimator.params",
        "valid dictionary",
        server_message="must be of type object",
    ),
    Invalid(
        "modeldeployment-replicas-as-list",
        _with(MODEL_DEPLOYMENT, "replicas", [2]),
        "spec.replicas",
        "valid integer",
        server_message="must be of type integer",
    ),
    # Missing required fields.
    Invalid(
        "trainingjob-no-estimator-class",
        _with(TRAINING_JOB, "estimator", {"params": {"C": 1.0}}),
        "spec.estimator.class",
        "required",
    ),
    Invalid(
        "modeldeployment-no-model",
        _with(MODEL_DEPLOYMENT, "model", None),
        "spec.model",
        "required",
    ),
    Invalid(
        "modeldeployment-autoscaling-without-max",
        _with(MODEL_DEPLOYMENT, "autoscaling", {"minReplicas": 2}),
        "spec.autoscaling.maxReplicas",
        "required",
    ),
    Invalid(
        "dataset-column-without-name",
        _with(DATASET, "schema", {"columns": [{"type": "integer"}]}),
        "spec.schema.columns[0].name",
        "required",
    ),
    # Exactly one of.
    Invalid(
        "modeldeployment-empty-model",
        _with(MODEL_DEPLOYMENT, "model", {}),
        "spec.model",
        "exactly one of trainingJobRef or uri",
        cel=True,
    ),
    Invalid(
        "modeldeployment-canary-with-two-models",
        _with(
            MODEL_DEPLOYMENT,
            "canary",
            {
                "model": {
                    "trainingJobRef": {"name": "other"},
                    "uri": "s3://models/m.joblib",
                    "digest": DIGEST,
                },
                "trafficPercent": 10,
            },
        ),
        "spec.canary.model",
        "exactly one of trainingJobRef or uri",
        cel=True,
    ),
    # Out of range.
    Invalid(
        "dataset-negative-seed",
        _with(DATASET, "split", {"seed": -1}),
        "spec.split.seed",
        "greater than or equal to 0",
    ),
    Invalid(
        "trainingjob-zero-max-trials",
        _with(TRAINING_JOB, "search", {"strategy": "random", "params": {"C": [1]}, "maxTrials": 0}),
        "spec.search.maxTrials",
        "greater than or equal to 1",
    ),
    Invalid(
        "trainingjob-backoff-over-10",
        _with(TRAINING_JOB, "backoffLimit", 11),
        "spec.backoffLimit",
        "less than or equal to 10",
    ),
    Invalid(
        "trainingjob-zero-deadline",
        _with(TRAINING_JOB, "activeDeadlineSeconds", 0),
        "spec.activeDeadlineSeconds",
        "greater than or equal to 1",
    ),
    Invalid(
        "modeldeployment-negative-replicas",
        _with(MODEL_DEPLOYMENT, "replicas", -1),
        "spec.replicas",
        "greater than or equal to 0",
    ),
    Invalid(
        "modeldeployment-batch-zero-rows",
        _with(MODEL_DEPLOYMENT, "batching", {"maxRows": 0}),
        "spec.batching.maxRows",
        "greater than or equal to 1",
    ),
    Invalid(
        "modeldeployment-batch-too-many-rows",
        _with(MODEL_DEPLOYMENT, "batching", {"maxRows": 1025}),
        "spec.batching.maxRows",
        "less than or equal to 1024",
    ),
    Invalid(
        "modeldeployment-batch-negative-wait",
        _with(MODEL_DEPLOYMENT, "batching", {"maxWaitMilliseconds": -1}),
        "spec.batching.maxWaitMilliseconds",
        "greater than or equal to 0",
    ),
    Invalid(
        "modeldeployment-batch-wait-too-long",
        _with(MODEL_DEPLOYMENT, "batching", {"maxWaitMilliseconds": 1001}),
        "spec.batching.maxWaitMilliseconds",
        "less than or equal to 1000",
    ),
    Invalid(
        "modeldeployment-cpu-target-zero",
        _with(
            MODEL_DEPLOYMENT,
            "autoscaling",
            {"maxReplicas": 3, "targetCPUUtilizationPercentage": 0},
        ),
        "spec.autoscaling.targetCPUUtilizationPercentage",
        "greater than or equal to 1",
    ),
    # Bad URIs, names and digests.
    Invalid(
        "dataset-http-url-with-ftp-scheme",
        _with(DATASET, "source", {"http": {"url": "ftp://example.org/iris.csv"}}),
        "spec.source.http.url",
        "https?://",
    ),
    Invalid(
        "dataset-sql-empty-query",
        _with(DATASET, "source", {"sql": {"query": "", "connectionSecretRef": SQL_SECRET}}),
        "spec.source.sql.query",
        "at least 1",
    ),
    Invalid(
        "dataset-sql-timeout-zero",
        _with(
            DATASET,
            "source",
            {"sql": {"query": SQL_QUERY, "connectionSecretRef": SQL_SECRET, "timeoutSeconds": 0}},
        ),
        "spec.source.sql.timeoutSeconds",
        "greater than or equal to 1",
    ),
    Invalid(
        "dataset-sql-secret-key-with-a-slash",
        _with(
            DATASET,
            "source",
            {"sql": {"query": SQL_QUERY, "connectionSecretRef": {"name": "db", "key": "a/b"}}},
        ),
        "spec.source.sql.connectionSecretRef.key",
        "should match",
    ),
    # The data stage: cleaning, refresh, api sources, feature engineering.
    Invalid(
        "dataset-cleaning-column-not-a-feature",
        _with(
            _with(DATASET, "features", ["sepal_length"]),
            "cleaning",
            {"columns": [{"name": "petal_width", "trim": True}]},
        ),
        "spec.cleaning.columns",
        "every cleaning column must be one of features or the target",
        cel=True,
    ),
    Invalid(
        "dataset-cleaning-constant-without-value",
        _with(DATASET, "cleaning", {"missing": {"strategy": "constant"}}),
        "spec.cleaning.missing.value",
        "value is required with strategy constant",
        cel=True,
    ),
    Invalid(
        "dataset-cleaning-iqr-with-bounds",
        _with(
            DATASET,
            "cleaning",
            {
                "columns": [
                    {"name": "x", "outliers": {"method": "iqr", "action": "clip", "max": 3.0}}
                ]
            },
        ),
        "spec.cleaning.columns[0].outliers",
        "min and max belong to method bounds",
        cel=True,
    ),
    Invalid(
        "dataset-cleaning-column-without-rules",
        _with(DATASET, "cleaning", {"columns": [{"name": "x"}]}),
        "spec.cleaning.columns",
        "every column entry needs at least one rule",
        cel=True,
    ),
    Invalid(
        "dataset-refresh-schedule-and-interval",
        _with(DATASET, "refresh", {"schedule": "@hourly", "interval": "15m"}),
        "spec.refresh",
        "exactly one of schedule or interval",
        cel=True,
    ),
    Invalid(
        "dataset-refresh-interval-under-a-minute",
        _with(DATASET, "refresh", {"interval": "30s"}),
        "spec.refresh.interval",
        "at least 1m",
        cel=True,
    ),
    Invalid(
        "dataset-refresh-interval-in-days",
        _with(DATASET, "refresh", {"interval": "1d"}),
        "spec.refresh.interval",
        "should match",
    ),
    Invalid(
        "dataset-refresh-schedule-with-four-fields",
        _with(DATASET, "refresh", {"schedule": "0 * * *"}),
        "spec.refresh.schedule",
        "should match",
    ),
    Invalid(
        "dataset-api-cursor-without-param",
        _with(
            DATASET,
            "source",
            {
                "api": {
                    "url": "https://api.example.org/orders",
                    "pagination": {"kind": "cursor", "cursorField": "next"},
                }
            },
        ),
        "spec.source.api.pagination",
        "cursor pagination needs cursorField and cursorParam",
        cel=True,
    ),
    Invalid(
        "trainingjob-derived-name-not-an-identifier",
        _with(
            TRAINING_JOB,
            "featureEngineering",
            {"derived": [{"name": "debt ratio", "expression": "debt / income"}]},
        ),
        "spec.featureEngineering.derived[0].name",
        "should match",
    ),
    Invalid(
        "trainingjob-transform-encoded-and-scaled",
        _with(
            TRAINING_JOB,
            "featureEngineering",
            {"transforms": [{"name": "city", "encoding": "onehot", "scaling": "standard"}]},
        ),
        "spec.featureEngineering.transforms[0]",
        "either encoded (categorical) or scaled (numeric), not both",
        cel=True,
    ),
    Invalid(
        "dataset-s3-bucket-in-capitals",
        _with(DATASET, "source.s3.uri", "s3://Data/iris.csv"),
        "spec.source.s3.uri",
        "s3://",
    ),
    Invalid(
        "dataset-storage-endpoint-without-scheme",
        _with(DATASET, "storage", {"endpoint": "minio.storage:9000"}),
        "spec.storage.endpoint",
        "https?://",
    ),
    Invalid(
        "dataset-credentials-secret-bad-name",
        _with(DATASET, "storage", {"credentialsSecretRef": {"name": "S3_Creds"}}),
        "spec.storage.credentialsSecretRef.name",
        "[a-z0-9]",
    ),
    Invalid(
        "modeldeployment-model-uri-over-http",
        {
            **MODEL_DEPLOYMENT,
            "spec": {
                "model": {
                    "uri": "https://models.example/m.joblib",
                    "digest": DIGEST,
                    "cardDigest": DIGEST,
                }
            },
        },
        "spec.model.uri",
        "s3://",
    ),
    Invalid(
        "modeldeployment-md5-digest",
        {
            **MODEL_DEPLOYMENT,
            "spec": {
                "model": {
                    "uri": "s3://models/m.joblib",
                    "digest": "md5:" + "0" * 32,
                    "cardDigest": DIGEST,
                }
            },
        },
        "spec.model.digest",
        "sha256",
    ),
    Invalid(
        "trainingjob-dataset-name-not-dns",
        _with(TRAINING_JOB, "datasetRef.name", "Iris_Data"),
        "spec.datasetRef.name",
        "[a-z0-9]",
    ),
    # Estimators outside the allowlist and other unknown names.
    Invalid(
        "trainingjob-estimator-subprocess",
        _with(TRAINING_JOB, "estimator.class", "subprocess.Popen"),
        "spec.estimator.class",
        "sklearn.ensemble.RandomForestClassifier",
    ),
    Invalid(
        "trainingjob-estimator-sklearn-outside-allowlist",
        _with(TRAINING_JOB, "estimator.class", "sklearn.pipeline.Pipeline"),
        "spec.estimator.class",
        "sklearn.svm.SVC",
    ),
    Invalid(
        "trainingjob-unknown-search-strategy",
        _with(TRAINING_JOB, "search", {"strategy": "bayes", "params": {"C": [1]}}),
        "spec.search.strategy",
        "grid",
    ),
    Invalid(
        "trainingjob-unknown-extra-metric",
        _with(TRAINING_JOB, "metrics", ["accuracy", "auc"]),
        "spec.metrics[1]",
        "roc_auc",
    ),
    Invalid(
        "modeldeployment-promotion-unknown-metric",
        _with(MODEL_DEPLOYMENT, "promotion", {"metric": "precision", "minimum": 0.9}),
        "spec.promotion.metric",
        "precision_macro",
    ),
    Invalid(
        "modeldeployment-empty-image",
        _with(MODEL_DEPLOYMENT, "image", ""),
        "spec.image",
        "at least 1",
    ),
    # Names that children could not carry, or that would collide with another object's children.
    Invalid(
        "dataset-name-longer-than-a-label",
        {**DATASET, "metadata": {"name": "d" * 64}},
        "metadata.name",
        "at most 63 characters",
        cel=True,
    ),
    Invalid(
        "trainingjob-name-longer-than-a-label",
        {**TRAINING_JOB, "metadata": {"name": "t" * 64}},
        "metadata.name",
        "at most 63 characters",
        cel=True,
    ),
    Invalid(
        "modeldeployment-name-with-a-dot",
        {**MODEL_DEPLOYMENT, "metadata": {"name": "iris.v2"}},
        "metadata.name",
        "no dots",
        cel=True,
    ),
    Invalid(
        "modeldeployment-name-starting-with-a-digit",
        {**MODEL_DEPLOYMENT, "metadata": {"name": "2iris"}},
        "metadata.name",
        "start with a letter",
        cel=True,
    ),
    Invalid(
        "modeldeployment-name-too-long-for-its-canary",
        {**MODEL_DEPLOYMENT, "metadata": {"name": "m" * 57}},
        "metadata.name",
        "at most 56 characters",
        cel=True,
    ),
    Invalid(
        "modeldeployment-name-ending-like-a-canary",
        {**MODEL_DEPLOYMENT, "metadata": {"name": "iris-canary"}},
        "metadata.name",
        "must not end in -canary, -stable, -router",
        cel=True,
    ),
    Invalid(
        "modeldeployment-name-ending-like-a-router",
        {**MODEL_DEPLOYMENT, "metadata": {"name": "iris-router"}},
        "metadata.name",
        "must not end in -canary, -stable, -router",
        cel=True,
    ),
)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch, as the API server applies `kubectl patch --type=merge`."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


@dataclass(frozen=True)
class Change:
    """An update to an object created from `document`: a merge patch of the whole object."""

    id: str
    document: dict[str, Any]
    patch: dict[str, Any]
    field: str = ""  # for a refused change: the field the API server blames
    message: str = ""  # and a fragment of its explanation

    def changed(self) -> dict[str, Any]:
        result: dict[str, Any] = merge_patch(self.document, self.patch)
        return result


BUILTIN_DATASET = {**DATASET, "spec": {"source": {"builtin": {"name": "iris"}}}}
STORED_DATASET = _with(DATASET, "storage", {"endpoint": "http://minio:9000", "bucket": "models"})

# Changes the API server refuses: what a version, a run or a model was made from stays put.
IMMUTABLE_CHANGES: tuple[Change, ...] = (
    Change(
        "dataset-target-changed",
        DATASET,
        {"spec": {"target": "variety"}},
        "spec.target",
        "target is immutable",
    ),
    Change(
        "dataset-target-removed",
        _with(BUILTIN_DATASET, "target", "target"),
        {"spec": {"target": None}},
        "spec.target",
        "target is immutable",
    ),
    Change(
        "dataset-target-added",
        BUILTIN_DATASET,
        {"spec": {"target": "species"}},
        "spec.target",
        "target is immutable",
    ),
    Change(
        "dataset-source-s3-to-http",
        DATASET,
        {"spec": {"source": {"s3": None, "http": {"url": "https://example.org/iris.csv"}}}},
        "spec.source",
        "kind of source (s3, http, sql, api or builtin) is immutable",
    ),
    Change(
        "dataset-source-builtin-to-s3",
        _with(BUILTIN_DATASET, "target", "target"),
        {"spec": {"source": {"builtin": None, "s3": {"uri": "s3://data/iris.csv"}}}},
        "spec.source",
        "kind of source (s3, http, sql, api or builtin) is immutable",
    ),
    Change(
        "dataset-storage-bucket-changed",
        STORED_DATASET,
        {"spec": {"storage": {"bucket": "other"}}},
        "spec.storage",
        "storage endpoint, bucket and prefix are immutable",
    ),
    Change(
        "dataset-storage-endpoint-removed",
        STORED_DATASET,
        {"spec": {"storage": {"endpoint": None}}},
        "spec.storage",
        "storage endpoint, bucket and prefix are immutable",
    ),
    Change(
        "dataset-storage-prefix-added",
        DATASET,
        {"spec": {"storage": {"prefix": "team-a"}}},
        "spec.storage",
        "storage endpoint, bucket and prefix are immutable",
    ),
    Change(
        "trainingjob-dataset-changed",
        TRAINING_JOB,
        {"spec": {"datasetRef": {"name": "wine"}}},
        "spec.datasetRef.name",
        "datasetRef.name is immutable",
    ),
)

# Changes that must go through: the operator acts on them (new ingestion, new run, rollout).
ALLOWED_CHANGES: tuple[Change, ...] = (
    Change("dataset-s3-uri", DATASET, {"spec": {"source": {"s3": {"uri": "s3://data/2.csv"}}}}),
    Change(
        "dataset-refresh-annotation",
        DATASET,
        {"metadata": {"annotations": {"modelyard.dev/refresh": "2026-11-28T00:00:00Z"}}},
    ),
    Change("dataset-split", DATASET, {"spec": {"split": {"testFraction": 0.3, "seed": 7}}}),
    Change(
        "dataset-schema-and-features",
        DATASET,
        {"spec": {"features": ["sepal_length"], "schema": {"columns": [{"name": "species"}]}}},
    ),
    Change(
        "dataset-credentials-secret",
        STORED_DATASET,
        {"spec": {"storage": {"credentialsSecretRef": {"name": "s3-rotated"}, "region": "eu"}}},
    ),
    Change(
        "dataset-builtin-name",
        BUILTIN_DATASET,
        {"spec": {"source": {"builtin": {"name": "wine"}}}},
    ),
    Change(
        "trainingjob-pin-dataset-version",
        TRAINING_JOB,
        {"spec": {"datasetRef": {"version": DIGEST}}},
    ),
    Change(
        "trainingjob-estimator-and-params",
        TRAINING_JOB,
        {
            "spec": {
                "estimator": {
                    "class": "sklearn.ensemble.RandomForestClassifier",
                    "params": {"n_estimators": 50},
                }
            }
        },
    ),
    Change(
        "trainingjob-objective-threshold",
        _with(TRAINING_JOB, "objective", {"metric": "accuracy", "minimum": 0.9}),
        {"spec": {"objective": {"minimum": 0.8}, "retrainOn": ["DatasetChange"]}},
    ),
    Change("modeldeployment-replicas", MODEL_DEPLOYMENT, {"spec": {"replicas": 3}}),
    Change(
        "modeldeployment-replicas-to-autoscaling",
        _with(MODEL_DEPLOYMENT, "replicas", 2),
        {"spec": {"replicas": None, "autoscaling": {"maxReplicas": 4}}},
    ),
    Change(
        "modeldeployment-model-to-uri",
        MODEL_DEPLOYMENT,
        {
            "spec": {
                "model": {
                    "trainingJobRef": None,
                    "uri": "s3://models/m.joblib",
                    "digest": DIGEST,
                    "cardDigest": DIGEST,
                }
            }
        },
    ),
    Change(
        "modeldeployment-canary-and-promotion",
        MODEL_DEPLOYMENT,
        {
            "spec": {
                "canary": {"model": {"trainingJobRef": {"name": "b"}}, "trafficPercent": 20},
                "promotion": {"metric": "accuracy", "minimum": 0.7},
            }
        },
    ),
)
