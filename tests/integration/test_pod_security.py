"""Every pod Modelyard makes passes the `restricted` Pod Security Standard as the API server
enforces it: the ingest and training Jobs' pods, the model servers' pods and the chart's operator
pod are created as real Pods in a namespace that enforces and warns on `restricted`.

Nothing needs to run: admission happens at creation, and a node selector that matches no node
keeps the pods Pending (on a cluster with a node as on one without).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelyard.api.common import StorageSpec
from modelyard.api.dataset import DatasetSpec
from modelyard.api.modeldeployment import ModelDeploymentSpec
from modelyard.api.trainingjob import TrainingJobSpec
from modelyard.config import OperatorConfig
from modelyard.resources.jobs import Owner, build_ingest_job, build_training_job, ingest_job_name
from modelyard.resources.router import build_router
from modelyard.resources.serving import CANARY, MAIN, ModelRef, build_deployment
from tests.plugins.kube import Cluster
from tests.unit.chart_render import one, render

pytestmark = pytest.mark.integration

Manifest = dict[str, Any]

# Matches no node: admitted pods stay Pending instead of running on a shared node.
NOWHERE = (("modelyard.dev/pod-security-test", "nowhere"),)
DIGEST = "sha256:" + "ab" * 32
BARE = OperatorConfig(workload_node_selector=NOWHERE)
FULL = OperatorConfig(
    s3_endpoint="http://minio.storage:9000",
    s3_credentials_secret="s3-creds",
    image_pull_secrets=("regcred",),
    image_pull_policy="Always",
    workload_node_selector=NOWHERE,
)
SERVING = ModelDeploymentSpec.model_validate(
    {
        "model": {"trainingJobRef": {"name": "iris"}},
        "image": "registry.example/server:1",
        "resources": {"requests": {"cpu": "250m"}, "limits": {"memory": "1Gi"}},
    }
)
STORAGE = StorageSpec.model_validate(
    {"endpoint": "http://other:9000", "bucket": "team", "credentialsSecretRef": {"name": "team"}}
)


def _ingest(config: OperatorConfig, spec: Manifest) -> Manifest:
    owner = Owner("Dataset", "iris", "ns", "uid-1")
    return build_ingest_job(
        owner,
        DatasetSpec.model_validate(spec),
        ingest_job_name("iris", "uid-1", 1, ""),
        "s3://b/namespaces/ns/datasets/iris/",
        config,
    )


def _train(config: OperatorConfig, storage: StorageSpec | None) -> Manifest:
    spec = TrainingJobSpec.model_validate(
        {
            "datasetRef": {"name": "iris"},
            "estimator": {"class": "sklearn.svm.SVC"},
            "image": "registry.example/trainer:1",
            "activeDeadlineSeconds": 600,
            "resources": {"requests": {"cpu": "1"}, "limits": {"memory": "4Gi"}},
        }
    )
    owner = Owner("TrainingJob", "iris", "ns", "uid-2")
    output = "s3://b/namespaces/ns/models/iris/uid-2/run-1/"
    return build_training_job(owner, spec, "run-1", "s3://b/d", DIGEST, storage, output, config)


def _serve(config: OperatorConfig, track: str, storage: StorageSpec | None) -> Manifest:
    owner = Owner("ModelDeployment", "iris", "ns", "uid-3")
    return build_deployment(
        owner, SERVING, track, ModelRef("s3://m/m", DIGEST, DIGEST, storage), 2, config
    )


def _operator(values: dict[str, str]) -> Manifest:
    return one(
        render({"nodeSelector.modelyard\\.dev/pod-security-test": "nowhere", **values}),
        "Deployment",
    )


TEMPLATES = {
    "ingest-builtin-defaults": lambda: _ingest(BARE, {"source": {"builtin": {"name": "iris"}}}),
    "ingest-s3-with-secret-and-pull-secrets": lambda: _ingest(
        FULL,
        {
            "source": {"s3": {"uri": "s3://data/iris.csv"}},
            "target": "species",
            "storage": STORAGE.to_dict(),
        },
    ),
    "train-defaults": lambda: _train(BARE, None),
    "train-with-secret-and-dataset-storage": lambda: _train(FULL, STORAGE),
    "server-main-defaults": lambda: _serve(BARE, MAIN, None),
    "server-canary-with-secret": lambda: _serve(FULL, CANARY, STORAGE),
    "canary-router": lambda: build_router(
        Owner("ModelDeployment", "iris", "ns", "uid-3"), 10, 2, FULL
    ),
    "operator-chart-defaults": lambda: _operator({}),
    "operator-chart-peering-with-secret": lambda: _operator(
        {"replicaCount": "2", "storage.credentialsSecret": "s3-creds"}
    ),
}


@pytest.fixture
def core(kube: Cluster, namespace: str) -> Iterator[client.CoreV1Api]:
    """The namespace's API, warning as well as enforcing `restricted` (warnings name a field
    that the baseline would let through but `restricted` would not)."""
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        core.patch_namespace(
            namespace,
            {
                "metadata": {
                    "labels": {
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "pod-security.kubernetes.io/enforce-version": "latest",
                        "pod-security.kubernetes.io/warn": "restricted",
                        "pod-security.kubernetes.io/warn-version": "latest",
                    }
                }
            },
        )
        yield core


def _pod(template_owner: Manifest, name: str) -> Manifest:
    """A Pod exactly as its controller (Job, Deployment) would create it from the template."""
    template = copy.deepcopy(template_owner["spec"]["template"])
    metadata = {**template.get("metadata", {}), "name": name}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}


def _create(core: client.CoreV1Api, namespace: str, pod: Manifest) -> tuple[Manifest, list[str]]:
    """The created Pod and the API server's warnings."""
    created, _, headers = core.create_namespaced_pod_with_http_info(namespace, pod)
    warnings = [value for key, value in (headers or {}).items() if key.lower() == "warning"]
    return created.to_dict(), warnings


@pytest.mark.parametrize("variant", TEMPLATES)
def test_generated_pod_is_admitted_under_restricted_without_warnings(
    core: client.CoreV1Api, namespace: str, variant: str
) -> None:
    owner = TEMPLATES[variant]()
    if owner["spec"]["template"]["spec"].get("serviceAccountName"):
        # The chart's own account; the ServiceAccount admission plugin wants it to exist.
        account = owner["spec"]["template"]["spec"]["serviceAccountName"]
        core.create_namespaced_service_account(namespace, {"metadata": {"name": account}})
    created, warnings = _create(core, namespace, _pod(owner, variant))
    assert created["metadata"]["name"] == variant
    assert warnings == [], warnings


def test_a_pod_without_the_hardening_is_refused_so_the_namespace_really_enforces(
    core: client.CoreV1Api, namespace: str
) -> None:
    pod = _pod(_train(BARE, None), "unhardened")
    del pod["spec"]["securityContext"]
    for container in pod["spec"]["containers"]:
        del container["securityContext"]
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(namespace, pod)
    assert refused.value.status == 403
    message = json.loads(refused.value.body)["message"]
    assert 'violates PodSecurity "restricted:latest"' in message, message
    assert "runAsNonRoot" in message and "seccompProfile" in message, message
