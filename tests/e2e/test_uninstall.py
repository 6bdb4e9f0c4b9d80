"""Runs after the other end-to-end tests (file order): `helm uninstall` keeps CRDs and data."""

from __future__ import annotations

import subprocess

import pytest
from kubernetes import client

from tests.e2e.conftest import OPERATOR_NAMESPACE, RELEASE
from tests.plugins.kube import Cluster

pytestmark = pytest.mark.e2e


def test_helm_uninstall_keeps_crds_and_user_data(
    kube_node: Cluster, release: list[str], ml_namespace: str
) -> None:
    with kube_node.api_client() as api:
        custom = client.CustomObjectsApi(api)
        custom.create_namespaced_custom_object(
            "modelyard.dev",
            "v1alpha1",
            ml_namespace,
            "datasets",
            {
                "apiVersion": "modelyard.dev/v1alpha1",
                "kind": "Dataset",
                "metadata": {"name": "kept"},
                "spec": {"source": {"builtin": {"name": "wine"}}},
            },
        )
        subprocess.run(
            [*release, "uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait"],
            check=True,
        )
        extensions = client.ApiextensionsV1Api(api)
        names = {crd.metadata.name for crd in extensions.list_custom_resource_definition().items}
        assert {
            "datasets.modelyard.dev",
            "trainingjobs.modelyard.dev",
            "modeldeployments.modelyard.dev",
        } <= names
        kept = custom.get_namespaced_custom_object(
            "modelyard.dev", "v1alpha1", ml_namespace, "datasets", "kept"
        )
        assert kept["metadata"]["name"] == "kept"
        apps = client.AppsV1Api(api)
        assert not apps.list_namespaced_deployment(OPERATOR_NAMESPACE).items
        # The operator is gone, so nothing removes its finalizer: release the object by hand,
        # as `kubectl patch` would, so the namespace can be deleted.
        custom.patch_namespaced_custom_object(
            "modelyard.dev",
            "v1alpha1",
            ml_namespace,
            "datasets",
            "kept",
            {"metadata": {"finalizers": None}},
        )
