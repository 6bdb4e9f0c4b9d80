"""Credentials never leak: after the quickstart chain runs on S3 credentials from a Secret with
known, distinctive values, neither those values nor their base64 appear in any Modelyard object,
any child object, any event, the operator's logs or any pod's logs or status."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from modelyard.api import GROUP, VERSION
from tests.conftest import EXAMPLES, PLURALS
from tests.e2e.chain import kubectl, wait_ready
from tests.e2e.conftest import CREDENTIALS_SECRET, OPERATOR_NAMESPACE
from tests.plugins.kube import Cluster
from tests.plugins.s3 import node_s3_account

pytestmark = pytest.mark.e2e

# The test S3 server accepts any credentials, so these reach it as real ones would.
ACCESS_KEY_ID = "AKIAMODELYARDLEAKH4Q7"
SECRET_ACCESS_KEY = "h4/Leak+Canary=9f3b2c71e0d4a6b8c5d7e9f1a3b5c7d9"
CANARIES = {
    value: label
    for secret in (ACCESS_KEY_ID, SECRET_ACCESS_KEY)
    for value, label in (
        (secret, secret),
        (base64.b64encode(secret.encode()).decode(), f"base64({secret})"),
    )
}


def leaks(text: str) -> list[str]:
    """Which secret values (or their base64) occur in `text`."""
    return [label for value, label in CANARIES.items() if value in text]


def _dump(api: client.ApiClient, obj: Any) -> str:
    """An API object as the JSON the API server sent (None fields left out)."""
    return json.dumps(api.sanitize_for_serialization(obj))


def _pod_logs(core: client.CoreV1Api, namespace: str) -> Iterator[tuple[str, str]]:
    for pod in core.list_namespaced_pod(namespace).items:
        for container in pod.spec.containers:
            where = f"logs of {namespace}/{pod.metadata.name}/{container.name}"
            try:
                log = core.read_namespaced_pod_log(
                    pod.metadata.name, namespace, container=container.name
                )
            except client.ApiException as error:
                if error.status in (400, 404):  # not started, or already collected
                    continue
                raise
            yield where, log


def _everything(cluster: Cluster, namespace: str) -> Iterator[tuple[str, str]]:
    """(where, text) for each place a credential must never be."""
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        custom = client.CustomObjectsApi(api)
        for kind, plural in PLURALS.items():
            for item in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, plural)[
                "items"
            ]:
                yield f"{kind} {item['metadata']['name']}", json.dumps(item)
        for where, listing in (
            ("Job", client.BatchV1Api(api).list_namespaced_job(namespace)),
            ("Deployment", client.AppsV1Api(api).list_namespaced_deployment(namespace)),
            ("Pod", core.list_namespaced_pod(namespace)),
            ("ConfigMap", core.list_namespaced_config_map(namespace)),
        ):
            for item in listing.items:
                yield f"{where} {item.metadata.name}", _dump(api, item)
        for events_namespace in (namespace, OPERATOR_NAMESPACE):
            for event in core.list_namespaced_event(events_namespace).items:
                yield f"event {events_namespace}/{event.metadata.name}", _dump(api, event)
        for pods_namespace in (namespace, OPERATOR_NAMESPACE):
            yield from _pod_logs(core, pods_namespace)


def test_credentials_appear_nowhere_after_the_chain_runs(
    kube_node: Cluster, ml_namespace: str, core: client.CoreV1Api
) -> None:
    core.replace_namespaced_secret(
        CREDENTIALS_SECRET,
        ml_namespace,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=CREDENTIALS_SECRET),
            string_data={
                "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
                "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            },
        ),
    )
    # A real S3 server checks signatures: the canaries must be credentials it accepts.
    with node_s3_account(ACCESS_KEY_ID, SECRET_ACCESS_KEY):
        kubectl(kube_node, "apply", "-n", ml_namespace, "-f", str(EXAMPLES / "quickstart"))
        for resource in ("dataset/iris", "trainingjob/iris-classifier", "modeldeployment/iris"):
            wait_ready(kube_node, ml_namespace, resource)

    # The control: the search finds the values where they are meant to be.
    secret = core.read_namespaced_secret(CREDENTIALS_SECRET, ml_namespace)
    assert len(leaks(_dump(core.api_client, secret))) == 2, (
        "the Secret should hold both values, base64-encoded"
    )

    places = list(_everything(kube_node, ml_namespace))
    searched = {where.split(" ")[0] for where, _ in places}
    assert {"Dataset", "TrainingJob", "ModelDeployment", "Job", "Pod", "event", "logs"} <= searched
    found = {where: leaked for where, text in places if (leaked := leaks(text))}
    assert not found, f"credentials leaked: {found}"
    # Workloads got them by reference only.
    pod_env = [
        env
        for where, text in places
        if where.startswith("Pod ")
        for container in json.loads(text)["spec"]["containers"]
        for env in container.get("env", [])
        if env["name"] == "AWS_SECRET_ACCESS_KEY"
    ]
    assert pod_env and all(
        env
        == {
            "name": "AWS_SECRET_ACCESS_KEY",
            "valueFrom": {
                "secretKeyRef": {"name": CREDENTIALS_SECRET, "key": "AWS_SECRET_ACCESS_KEY"}
            },
        }
        for env in pod_env
    ), pod_env
