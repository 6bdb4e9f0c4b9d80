"""The `modelyard` command against a real API server, run as a user runs it (a subprocess with
--kubeconfig and -n): status, lineage, logs' error paths, and wait's exit codes. The statuses are
written through the status subresource as the operator writes them; no operator runs here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client

from modelyard.api import GROUP, VERSION
from modelyard.exitcodes import EXIT_FAILED, EXIT_TIMEOUT
from modelyard.storage.client import Storage
from modelyard.storage.digest import bytes_digest
from modelyard.storage.uri import S3Uri
from tests.conftest import EXAMPLES, PLURALS
from tests.plugins.kube import Cluster

pytestmark = pytest.mark.integration

NOW = "2026-11-28T10:00:00Z"
VERSION_DIGEST = "sha256:" + "1a" * 32
MODEL_DIGEST = "sha256:" + "2b" * 32


def _condition(type_: str, status: str, reason: str, message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": NOW,
        "observedGeneration": 1,
    }


def dataset_ready(uri_root: str = "s3://modelyard") -> dict[str, Any]:
    return {
        "observedGeneration": 1,
        "phase": "Ready",
        "version": VERSION_DIGEST,
        "uri": f"{uri_root}/datasets/ns/iris/{VERSION_DIGEST[7:]}/data.parquet",
        "rows": 150,
        "columns": 5,
        "history": [
            {
                "version": VERSION_DIGEST,
                "uri": f"{uri_root}/datasets/ns/iris/{VERSION_DIGEST[7:]}/data.parquet",
                "rows": 150,
                "createdAt": NOW,
            }
        ],
        "conditions": [_condition("Ready", "True", "Ingested", "150 rows")],
    }


def model_uri(bucket: str = "modelyard") -> str:
    return f"s3://{bucket}/models/ns/iris-classifier/run-1/model.joblib"


def trainingjob_ready(bucket: str = "modelyard") -> dict[str, Any]:
    model = {"uri": model_uri(bucket), "digest": MODEL_DIGEST}
    return {
        "observedGeneration": 1,
        "phase": "Succeeded",
        "runs": [
            {
                "id": "run-1",
                "datasetVersion": VERSION_DIGEST,
                "job": "iris-classifier-run-1",
                "phase": "Succeeded",
                "reason": "Succeeded",
                "startedAt": "2026-11-28T10:00:00Z",
                "finishedAt": "2026-11-28T10:01:05Z",
                "params": {"n_estimators": 100, "max_depth": 5},
                "metrics": {"accuracy": 0.9737, "f1_macro": 0.9731},
                "model": model,
            }
        ],
        "model": model,
        "metrics": {"accuracy": 0.9737, "f1_macro": 0.9731},
        "datasetVersion": VERSION_DIGEST,
        "latestRun": "run-1",
        "primaryMetric": {"name": "accuracy", "value": 0.9737},
        "conditions": [_condition("Ready", "True", "Succeeded", "run-1: accuracy=0.9737")],
    }


def trainingjob_failed() -> dict[str, Any]:
    message = "run-1: accuracy = 0.5 misses the objective 0.85"
    return {
        "observedGeneration": 1,
        "phase": "Failed",
        "runs": [
            {
                "id": "run-1",
                "datasetVersion": VERSION_DIGEST,
                "phase": "Failed",
                "reason": "ObjectiveNotMet",
                "message": "accuracy = 0.5 misses the objective 0.85",
            }
        ],
        "conditions": [_condition("Ready", "False", "ObjectiveNotMet", message)],
    }


def deployment_ready(bucket: str = "modelyard") -> dict[str, Any]:
    return {
        "observedGeneration": 1,
        "phase": "Ready",
        "url": "http://iris.ns.svc.cluster.local",
        "model": {
            "uri": model_uri(bucket),
            "digest": MODEL_DIGEST,
            "trainingJob": "iris-classifier",
            "run": "run-1",
            "dataset": "iris",
            "datasetVersion": VERSION_DIGEST,
        },
        "replicas": 2,
        "readyReplicas": 2,
        "conditions": [
            _condition("Ready", "True", "Serving", "2 replicas serve iris-classifier/run-1"),
            _condition("Promoted", "True", "Promoted", "latest run iris-classifier/run-1"),
        ],
    }


def deployment_blocked() -> dict[str, Any]:
    message = "iris-classifier/run-1 has accuracy=0.5 against the gate 0.85"
    return {
        "observedGeneration": 1,
        "phase": "Pending",
        "conditions": [
            _condition("Ready", "False", "PromotionBlocked", message),
            _condition("ModelResolved", "False", "PromotionBlocked", message),
        ],
    }


class Chain:
    """The quickstart's three objects in one namespace, with statuses written by hand."""

    def __init__(self, custom: client.CustomObjectsApi, namespace: str) -> None:
        self.custom, self.namespace = custom, namespace
        for path in sorted((EXAMPLES / "quickstart").glob("*.yaml")):
            document = yaml.safe_load(path.read_text())
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, PLURALS[document["kind"]], document
            )

    def set_status(self, kind: str, name: str, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, self.namespace, PLURALS[kind], name, {"status": status}
        )

    def all_ready(self, bucket: str = "modelyard") -> None:
        self.set_status("Dataset", "iris", dataset_ready())
        self.set_status("TrainingJob", "iris-classifier", trainingjob_ready(bucket))
        self.set_status("ModelDeployment", "iris", deployment_ready(bucket))


