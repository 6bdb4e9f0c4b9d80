"""The chart's RBAC, applied to a real API server, grants what kopf's peering does: the RBAC
authorizer answers, not a reading of the rules."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from kubernetes import client, utils

from tests.kubelet import wait_for
from tests.plugins.kube import Cluster
from tests.unit.chart_render import NAMESPACE, Manifest, render

pytestmark = pytest.mark.integration

RBAC_KINDS = ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
# What kopf does with the peering object of each scope it serves.
VERBS = ("list", "watch", "patch")


@contextmanager
def _operator_rbac(api: client.ApiClient, manifests: list[Manifest], suffix: str) -> Iterator[str]:
    """The operator's RBAC objects created (cluster-scoped ones under names unique to the test,
    deleted after it); yields the operator's service account as the authorizer names it."""
    objects, account = [], ""
    for manifest in manifests:
        labels = manifest["metadata"].get("labels", {})
        if manifest["kind"] not in RBAC_KINDS or labels.get("app.kubernetes.io/component") != (
            "operator"
        ):
            continue
        manifest = copy.deepcopy(manifest)
        if manifest["kind"].startswith("Cluster"):
            manifest["metadata"]["name"] += f"-{suffix}"
        if manifest["kind"] == "ClusterRoleBinding":
            manifest["roleRef"]["name"] += f"-{suffix}"
        if manifest["kind"].endswith("Binding"):
            (subject,) = manifest["subjects"]
            account = f"system:serviceaccount:{subject['namespace']}:{subject['name']}"
        objects.append(manifest)
    assert objects and account
    rbac = client.RbacAuthorizationV1Api(api)
    try:
        for manifest in objects:
            utils.create_from_dict(api, manifest)
        yield account
    finally:
        for manifest in objects:
            if manifest["kind"] == "ClusterRole":
                rbac.delete_cluster_role(manifest["metadata"]["name"])
            elif manifest["kind"] == "ClusterRoleBinding":
                rbac.delete_cluster_role_binding(manifest["metadata"]["name"])


@pytest.fixture
def api(kube: Cluster) -> Iterator[client.ApiClient]:
    with kube.api_client() as api:
        yield api


def _allowed(
    api: client.ApiClient, account: str, verb: str, resource: str, namespace: str | None
) -> bool:
    review = client.AuthorizationV1Api(api).create_subject_access_review(
        client.V1SubjectAccessReview(
            spec=client.V1SubjectAccessReviewSpec(
                user=account,
                groups=["system:serviceaccounts", f"system:serviceaccounts:{NAMESPACE}"],
                resource_attributes=client.V1ResourceAttributes(
                    group="kopf.dev", resource=resource, verb=verb, namespace=namespace
                ),
            )
        )
    )
    return bool(review.status and review.status.allowed)


def _granted(
    api: client.ApiClient, account: str, verb: str, resource: str, namespace: str | None
) -> None:
    """The authorizer allows it once its cache holds the new roles (it watches them, so a
    review right after their creation may still answer from before)."""
    wait_for(
        f"{account} allowed to {verb} {resource}",
        lambda: _allowed(api, account, verb, resource, namespace) or None,
        timeout=30,
    )


@pytest.mark.parametrize("cluster_wide", [True, False], ids=["cluster-role", "roles"])
def test_replicas_of_an_operator_of_named_namespaces_may_peer_in_each(
    api: client.ApiClient, namespace: str, cluster_wide: bool
) -> None:
    values = {
        "replicaCount": "2",
        "watchNamespaces": f"{{{namespace}}}",
        "rbac.clusterWide": str(cluster_wide).lower(),
    }
    with _operator_rbac(api, render(values), namespace) as account:
        # kopf peers through the KopfPeering of each namespace it watches.
        for verb in VERBS:
            _granted(api, account, verb, "kopfpeerings", namespace)


def test_replicas_of_an_operator_of_every_namespace_may_peer_cluster_wide(
    api: client.ApiClient, namespace: str
) -> None:
    with _operator_rbac(api, render({"replicaCount": "2"}), namespace) as account:
        for verb in VERBS:
            _granted(api, account, verb, "clusterkopfpeerings", None)
