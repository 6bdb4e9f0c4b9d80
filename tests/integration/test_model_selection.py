"""Model selection end to end: a TrainingJob with candidates, run by the operator against a real
API server; its ingest and training pods run the real workers (as the pods would, with the Job's
own environment) against a real S3 server. The run publishes its model, the leaderboard in its
card and the evaluation report beside it, and status.runs[-1] shows the leaderboard and report."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from kubernetes import client

from modelyard.storage.client import Storage
from modelyard.storage.digest import bytes_digest
from modelyard.storage.uri import S3Uri
from modelyard.workloads.common.modelcard import ModelCard
from tests.integration.test_operator import Api, api  # noqa: F401 (fixture)
from tests.kubelet import pods, report_ended, wait_for
from tests.plugins.operator import Operator
from tests.workers import Worker, WorkerResult

pytestmark = pytest.mark.integration

LOGISTIC = "sklearn.linear_model.LogisticRegression"
TREE = "sklearn.tree.DecisionTreeClassifier"
BAYES = "sklearn.naive_bayes.GaussianNB"
CANDIDATES = [
    {"class": LOGISTIC, "params": {"max_iter": 1000}, "searchSpace": {"C": [0.1, 1.0]}},
    {"class": TREE, "params": {"random_state": 0}, "searchSpace": {"max_depth": [1, 2, 3]}},
    {"class": BAYES},
]
TRIALS = 2 + 3 + 1


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_env: dict[str, str]) -> Worker:
    return Worker(tmp_path, monkeypatch)


def _container(job: client.V1Job) -> client.V1Container:
    container: client.V1Container = job.spec.template.spec.containers[0]
    return container


def _whole_cpus(quantity: str) -> int:
    """limits.cpu with divisor 1, as the kubelet resolves it: rounded up to whole CPUs."""
    return math.ceil(int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity))


def _run_pod(
    objects: Api, worker: Worker, monkeypatch: pytest.MonkeyPatch, job: client.V1Job, command: str
) -> WorkerResult:
    """Run the Job's worker as its pod would, with the Job's environment (storage aside: the
    test's S3 server), then end the pod with the termination message it wrote."""
    container = _container(job)
    env = {e.name: e.value for e in container.env if e.value is not None}
    for var in container.env:
        if var.value_from is not None and var.value_from.resource_field_ref is not None:
            field = var.value_from.resource_field_ref
            assert (field.resource, field.divisor) == ("limits.cpu", "1")
            monkeypatch.setenv(var.name, str(_whole_cpus(container.resources.limits["cpu"])))
    flags = ["--name", env["MODELYARD_NAME"], "--namespace", env["MODELYARD_NAMESPACE"]]
    flags += ["--output-uri", env["MODELYARD_OUTPUT_URI"]]
    if command == "train":
        monkeypatch.setenv("MODELYARD_MAX_SEARCH_TRIALS", env["MODELYARD_MAX_SEARCH_TRIALS"])
        flags += ["--run", env["MODELYARD_RUN"], "--uid", env["MODELYARD_UID"]]
        flags += ["--dataset-uri", env["MODELYARD_DATASET_URI"]]
        flags += ["--dataset-version", env["MODELYARD_DATASET_VERSION"]]
    result = worker(command, env["MODELYARD_SPEC"], *flags)
    selector = f"batch.kubernetes.io/job-name={job.metadata.name}"
    pod = wait_for(
        f"the pod of {job.metadata.name}",
        lambda: next(iter(pods(objects.core, objects.namespace, selector)), None),
    )
    report_ended(objects.core, pod, result.exit_code, worker.log.read_text())
    return result


def test_a_candidates_run_publishes_model_leaderboard_and_report(
    api: Api,  # noqa: F811 (the fixture imported above)
    operator: Operator,
    worker: Worker,
    storage: Storage,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    api.create(
        {
            "apiVersion": "modelyard.dev/v1alpha1",
            "kind": "Dataset",
            "metadata": {"name": "iris"},
            "spec": {"source": {"builtin": {"name": "iris"}}, "split": {"seed": 7}},
        }
    )
    ingested = _run_pod(
        api, worker, monkeypatch, api.wait_job("modelyard.dev/dataset=iris"), "ingest"
    )
    assert ingested.exit_code == 0, ingested.message
    api.wait_condition("Dataset", "iris", "Ready", "True")
    api.create(
        {
            "apiVersion": "modelyard.dev/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "iris-selection"},
            "spec": {
                "datasetRef": {"name": "iris"},
                "candidates": CANDIDATES,
                "search": {"cv": 3},
                "objective": {"metric": "accuracy", "minimum": 0.8},
            },
        }
    )
    job = api.wait_job("modelyard.dev/run=run-1")
    trained = _run_pod(api, worker, monkeypatch, job, "train")
    assert trained.exit_code == 0, trained.message
    api.wait_condition("TrainingJob", "iris-selection", "Ready", "True", "Succeeded")
    run = api.status("TrainingJob", "iris-selection")["runs"][-1]

    # status: the chosen estimator leads the best five trials; the report lies beside the model.
    board = run["leaderboard"]
    assert [entry["rank"] for entry in board] == [1, 2, 3, 4, 5]
    assert board[0]["estimator"] == run["estimator"]
    assert board[0]["params"] == run["params"]
    scores = [entry["score"] for entry in board]
    assert scores == sorted(scores, reverse=True)
    model_uri = S3Uri.parse(run["model"]["uri"])
    report = run["report"]
    report_uri = S3Uri.parse(report["uri"])
    assert report_uri.key == model_uri.key.rsplit("/", 1)[0] + "/report/report.html"
    page = storage.get_bytes(report_uri)
    assert bytes_digest(page) == report["digest"]
    assert report["plots"] and all(name.endswith(".png") for name in report["plots"])
    directory = report_uri.key.rsplit("/", 1)[0]
    for name in report["plots"]:
        plot = storage.get_bytes(S3Uri(report_uri.bucket, f"{directory}/{name}"))
        assert plot.startswith(b"\x89PNG"), name
        assert name.encode() in page  # report.html shows it
    assert isinstance(report.get("findings", []), list)

    # S3: the model as recorded, and its card with every trial and the chosen estimator.
    assert bytes_digest(storage.get_bytes(model_uri)) == run["model"]["digest"]
    card_uri = S3Uri(model_uri.bucket, model_uri.key.rsplit("/", 1)[0] + "/model.json")
    card_bytes = storage.get_bytes(card_uri)
    assert bytes_digest(card_bytes) == run["model"]["cardDigest"]
    card = ModelCard.model_validate_json(card_bytes)
    assert card.estimator == run["estimator"]
    assert len(card.leaderboard) == TRIALS
    assert {t.estimator for t in card.leaderboard} == {LOGISTIC, TREE, BAYES}
    assert [t.rank for t in card.leaderboard] == list(range(1, TRIALS + 1))
    assert run["metrics"]["accuracy"] >= 0.8
