"""Example manifests survive YAML → model → dict unchanged, and the models fill in defaults."""

from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from modelyard.api import Dataset, ModelDeployment, TrainingJob
from modelyard.api.trainingjob import TrainingJobSpec
from modelyard.manifests import load, parse
from tests.conftest import EXAMPLES, example_manifests

MODELYARD_DOCUMENTS = [
    pytest.param(document, id=f"{path.relative_to(EXAMPLES)}:{document['kind']}")
    for path, document in example_manifests()
]


def test_quickstart_holds_one_object_of_each_kind() -> None:
    objects = [
        obj for path in sorted((EXAMPLES / "quickstart").glob("*.yaml")) for obj in load(path)
    ]
    assert sorted(type(obj).__name__ for obj in objects) == [
        "Dataset",
        "ModelDeployment",
        "TrainingJob",
    ]
    dataset = next(obj for obj in objects if isinstance(obj, Dataset))
    assert dataset.spec.source.builtin is not None
    assert dataset.spec.source.builtin.name == "iris"


@pytest.mark.parametrize("document", MODELYARD_DOCUMENTS)
def test_example_round_trips_to_identical_yaml(document: dict[str, object]) -> None:
    model = parse(document)
    dumped = model.model_dump(by_alias=True, exclude_unset=True, mode="json")
    assert yaml.safe_dump(dumped, sort_keys=True) == yaml.safe_dump(document, sort_keys=True)


def test_dataset_defaults_are_applied() -> None:
    dataset = Dataset.model_validate(
        {
            "apiVersion": "modelyard.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "d"},
            "spec": {"source": {"http": {"url": "https://example.org/data.csv"}}, "target": "y"},
        }
    )
    spec = dataset.to_dict()["spec"]
    assert spec["split"] == {"testFraction": 0.2, "seed": 42, "stratify": True}
    assert "format" not in spec, "format stays absent so that ingestion infers it"


def test_trainingjob_defaults_are_applied() -> None:
    job = TrainingJob.model_validate(
        {
            "kind": "TrainingJob",
            "metadata": {"name": "t"},
            "spec": {
                "datasetRef": {"name": "d"},
                "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
                "search": {"strategy": "random", "params": {"C": [0.1, 1.0]}},
            },
        }
    )
    spec = job.to_dict()["spec"]
    assert "retrainOn" not in spec
    assert spec["retrainCooldown"] == "1h"
    assert spec["backoffLimit"] == 2
    assert spec["search"]["cv"] == 5
    assert spec["search"]["maxTrials"] == 10
    assert job.to_dict()["apiVersion"] == "modelyard.dev/v1alpha1"


def test_autoscaling_defaults_are_applied() -> None:
    deployment = ModelDeployment.model_validate(
        {
            "kind": "ModelDeployment",
            "metadata": {"name": "m"},
            "spec": {
                "model": {"trainingJobRef": {"name": "t"}},
                "autoscaling": {"maxReplicas": 4},
            },
        }
    )
    autoscaling = deployment.to_dict()["spec"]["autoscaling"]
    assert autoscaling == {"minReplicas": 1, "maxReplicas": 4, "targetCPUUtilizationPercentage": 80}


def test_status_round_trips_with_conditions_and_lineage() -> None:
    status = {
        "observedGeneration": 3,
        "phase": "Ready",
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "Serving",
                "message": "2/2 replicas ready",
                "lastTransitionTime": "2026-11-27T10:00:00Z",
                "observedGeneration": 3,
            }
        ],
        "url": "http://iris.ml.svc.cluster.local",
        "model": {
            "uri": "s3://models/ml/iris/run-1/model.joblib",
            "digest": "sha256:" + "a" * 64,
            "trainingJob": "iris-classifier",
            "run": "run-1",
            "dataset": "iris",
            "datasetVersion": "sha256:" + "b" * 64,
        },
        "replicas": 2,
        "readyReplicas": 2,
    }
    document = {
        "apiVersion": "modelyard.dev/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "iris"},
        "spec": {"model": {"trainingJobRef": {"name": "iris-classifier"}}},
        "status": status,
    }
    assert ModelDeployment.model_validate(document).to_dict()["status"] == status


def test_every_example_object_parses() -> None:
    examples = example_manifests()
    assert len(examples) >= 3, "examples/ must hold the quickstart at least"
    for _, document in examples:
        parse(document)


@pytest.mark.parametrize(
    ("stored", "read"), [("Never", None), ("DatasetChange", ["DatasetChange"])]
)
def test_retrain_on_stored_by_an_earlier_release_still_reads(stored: str, read: Any) -> None:
    # Objects created before retrainOn became a list hold the one string the old CRD defaulted.
    spec = TrainingJobSpec.model_validate(
        {
            "datasetRef": {"name": "d"},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
            "retrainOn": stored,
        }
    )
    assert spec.to_dict().get("retrainOn") == read


def test_a_retrain_trigger_is_listed_once() -> None:
    with pytest.raises(ValidationError, match="listed once"):
        TrainingJobSpec.model_validate(
            {
                "datasetRef": {"name": "d"},
                "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
                "retrainOn": ["Drift", "Drift"],
            }
        )
