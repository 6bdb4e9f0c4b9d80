"""What the e2e tests do to the chain as a user would: kubectl, waiting, reading statuses."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client

from tests.plugins.kube import Cluster, kubectl_binary

GROUP, VERSION = "modelyard.dev", "v1alpha1"
TIMEOUT = 600


def kubectl(cluster: Cluster, *args: str) -> str:
    result = subprocess.run(
        [kubectl_binary(), f"--kubeconfig={cluster.kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def wait_ready(cluster: Cluster, namespace: str, resource: str) -> None:
    """`kubectl wait --for=condition=Ready`, as a user waits on the chain."""
    kubectl(
        cluster, "wait", "-n", namespace, "--for=condition=Ready", resource, f"--timeout={TIMEOUT}s"
    )


def status(
    custom: client.CustomObjectsApi, namespace: str, plural: str, name: str
) -> dict[str, Any]:
    body = custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)
    return body.get("status") or {}


def wait_until(what: str, probe: Callable[[], Any], timeout: float = TIMEOUT) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(1)
