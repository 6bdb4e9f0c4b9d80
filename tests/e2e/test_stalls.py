"""Child pods that cannot start, on a real node: the kubelet's and scheduler's own words reach
the object's Ready condition within seconds, as a stall with its reason, not as Ingesting or
Running forever."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.chain import GROUP, VERSION, status, wait_until
from tests.e2e.conftest import MISSING_IMAGE, RESTRICTED
from tests.plugins.kube import Cluster

pytestmark = pytest.mark.e2e

# What the acceptance asks: each stall visible within 30 s of the object's creation.
WITHIN_SECONDS = 30


def _stalled(custom: Any, namespace: str, plural: str, name: str, *reasons: str) -> dict[str, Any]:
    """The object's Ready=False condition with one of `reasons`, once it shows (≤ 30 s)."""
    started = time.monotonic()

    def probe() -> dict[str, Any] | None:
        conditions = status(custom, namespace, plural, name).get("conditions") or []
        ready = next((c for c in conditions if c["type"] == "Ready"), None)
        if ready and ready["status"] == "False" and ready["reason"] in reasons:
            return ready
        return None

    ready = wait_until(f"{plural}/{name} Ready=False {reasons}", probe, timeout=WITHIN_SECONDS)
    elapsed = time.monotonic() - started
    print(f"\n{plural}/{name}: {ready['reason']} after {elapsed:.1f}s: {ready['message']}")
    return ready


@pytest.fixture
def bare_namespace(core: client.CoreV1Api, release: list[str]) -> Iterator[str]:
    """A namespace without the storage credentials Secret the chart names."""
    name = f"e2e-bare-{uuid.uuid4().hex[:8]}"
    core.create_namespace(
        client.V1Namespace(metadata=client.V1ObjectMeta(name=name, labels=RESTRICTED))
    )
    yield name
    core.delete_namespace(name)


def _create(custom: Any, namespace: str, kind: str, name: str, spec: dict[str, Any]) -> None:
    plural = {"Dataset": "datasets", "TrainingJob": "trainingjobs"}[kind]
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    }
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body)


def test_a_missing_credentials_secret_stalls_the_dataset(
    kube_node: Cluster, bare_namespace: str, custom: Any
) -> None:
    _create(custom, bare_namespace, "Dataset", "iris", {"source": {"builtin": {"name": "iris"}}})
    ready = _stalled(custom, bare_namespace, "datasets", "iris", "CreateContainerConfigError")
    assert 'secret "modelyard-s3" not found' in ready["message"]


def _ready_dataset(custom: Any, namespace: str, kube_node: Cluster) -> None:
    _create(custom, namespace, "Dataset", "iris", {"source": {"builtin": {"name": "iris"}}})
    wait_until(
        "the Dataset ready",
        lambda: status(custom, namespace, "datasets", "iris").get("phase") == "Ready",
    )


def test_an_image_that_cannot_be_pulled_stalls_the_trainingjob(
    kube_node: Cluster, ml_namespace: str, custom: Any
) -> None:
    _ready_dataset(custom, ml_namespace, kube_node)
    spec = {
        "datasetRef": {"name": "iris"},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        "image": MISSING_IMAGE,
    }
    _create(custom, ml_namespace, "TrainingJob", "pulled", spec)
    ready = _stalled(
        custom, ml_namespace, "trainingjobs", "pulled", "ErrImagePull", "ImagePullBackOff"
    )
    assert MISSING_IMAGE in ready["message"]


def test_a_pod_no_node_can_take_stalls_the_trainingjob(
    kube_node: Cluster, ml_namespace: str, custom: Any
) -> None:
    _ready_dataset(custom, ml_namespace, kube_node)
    spec = {
        "datasetRef": {"name": "iris"},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        "resources": {"requests": {"cpu": "64"}, "limits": {"cpu": "64"}},
    }
    _create(custom, ml_namespace, "TrainingJob", "huge", spec)
    ready = _stalled(custom, ml_namespace, "trainingjobs", "huge", "Unschedulable")
    assert "Insufficient cpu" in ready["message"]
