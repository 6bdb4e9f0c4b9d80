"""The whole stack on the full local cluster: images built here, an S3 server the pods reach,
the Helm chart installed with its own RBAC, and namespaces enforcing `restricted`."""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from kubernetes import client, config

from tests.conftest import REPO
from tests.e2e.recorder import (  # noqa: F401 - every status recorded, checked by the last test
    pytest_collection_modifyitems,
    recorded_statuses,
    status_recorder,
)
from tests.plugins.kube import HACK, Cluster
from tests.plugins.s3 import S3Server, node_s3_server

RELEASE = "modelyard"
OPERATOR_NAMESPACE = "modelyard-system"
CREDENTIALS_SECRET = "modelyard-s3"
EXAMPLES_DATA = "s3://modelyard/examples/"
# An image the operator is told to allow but that no node has and nothing can pull (no
# registry is reachable): what a user's typo in an allowed repository looks like.
MISSING_IMAGE = "modelyard/missing:0.1.0"
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}


def helm_binary() -> str:
    from tests.unit.chart_render import helm

    return helm()


@pytest.fixture(scope="session")
def images(kube_node: Cluster) -> None:
    """images/*/Dockerfile built on the local base and imported into the node's containerd."""
    if not kube_node.local:
        pytest.skip("images are built for the local cluster; with kind, `kind load docker-image`")
    subprocess.run([str(HACK / "images.sh"), "build"], check=True)


@pytest.fixture(scope="session")
def node_s3(kube_node: Cluster) -> S3Server:
    """The local cluster's S3 server (versitygw, hack/s3.sh) on the node's bridge address, where
    pods reach it; its objects persist across runs and cluster restarts, as `make demo`'s do."""
    if kube_node.host_ip is None:
        pytest.skip("no local node: pods could not reach a server on this host")
    return node_s3_server(kube_node.host_ip)


@pytest.fixture(scope="session")
def core(kube_node: Cluster) -> Iterator[client.CoreV1Api]:
    with kube_node.api_client() as api:
        yield client.CoreV1Api(api)


def _ensure_namespace(core: client.CoreV1Api, name: str) -> None:
    body = client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=RESTRICTED))
    try:
        core.create_namespace(body)
    except client.ApiException as error:
        if error.status != 409:
            raise


@pytest.fixture(scope="session")
def release(
    kube_node: Cluster, images: None, node_s3: S3Server, core: client.CoreV1Api
) -> Iterator[list[str]]:
    """The chart installed as a user would, the operator running under the chart's RBAC."""
    _ensure_namespace(core, OPERATOR_NAMESPACE)
    helm = [helm_binary(), "--kubeconfig", str(kube_node.kubeconfig)]
    subprocess.run(
        [
            *helm,
            "upgrade",
            "--install",
            RELEASE,
            str(REPO / "charts" / "modelyard"),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--set",
            f"storage.endpoint={node_s3.endpoint}",
            "--set",
            f"storage.credentialsSecret={CREDENTIALS_SECRET}",
            "--set",
            "workloads.jobTTLSeconds=600",
            # Where the examples' generate.py puts their data, which every namespace may read
            # (outside a namespace's own prefix, so refused unless the operator allows it).
            "--set-json",
            f"storage.readableLocations={json.dumps({'*': [EXAMPLES_DATA]})}",
            "--set-json",
            f"workloads.allowedImages={json.dumps([MISSING_IMAGE.rpartition(':')[0]])}",
            # A new operator pod per session, running the images just built: their tag stays
            # the same, so an upgrade would otherwise keep the pod of an earlier session.
            "--set-string",
            f"podAnnotations.modelyard\\.dev/e2e-session={uuid.uuid4().hex[:12]}",
            # The examples' database (production-quality) on the node's bridge address.
            "--set-json",
            f"workloads.http.allowedNetworks={json.dumps([f'{kube_node.host_ip}/32'])}",
            "--wait",
            "--timeout",
            "5m",
        ],
        check=True,
    )
    yield helm


@pytest.fixture
def ml_namespace(core: client.CoreV1Api, release: list[str], node_s3: S3Server) -> Iterator[str]:
    """A namespace enforcing `restricted`, with the storage credentials Secret."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    _ensure_namespace(core, name)
    core.create_namespaced_secret(
        name,
        client.V1Secret(
            metadata=client.V1ObjectMeta(name=CREDENTIALS_SECRET),
            string_data={
                "AWS_ACCESS_KEY_ID": node_s3.access_key,
                "AWS_SECRET_ACCESS_KEY": node_s3.secret_key,
            },
        ),
    )
    yield name
    core.delete_namespace(name)


class ServiceProxy:
    """HTTP to a Service through the API server's service proxy, with the admin's client cert."""

    def __init__(self, cluster: Cluster) -> None:
        configuration = client.Configuration()
        config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(cluster.kubeconfig), client_configuration=configuration
        )
        self.base = configuration.host
        self.session = requests.Session()
        # Not the environment's CA bundle or proxies: the cluster's own CA, straight to it.
        self.session.trust_env = False
        self.session.verify = configuration.ssl_ca_cert
        self.session.cert = (configuration.cert_file, configuration.key_file)

    def url(self, namespace: str, service: str, path: str) -> str:
        return f"{self.base}/api/v1/namespaces/{namespace}/services/{service}:http/proxy/{path}"

    def post(self, namespace: str, service: str, path: str, body: Any) -> requests.Response:
        return self.session.post(self.url(namespace, service, path), json=body, timeout=10)

    def get(self, namespace: str, service: str, path: str) -> requests.Response:
        return self.session.get(self.url(namespace, service, path), timeout=10)


@pytest.fixture(scope="session")
def proxy(kube_node: Cluster) -> ServiceProxy:
    return ServiceProxy(kube_node)


@pytest.fixture
def custom(kube_node: Cluster) -> Iterator[client.CustomObjectsApi]:
    with kube_node.api_client() as api:
        yield client.CustomObjectsApi(api)
