"""The API server restarts mid-storm: the operator reconnects by itself and every object
converges within 60 s of the API server being back. A private control plane, never the shared
one."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client, config

from tests.chaos.conftest import FULL
from tests.chaos.kubelet_loop import KubeletLoop
from tests.chaos.objects import Objects, dataset, training_job
from tests.chaos.test_operator_killed import unfinished
from tests.kubelet import wait_for
from tests.plugins import controlplane
from tests.plugins.controlplane import ControlPlane
from tests.plugins.operator import OperatorProcess, apply_crds, modelyard_crds

pytestmark = pytest.mark.chaos

SIZE = 100 if FULL else 20
NAMESPACE = "chaos"
DOWN_SECONDS = 5
# What issue 8 asks for. It is set by kopf's retry backoffs (the watches reconnect within
# seconds, handlers cut off by the outage retry after ERROR_BACKOFF_SECONDS), not by CPU speed:
# 18 to 24 s at CI size on a loaded two-core machine.
CONVERGENCE_TIMEOUT = 60


@pytest.fixture
def private_plane(tmp_path: Path) -> Iterator[ControlPlane]:
    with controlplane.running(tmp_path / "control-plane") as plane:
        yield plane


def _client(plane: ControlPlane) -> client.ApiClient:
    api: client.ApiClient = config.new_client_from_config(config_file=str(plane.kubeconfig))  # type: ignore[no-untyped-call]
    return api


def test_operator_reconnects_after_the_api_server_restarts(
    private_plane: ControlPlane, tmp_path: Path
) -> None:
    apply_crds(_client(private_plane), modelyard_crds())
    api = _client(private_plane)
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": NAMESPACE}})
    wait_for(
        "the default service account", lambda: core.list_namespaced_service_account(NAMESPACE).items
    )
    operator = OperatorProcess(private_plane.kubeconfig, NAMESPACE, tmp_path / "operator.log")
    operator.start()
    objects = Objects(api, NAMESPACE)
    try:
        with KubeletLoop(_client(private_plane), NAMESPACE):
            for i in range(SIZE):
                objects.create(dataset(f"ds-{i}"))
                objects.create(training_job(f"tj-{i}", f"ds-{i}"))
                if i == SIZE // 2:
                    private_plane.kill_apiserver()
                    time.sleep(DOWN_SECONDS)
                    private_plane.start_apiserver()
                    back = time.monotonic()
            try:
                wait_for(
                    "every object converged", lambda: not unfinished(objects), CONVERGENCE_TIMEOUT
                )
            except AssertionError as error:
                raise AssertionError(f"{error}; not there: {unfinished(objects)}") from None
            converged = time.monotonic() - back
        assert operator.running(), "the operator recovered without a restart"
        assert len(objects.jobs()) == 2 * SIZE, "one Job per ingestion and per run"
    finally:
        operator.stop()
    print(
        f"chaos: API server restarted under {2 * SIZE} objects, 0 lost, "
        f"all converged {converged:.0f} s after it was back"
    )