@pytest.fixture
def chain(crds: Cluster, namespace: str) -> Iterator[Chain]:
    with crds.api_client() as api:
        yield Chain(client.CustomObjectsApi(api), namespace)


def command(kube: Cluster, namespace: str, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "modelyard.cli",
        *args,
        "--kubeconfig",
        str(kube.kubeconfig),
        "-n",
        namespace,
    ]


def modelyard(
    kube: Cluster, namespace: str, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(kube, namespace, *args),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )


def test_status_shows_phase_reason_and_result_of_each_link(
    kube: Cluster, namespace: str, chain: Chain
) -> None:
    chain.all_ready()
    shown = modelyard(kube, namespace, "status")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert lines[0].split() == ["RESOURCE", "PHASE", "READY", "REASON", "RESULT", "AGE"]
    assert lines[1].split()[:6] == [
        "dataset/iris",
        "Ready",
        "True",
        "Ingested",
        "sha256:1a1a1a1a1a1a…",
        "150",
    ]
    assert lines[2].split()[:6] == [
        "trainingjob/iris-classifier",
        "Succeeded",
        "True",
        "Succeeded",
        "run-1",
        "accuracy=0.9737",
    ]
    assert lines[3].split()[:6] == [
        "modeldeployment/iris",
        "Ready",
        "True",
        "Serving",
        "http://iris.ns.svc.cluster.local",
        "2/2",
    ]
    assert "\033[" not in shown.stdout  # no colour into a pipe


