"""The operator under test: CRDs applied to the real API server, kopf running in-process
(`operator`) or as its own `modelyard operator` process (`OperatorProcess`: chaos tests and
benchmarks kill it, and measure its memory and CPU).

Workload pods get a node selector no node has, so even on a cluster with a node they stay
Pending and the tests play the kubelet's part (tests/kubelet.py) with real controllers around.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
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
    apply_crds(kube.api_client(), modelyard_crds())
    return kube


def modelyard_crds() -> list[dict[str, Any]]:
    return [yaml.safe_load(path.read_text()) for path in sorted((REPO / "crds").glob("*.yaml"))]


def apply_crds(api_client: client.ApiClient, crds: list[dict[str, Any]]) -> None:
    """Server-side apply these CRDs and wait until they are Established."""
    with api_client as api:
        dynamic = DynamicClient(api)  # type: ignore[no-untyped-call]
        resource = dynamic.resources.get(
            api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
        )
        names = []
        for crd in crds:
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


# What the in-process fixture sets, for an operator process: no metrics port, pods that stay
# Pending, an S3 endpoint nothing listens on (the operator itself never calls S3).
TEST_ENV = {
    "MODELYARD_METRICS_PORT": "0",
    "MODELYARD_WORKLOAD_NODE_SELECTOR": UNSCHEDULABLE,
    "MODELYARD_S3_ENDPOINT": "http://127.0.0.1:9",
    # Every log line reaches the file at once: a SIGKILL loses none.
    "PYTHONUNBUFFERED": "1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


class OperatorProcess:
    """`modelyard operator` in a process of its own, for one namespace (None: every namespace,
    as the chart's cluster-wide install), logging to a file."""

    def __init__(
        self,
        kubeconfig: Path,
        namespace: str | None,
        log: Path,
        standalone: bool = True,
        env: Mapping[str, str] | None = None,
        python: Path | None = None,
    ) -> None:
        """`python`: another environment's interpreter (the benchmarks run the operator image's
        packages); this checkout's code comes first on its path."""
        self.kubeconfig, self.namespace, self.log = kubeconfig, namespace, log
        self.standalone = standalone
        self.python = python
        self.env = {**TEST_ENV, **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> None:
        self.port = free_port()
        # What the chart's Deployment runs. Not `kopf run -m ...`: kopf's CLI switches to uvloop
        # when it is importable (the dev environment has it for the model server), and uvloop's
        # file descriptor reuse under connection resets (MagicStack/uvloop#653) dropped events
        # in the API-server-restart test; the operator image has no uvloop.
        command = [
            str(self.python or sys.executable),
            "-m",
            "modelyard.cli",
            "operator",
            *(["--namespace", self.namespace] if self.namespace else []),
            "--liveness-port",
            str(self.port),
        ]
        if self.standalone:
            command.append("--standalone")
        env = {**os.environ, **self.env, "KUBECONFIG": str(self.kubeconfig)}
        if self.python:
            env["PYTHONPATH"] = str(REPO / "operator")
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(command, env=env, stdout=out, stderr=out)
        deadline = time.monotonic() + 60
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the operator did not come up; see {self.log}")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                return True
        except OSError:
            return False

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers, no finalizer cleanup, as an OOM kill or a node loss."""
        if self.process is not None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None

    def logs(self) -> str:
        return self.log.read_text(errors="replace")


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
