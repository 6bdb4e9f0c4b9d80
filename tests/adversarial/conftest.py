"""The adversarial tier (`-m adversarial`, `make test-adversarial`): tenants of one cluster attack
each other through the operator, and must be refused.

One control plane of the tier's own (tests/plugins/controlplane.py) with the operator running
cluster-wide as the chart installs it (`modelyard operator`, its own process), and a real S3
server (versitygw) the workloads use with the shared credentials of a default install. Each
tenant is a namespace and a user who holds only what a data scientist gets there: the built-in
`edit` role, which the chart's aggregated role extends to Datasets, TrainingJobs and
ModelDeployments. Tests act as that user (impersonation: the API server applies the user's RBAC,
not the tests'). Workload pods are run for real by tests/process_kubelet.py when a test needs
their result; otherwise they stay Pending.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelyard.storage.client import Storage
from modelyard.storage.config import StorageConfig
from tests.adversarial.tenancy import SECRET, Tenant
from tests.integration.conftest import kube  # noqa: F401 - the tier's own control plane
from tests.plugins.kube import Cluster
from tests.plugins.operator import OperatorProcess
from tests.plugins.s3 import S3Server, running_versitygw
from tests.unit.chart_render import render

BUCKET = "modelyard"
# A network a Dataset's http source may reach although private: the tests' "allowed" host.
ALLOWED_HTTP = "127.0.0.2/32"


@pytest.fixture(scope="session")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with (
        running_versitygw(tmp_path_factory.mktemp("s3") / "data") as server,
        pytest.MonkeyPatch.context() as patch,
    ):
        # The tests themselves hold the bucket owner's keys: they play the bucket writer.
        for key, value in server.env(BUCKET).items():
            patch.setenv(key, value)
        Storage(StorageConfig.from_env(server.env(BUCKET))).ensure_bucket(BUCKET)
        yield server


@pytest.fixture(scope="session")
def storage(s3: S3Server) -> Storage:
    return Storage(StorageConfig.from_env(s3.env(BUCKET)))


@pytest.fixture(scope="session")
def aggregated_roles(crds: Cluster) -> None:
    """The chart's roles that extend the built-in edit/view/admin to the three kinds."""
    with crds.api_client() as api:
        rbac = client.RbacAuthorizationV1Api(api)
        for role in render():
            labels = (role.get("metadata") or {}).get("labels") or {}
            if role["kind"] == "ClusterRole" and any(
                key.startswith("rbac.authorization.k8s.io/aggregate-to-") for key in labels
            ):
                try:
                    rbac.create_cluster_role(role)
                except ApiException as error:
                    if error.status != 409:
                        raise
                    # A reused cluster has them: they must be the chart's as it is now.
                    existing = rbac.read_cluster_role(role["metadata"]["name"])
                    role["metadata"]["resourceVersion"] = existing.metadata.resource_version
                    rbac.replace_cluster_role(role["metadata"]["name"], role)


@pytest.fixture(scope="session")
def operator(
    crds: Cluster, s3: S3Server, aggregated_roles: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[OperatorProcess]:
    log = tmp_path_factory.mktemp("operator") / "operator.log"
    process = OperatorProcess(
        crds.kubeconfig,
        None,
        log,
        env={
            "MODELYARD_S3_ENDPOINT": s3.endpoint,
            "MODELYARD_S3_BUCKET": BUCKET,
            "MODELYARD_S3_CREDENTIALS_SECRET": SECRET,
            "MODELYARD_HTTP_ALLOWED_NETWORKS": ALLOWED_HTTP,
        },
    )
    process.start()
    yield process
    process.stop()


def _tenant(crds: Cluster, s3: S3Server, operator: OperatorProcess, role: str) -> Iterator[Tenant]:
    tenant = Tenant.create(crds, f"{role}-{uuid.uuid4().hex[:8]}", f"{role}@example.com", s3)
    try:
        yield tenant
    finally:
        tenant.delete()


@pytest.fixture
def attacker(crds: Cluster, s3: S3Server, operator: OperatorProcess) -> Iterator[Tenant]:
    """Namespace A's data scientist, who tries to reach what is not theirs."""
    yield from _tenant(crds, s3, operator, "team-a")


@pytest.fixture
def victim(crds: Cluster, s3: S3Server, operator: OperatorProcess) -> Iterator[Tenant]:
    """Namespace B's data scientist, whose data and models the attacker wants."""
    yield from _tenant(crds, s3, operator, "team-b")


@pytest.fixture
def trained(victim: Tenant, tmp_path: Path) -> dict[str, Any]:
    """B's Dataset ingested and TrainingJob trained for real: B's snapshot and model in S3."""
    return victim.train_iris()
