"""The operator under test: CRDs applied to the real API server, kopf running in-process.

Workload pods get a node selector no node has, so even on a cluster with a node they stay
Pending and the tests play the kubelet's part (tests/kubelet.py) with real controllers around.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import yaml
from kopf.testing import KopfRunner
from kubernetes import client
from kubernetes.dynamic import DynamicClient

from modelyard.controllers.kube import FIELD_MANAGER
from tests.conftest import REPO
from tests.plugins.kube import Cluster

UNSCHEDULABLE = "modelyard.dev/test-node=none"


@pytest.fixture(scope="session")
def crds(kube: Cluster) -> Cluster:
    """The generated CRDs, server-side applied and Established."""
    with kube.api_client() as api:
        dynamic = DynamicClient(api)  # type: ignore[no-untyped-call]
        resource = dynamic.resources.get(
            api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
        )
        names = []
        for path in sorted((REPO / "crds").glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            resource.server_side_apply(body=crd, field_manager=FIELD_MANAGER, force_conflicts=True)
            names.append(crd["metadata"]["name"])
        extensions = client.ApiextensionsV1Api(api)
        deadline = time.monotonic() + 60
        for name in names:
            while not any(
                c.type == "Established" and c.status == "True"
                for c in extensions.read_custom_resource_definition(name).status.conditions or []
            ):
                assert time.monotonic() < deadline, f"CRD {name} not Established"
                time.sleep(0.2)
    return kube


@dataclass
class Operator:
    """kopf running the Modelyard handlers for one namespace; can be stopped and restarted."""

    namespace: str
    runner: KopfRunner | None = None
    runs: list[KopfRunner] = field(default_factory=list)

    def start(self) -> None:
        self.runner = KopfRunner(
            [
                "run",
                "--standalone",
                "--namespace",
                self.namespace,
                "-m",
                "modelyard.controllers.runner",
            ],
            timeout=60,
        )
        self.runner.__enter__()
        self.runs.append(self.runner)

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.__exit__(None, None, None)
            self.runner = None

    def errors(self) -> list[Any]:
        return [run.exception for run in self.runs if run.exception is not None]


@pytest.fixture
def operator(crds: Cluster, namespace: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Operator]:
    monkeypatch.setenv("KUBECONFIG", str(crds.kubeconfig))
    monkeypatch.setenv("MODELYARD_METRICS_PORT", "0")
    monkeypatch.setenv("MODELYARD_WORKLOAD_NODE_SELECTOR", UNSCHEDULABLE)
    monkeypatch.setenv("MODELYARD_S3_ENDPOINT", "http://127.0.0.1:9")
    running = Operator(namespace)
    running.start()
    try:
        yield running
    finally:
        running.stop()
        _release(crds, namespace)
    assert not running.errors(), running.errors()


def _release(cluster: Cluster, namespace: str) -> None:
    """Remove finalizers left on our objects, so the namespace can go once the operator stopped."""
    with cluster.api_client() as api:
        custom = client.CustomObjectsApi(api)
        for plural in ("modeldeployments", "trainingjobs", "datasets"):
            for item in custom.list_namespaced_custom_object(
                "modelyard.dev", "v1alpha1", namespace, plural
            )["items"]:
                if item["metadata"].get("finalizers"):
                    custom.patch_namespaced_custom_object(
                        "modelyard.dev",
                        "v1alpha1",
                        namespace,
                        plural,
                        item["metadata"]["name"],
                        {"metadata": {"finalizers": None}},
                    )
