"""The objects chaos tests apply, and what they read back."""

from __future__ import annotations

from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelyard.api import GROUP, VERSION
from tests.conftest import PLURALS


def dataset(name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Dataset",
        "metadata": {"name": name},
        "spec": {"source": {"builtin": {"name": "iris"}}, "target": "target"},
    }


def training_job(name: str, dataset_name: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {
            "datasetRef": {"name": dataset_name},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        },
    }


class Objects:
    """Create, list and delete Modelyard objects in one namespace."""

    def __init__(self, api: client.ApiClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(api)
        self.batch = client.BatchV1Api(api)
        self.core = client.CoreV1Api(api)
        self.namespace = namespace

    def create(self, body: dict[str, Any]) -> None:
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURALS[body["kind"]], body
        )

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        try:
            found: dict[str, Any] = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, PLURALS[kind], name
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        return found

    def all(self, kind: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURALS[kind]
        )["items"]
        return items

    def delete_all(self, kind: str) -> None:
        self.custom.delete_collection_namespaced_custom_object(
            GROUP, VERSION, self.namespace, PLURALS[kind]
        )

    def jobs(self) -> list[client.V1Job]:
        return list(self.batch.list_namespaced_job(self.namespace).items)


def ready(body: dict[str, Any]) -> dict[str, Any] | None:
    status = body.get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), None)
