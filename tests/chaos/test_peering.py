"""Two operator replicas with kopf peering: only one acts; SIGKILL it and the other takes over."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.chaos.conftest import OperatorFactory
from tests.chaos.objects import Objects, dataset
from tests.kubelet import wait_for
from tests.plugins.kube import Cluster
from tests.plugins.operator import OperatorProcess, apply_crds
from tests.unit.chart_render import render

pytestmark = pytest.mark.chaos

# The runner's PEERING_LIFETIME_SECONDS, plus time for the survivor to notice and resume.
HANDOVER_SECONDS = 30 + 30


def peering_crds() -> list[dict[str, object]]:
    """kopf's peering CRDs as the Helm chart installs them (peering.installCRDs=true)."""
    return [
        doc
        for doc in render({"peering.enabled": "true", "peering.installCRDs": "true"})
        if doc["kind"] == "CustomResourceDefinition"
    ]


def handled(operator: OperatorProcess, name: str) -> bool:
    """Did this replica run a handler for the object? (kopf logs each one it runs.)"""
    return f"/{name}] Handler 'dataset_changed' succeeded" in operator.logs()


def test_one_replica_acts_and_the_other_takes_over_when_it_dies(
    crds: Cluster, namespace: str, operator_process: OperatorFactory
) -> None:
    with crds.api_client() as api:
        apply_crds(crds.api_client(), peering_crds())
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            "kopf.dev",
            "v1",
            namespace,
            "kopfpeerings",
            {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "modelyard"}},
        )
    objects = Objects(crds.api_client(), namespace)
    first, second = operator_process(standalone=False), operator_process(standalone=False)
    first.start()
    second.start()  # the newer replica wins: `first` stands by
    wait_for("the first replica to pause", lambda: "Pausing operations" in first.logs())

    for i in range(3):
        objects.create(dataset(f"while-both-{i}"))
    wait_for("ingest Jobs", lambda: len(objects.jobs()) == 3)
    assert all(handled(second, f"while-both-{i}") for i in range(3))
    assert not any(handled(first, f"while-both-{i}") for i in range(3)), "only one replica acts"

    second.kill()
    objects.create(dataset("after-kill"))
    wait_for(
        "the first replica to take over", lambda: handled(first, "after-kill"), HANDOVER_SECONDS
    )
    wait_for("its ingest Job", lambda: len(objects.jobs()) == 4)
    print("chaos: active replica SIGKILLed, the standby took over")
