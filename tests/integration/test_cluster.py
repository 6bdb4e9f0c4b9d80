"""The control-plane tier itself: the API server answers, authorizes with RBAC, and
the namespace fixture gives each test an isolated, restricted namespace."""

from __future__ import annotations

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.plugins.kube import LOCAL_KUBECONFIG, Cluster, foreign_kubeconfig

pytestmark = pytest.mark.integration


def test_api_server_answers(kube: Cluster) -> None:
    with kube.api_client() as api:
        version = client.VersionApi(api).get_code()
    assert version.major == "1"
    if kube.local:
        # hack/k8s-build pins Kubernetes 1.34 and stamps the version into the binaries.
        assert version.git_version.startswith("v1.34."), version.git_version


def test_tier_runs_apart_from_the_shared_local_cluster(kube: Cluster) -> None:
    # An operator there (`make demo` leaves one, watching every namespace) would act on the
    # tests' objects: the tier starts its own control plane unless KUBECONFIG names a cluster.
    if foreign_kubeconfig() is not None:
        pytest.skip("KUBECONFIG names a cluster: it is used as it is")
    assert kube.kubeconfig.resolve() != LOCAL_KUBECONFIG.resolve()
    with kube.api_client() as api:
        assert client.CoreV1Api(api).list_node().items == []


def test_rbac_denies_a_service_account_by_default(kube: Cluster, namespace: str) -> None:
    with kube.api_client() as api:
        client.CoreV1Api(api).create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="nobody"))
        )
        review = client.AuthorizationV1Api(api).create_subject_access_review(
            client.V1SubjectAccessReview(
                spec=client.V1SubjectAccessReviewSpec(
                    user=f"system:serviceaccount:{namespace}:nobody",
                    groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
                    resource_attributes=client.V1ResourceAttributes(
                        namespace=namespace, verb="list", resource="secrets"
                    ),
                )
            )
        )
    assert review.status and review.status.allowed is False


def test_namespace_fixture_enforces_restricted_pods(kube: Cluster, namespace: str) -> None:
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        ns = core.read_namespace(namespace)
        assert ns.metadata and ns.metadata.labels
        assert ns.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
        privileged = client.V1Pod(
            metadata=client.V1ObjectMeta(name="privileged"),
            spec=client.V1PodSpec(
                containers=[
                    client.V1Container(
                        name="c",
                        image="docker.io/modelyard/none:0",
                        security_context=client.V1SecurityContext(privileged=True),
                    )
                ]
            ),
        )
        with pytest.raises(ApiException) as err:
            core.create_namespaced_pod(namespace, privileged)
    assert err.value.status == 403
    assert "PodSecurity" in str(err.value.body)


def test_namespace_is_ready_for_pods(kube: Cluster, namespace: str) -> None:
    # The controller manager runs: it has made the service account pods need.
    with kube.api_client() as api:
        sa = client.CoreV1Api(api).read_namespaced_service_account("default", namespace)
    assert sa.metadata and sa.metadata.namespace == namespace