def test_status_as_json_for_one_resource_carries_the_ready_message(
    kube: Cluster, namespace: str, chain: Chain
) -> None:
    chain.set_status("TrainingJob", "iris-classifier", trainingjob_failed())
    shown = modelyard(kube, namespace, "status", "tj/iris-classifier", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    [summary] = json.loads(shown.stdout)
    assert summary["kind"] == "TrainingJob"
    assert summary["phase"] == "Failed"
    assert summary["reason"] == "ObjectiveNotMet"
    assert summary["message"] == "run-1: accuracy = 0.5 misses the objective 0.85"


def test_status_of_one_kind_lists_only_that_kind(
    kube: Cluster, namespace: str, chain: Chain
) -> None:
    shown = modelyard(kube, namespace, "status", "modeldeployments.modelyard.dev", "-o", "yaml")
    assert shown.returncode == 0, shown.stderr
    assert [s["name"] for s in yaml.safe_load(shown.stdout)] == ["iris"]


def test_a_missing_resource_is_one_line_and_exit_1(kube: Cluster, namespace: str) -> None:
    shown = modelyard(kube, namespace, "status", "mdep/nope")
    assert shown.returncode == EXIT_FAILED
    assert shown.stderr == f"error: modeldeployment/nope not found in namespace {namespace}\n"


def test_lineage_walks_from_the_dataset_to_the_deployment(
    kube: Cluster, namespace: str, chain: Chain
) -> None:
    chain.all_ready()
    shown = modelyard(kube, namespace, "lineage", "mdep/iris")
    assert shown.returncode == 0, shown.stderr
    # Compared with runs of spaces squeezed: column widths follow the longest key.
    tree = "\n".join(" ".join(line.split()) for line in shown.stdout.splitlines())
    expected_in_order = [
        "dataset/iris",
        "source builtin iris",
        f"version {VERSION_DIGEST} (150 rows, 5 columns)",
        "└── trainingjob/iris-classifier run-1 Succeeded",
        "estimator sklearn.ensemble.RandomForestClassifier",
        "params max_depth=5, n_estimators=100",
        "metrics accuracy=0.9737, f1_macro=0.9731",
        "duration 1m05s",
        f"└── model {model_uri()}",
        f"digest {MODEL_DIGEST}",
        "libraries (not in the status",
        "└── modeldeployment/iris Ready (Serving)",
        "url http://iris.ns.svc.cluster.local",
        "replicas 2/2 ready",
        "canary none",
    ]
    positions = [tree.find(piece) for piece in expected_in_order]
    assert -1 not in positions, tree
    assert positions == sorted(positions), tree


def test_lineage_reads_library_versions_from_the_model_card(
    kube: Cluster,
    namespace: str,
    chain: Chain,
    s3_env: dict[str, str],
    storage: Storage,
) -> None:
    bucket = s3_env["MODELYARD_S3_BUCKET"]
    chain.all_ready(bucket)
    libraries = {"python": "3.11.10", "scikit-learn": "1.5.2", "numpy": "2.1.3", "joblib": "1.4.2"}
    storage.put_json(
        S3Uri.parse(model_uri(bucket).replace("model.joblib", "model.json")),
        {"libraries": libraries},
    )
    shown = modelyard(
        kube, namespace, "lineage", "mdep/iris", "-o", "json", env={**os.environ, **s3_env}
    )
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["model"]["libraries"] == libraries
    assert document["trainingRun"]["durationSeconds"] == 65
    assert document["dataset"]["version"] == VERSION_DIGEST
    assert document["deployment"]["readyReplicas"] == 2


def test_lineage_of_a_deployment_without_a_model_says_why(
    kube: Cluster, namespace: str, chain: Chain
) -> None:
    chain.set_status("ModelDeployment", "iris", deployment_blocked())
    shown = modelyard(kube, namespace, "lineage", "modeldeployment/iris")
    assert shown.returncode == EXIT_FAILED
    assert shown.stderr.startswith(
        "error: modeldeployment/iris serves no model yet (Pending: PromotionBlocked: "
        "iris-classifier/run-1 has accuracy=0.5"
    )


def test_logs_of_a_run_that_does_not_exist_names_the_runs_there_are(
    kube: Cluster, namespace: str, chain: Chain
) -> None:
    chain.set_status("TrainingJob", "iris-classifier", trainingjob_ready())
    shown = modelyard(kube, namespace, "logs", "tj/iris-classifier", "--run", "7")
    assert shown.returncode == EXIT_FAILED
    assert shown.stderr == "error: trainingjob/iris-classifier has no run run-7 (it has run-1)\n"


def _start_wait(kube: Cluster, namespace: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        command(kube, namespace, "wait", "mdep/iris", *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _read_until(process: subprocess.Popen[str], text: str) -> list[str]:
    """stdout lines up to the one containing `text` (the command prints as links move)."""
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if text in line:
            return lines
    raise AssertionError(f"wait ended before printing {text!r}: {lines}")


def test_wait_follows_the_chain_until_it_is_ready(
    kube: Cluster, namespace: str, chain: Chain
) -> None:
    process = _start_wait(kube, namespace, "--timeout", "2m")
    try:
        _read_until(process, "waiting modeldeployment/iris")
        chain.set_status("Dataset", "iris", dataset_ready())
        _read_until(process, "ready   dataset/iris: Ingested")
        chain.set_status("TrainingJob", "iris-classifier", trainingjob_ready())
        _read_until(process, "ready   trainingjob/iris-classifier: Succeeded")
        chain.set_status("ModelDeployment", "iris", deployment_ready())
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    assert out.splitlines()[-1] == (
        "ready: dataset/iris → trainingjob/iris-classifier → modeldeployment/iris"
    )


def test_wait_fails_naming_the_training_job_and_its_reason(
    kube: Cluster, namespace: str, chain: Chain
) -> None:
    chain.set_status("Dataset", "iris", dataset_ready())
    process = _start_wait(kube, namespace)
    try:
        _read_until(process, "ready   dataset/iris")
        chain.set_status("TrainingJob", "iris-classifier", trainingjob_failed())
        _, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == EXIT_FAILED
    assert err == (
        "error: trainingjob/iris-classifier: ObjectiveNotMet: "
        "run-1: accuracy = 0.5 misses the objective 0.85\n"
    )


def test_wait_fails_on_a_blocked_promotion_once_training_is_done(
    kube: Cluster, namespace: str, chain: Chain
) -> None:
    chain.set_status("Dataset", "iris", dataset_ready())
    chain.set_status("TrainingJob", "iris-classifier", trainingjob_ready())
    chain.set_status("ModelDeployment", "iris", deployment_blocked())
    waited = modelyard(kube, namespace, "wait", "mdep/iris", "--timeout", "1m")
    assert waited.returncode == EXIT_FAILED
    assert waited.stderr == (
        "error: modeldeployment/iris: PromotionBlocked: "
        "iris-classifier/run-1 has accuracy=0.5 against the gate 0.85\n"
    )


def test_wait_times_out_with_its_own_exit_code_naming_the_first_link_not_ready(
    kube: Cluster, namespace: str, chain: Chain
) -> None:
    chain.set_status("Dataset", "iris", dataset_ready())
    waited = modelyard(kube, namespace, "wait", "mdep/iris", "--timeout", "2s")
    assert waited.returncode == EXIT_TIMEOUT
    assert waited.stderr == "error: timed out after 2s: trainingjob/iris-classifier: Pending\n"


def test_a_ready_status_from_before_the_last_spec_change_does_not_count(
    kube: Cluster, namespace: str, chain: Chain
) -> None:
    chain.all_ready()
    chain.custom.patch_namespaced_custom_object(
        GROUP, VERSION, namespace, "modeldeployments", "iris", {"spec": {"replicas": 3}}
    )
    waited = modelyard(kube, namespace, "wait", "mdep/iris", "--timeout", "2s")
    assert waited.returncode == EXIT_TIMEOUT
    assert waited.stderr == (
        "error: timed out after 2s: modeldeployment/iris: "
        "Stale: the operator has not acted on generation 2\n"
    )


def test_lineage_does_not_believe_a_card_other_than_the_recorded_one(
    kube: Cluster,
    namespace: str,
    chain: Chain,
    s3_env: dict[str, str],
    storage: Storage,
) -> None:
    bucket = s3_env["MODELYARD_S3_BUCKET"]
    chain.all_ready(bucket)
    card = {"libraries": {"python": "3.11.10", "scikit-learn": "1.5.2"}}
    card_bytes = json.dumps(card).encode()
    card_uri = S3Uri.parse(model_uri(bucket).replace("model.joblib", "model.json"))
    storage.put_bytes(card_uri, card_bytes)
    deployment = deployment_ready(bucket)
    deployment["model"]["cardDigest"] = bytes_digest(card_bytes)
    chain.set_status("ModelDeployment", "iris", deployment)
    env = {**os.environ, **s3_env}
    shown = modelyard(kube, namespace, "lineage", "mdep/iris", "-o", "json", env=env)
    assert json.loads(shown.stdout)["model"]["libraries"] == card["libraries"]
    # A bucket writer swaps the card: the lineage no longer vouches for what it says.
    storage.put_bytes(card_uri, json.dumps({"libraries": {"python": "2.7"}}).encode())
    shown = modelyard(kube, namespace, "lineage", "mdep/iris", env=env)
    assert "is not the one the run recorded" in shown.stdout, shown.stdout
    assert "2.7" not in shown.stdout
