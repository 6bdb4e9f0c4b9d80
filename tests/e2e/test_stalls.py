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
from kubernetes.utils import parse_quantity

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


def _ending(pod: Any) -> bool:
    """Deleted, or done but not yet Succeeded or Failed: its requests still count, not for long."""
    statuses = (pod.status and pod.status.container_statuses) or []
    done = bool(statuses) and all(s.state and s.state.terminated for s in statuses)
    return bool(pod.metadata.deletion_timestamp) or done


def _free_cpu(core: client.CoreV1Api) -> int:
    """Millicores the scheduler can still give on the one node, once no pod or namespace is on
    its way out (an ending pod's requests count until it is gone)."""
    node = core.list_node().items[0]

    def placed() -> list[Any] | None:
        if any(
            (namespace.status and namespace.status.phase) == "Terminating"
            for namespace in core.list_namespace().items
        ):
            return None
        found = [
            pod
            for pod in core.list_pod_for_all_namespaces(
                field_selector=f"spec.nodeName={node.metadata.name}"
            ).items
            if pod.status.phase not in ("Succeeded", "Failed")
        ]
        return None if any(_ending(pod) for pod in found) else found

    requested = sum(
        parse_quantity(((c.resources and c.resources.requests) or {}).get("cpu", "0"))
        for pod in wait_until("no pod terminating on the node", placed)
        for c in pod.spec.containers
    )
    allocatable = (node.status and node.status.allocatable) or {}
    return int((parse_quantity(allocatable["cpu"]) - requested) * 1000)


def _hog(core: client.CoreV1Api, namespace: str, millicores: int) -> str:
    """A pod holding `millicores` of the node's CPU (requests only: it sleeps)."""
    name = "cpu-hog"
    container = client.V1Container(
        name="pause",
        image="localhost/modelyard/pause:3.10",
        image_pull_policy="Never",
        resources=client.V1ResourceRequirements(requests={"cpu": f"{millicores}m"}),
        security_context=client.V1SecurityContext(
            allow_privilege_escalation=False,
            capabilities=client.V1Capabilities(drop=["ALL"]),
            run_as_non_root=True,
            run_as_user=65535,
            seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
        ),
    )
    core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1PodSpec(containers=[container], termination_grace_period_seconds=0),
        ),
    )
    wait_until(
        "the CPU hog running",
        lambda: (
            (core.read_namespaced_pod(name, namespace).status or client.V1PodStatus()).phase
            == "Running"
        ),
    )
    return name


def test_a_pod_waiting_for_room_is_progress_and_trains_once_room_frees(
    kube_node: Cluster, ml_namespace: str, custom: Any, core: client.CoreV1Api
) -> None:
    """What the e2e tier met after a Dask run: the next pod finds the node full for the seconds
    the old pods take to end. In progress the while, in the scheduler's words; never a stall."""
    _ready_dataset(custom, ml_namespace, kube_node)
    free = _free_cpu(core)
    hog = _hog(core, ml_namespace, free)
    print(f"\n{free}m of the node's CPU held by pod {hog}")
    spec = {
        "datasetRef": {"name": "iris"},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        "resources": {"requests": {"cpu": "100m"}},
    }
    _create(custom, ml_namespace, "TrainingJob", "patient", spec)
    seen: list[dict[str, Any]] = []

    def conditions() -> dict[str, dict[str, Any]]:
        found = status(custom, ml_namespace, "trainingjobs", "patient").get("conditions") or []
        seen.extend(found)
        return {c["type"]: c for c in found}

    waiting = wait_until(
        "the TrainingJob waiting for a node",
        lambda: (
            (conditions().get("Reconciling") or {}).get("reason") == "WaitingForNode"
            and conditions()["Reconciling"]
        ),
        timeout=WITHIN_SECONDS,
    )
    print(f"\ntrainingjobs/patient: {waiting['reason']}: {waiting['message']}")
    assert "Insufficient cpu" in waiting["message"]
    assert conditions()["Ready"]["status"] == "Unknown"
    core.delete_namespaced_pod(hog, ml_namespace, grace_period_seconds=0)
    wait_until(
        "the run succeeded",
        lambda: (conditions().get("Ready") or {}).get("reason") == "Succeeded",
        timeout=180,
    )
    assert not [c for c in seen if c["type"] == "Stalled"], seen
    events = core.list_namespaced_event(
        ml_namespace, field_selector="involvedObject.name=patient"
    ).items
    assert not [e for e in events if e.type == "Warning"], [e.message for e in events]
