"""Runs after the other end-to-end tests (file order): `helm uninstall` keeps CRDs and data, and
its pre-delete hook leaves no object that only the (now gone) operator could let be deleted."""

from __future__ import annotations

import subprocess
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelyard.controllers.bookkeeping import FINALIZER
from tests.conftest import PLURALS
from tests.e2e.chain import wait_until
from tests.e2e.conftest import OPERATOR_NAMESPACE, RELEASE
from tests.plugins.kube import Cluster

pytestmark = pytest.mark.e2e


def test_helm_uninstall_keeps_crds_and_user_data_and_leaves_nothing_stuck(
    kube_node: Cluster, release: list[str], ml_namespace: str
) -> None:
    with kube_node.api_client() as api:
        # Any: the client's declared types say `object` for custom objects.
        custom: Any = client.CustomObjectsApi(api)
        # A Dataset a ModelDeployment uses (through its TrainingJob): the operator protects it
        # with its finalizer, which only the uninstall hook can take off once it is gone.
        for plural, kind, spec in (
            ("datasets", "Dataset", {"source": {"builtin": {"name": "wine"}}}),
            (
                "trainingjobs",
                "TrainingJob",
                {
                    "datasetRef": {"name": "kept"},
                    "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
                },
            ),
            (
                "modeldeployments",
                "ModelDeployment",
                {"model": {"trainingJobRef": {"name": "kept"}}},
            ),
        ):
            custom.create_namespaced_custom_object(
                "modelyard.dev",
                "v1alpha1",
                ml_namespace,
                plural,
                {
                    "apiVersion": "modelyard.dev/v1alpha1",
                    "kind": kind,
                    "metadata": {"name": "kept"},
                    "spec": spec,
                },
            )

        def kept() -> dict[str, Any]:
            found: dict[str, Any] = custom.get_namespaced_custom_object(
                "modelyard.dev", "v1alpha1", ml_namespace, "datasets", "kept"
            )
            return found

        # What the uninstall has to undo.
        wait_until("the operator's finalizer", lambda: FINALIZER in _finalizers(kept()), 120)
        subprocess.run(
            [*release, "uninstall", RELEASE, "--namespace", OPERATOR_NAMESPACE, "--wait"],
            check=True,
        )
        extensions: Any = client.ApiextensionsV1Api(api)
        names = {crd.metadata.name for crd in extensions.list_custom_resource_definition().items}
        assert {
            "datasets.modelyard.dev",
            "trainingjobs.modelyard.dev",
            "modeldeployments.modelyard.dev",
        } <= names
        assert kept()["metadata"]["name"] == "kept"
        apps = client.AppsV1Api(api)
        assert not apps.list_namespaced_deployment(OPERATOR_NAMESPACE).items
        # The hook succeeded, so Helm removed it with its account and roles.
        assert not client.BatchV1Api(api).list_namespaced_job(OPERATOR_NAMESPACE).items
        for plural in PLURALS.values():
            listed = custom.list_cluster_custom_object("modelyard.dev", "v1alpha1", plural)
            stuck = [o["metadata"]["name"] for o in listed["items"] if FINALIZER in _finalizers(o)]
            assert not stuck, f"{plural} still carry {FINALIZER}: {stuck}"

        # No operator, and nothing to patch by hand: the deletion completes.
        custom.delete_namespaced_custom_object(
            "modelyard.dev", "v1alpha1", ml_namespace, "datasets", "kept"
        )

        def deleted() -> bool:
            try:
                kept()
            except ApiException as error:
                return bool(error.status == 404)
            return False

        wait_until("the Dataset to be deleted", deleted, 30)


def _finalizers(obj: dict[str, Any]) -> list[str]:
    return list(obj["metadata"].get("finalizers") or [])
