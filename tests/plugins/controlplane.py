"""A private control plane (etcd, kube-apiserver, kube-controller-manager) on free loopback ports
with its own state directory and PKI. The integration and chaos tiers and the operator benchmark
run on one: no operator installed in the shared local cluster (`make demo`'s watches every
namespace) and nobody else's load acts on their objects, and an API server restart touches
nothing else. Binaries and PKI come from hack/ (bin-path.sh, pki.sh), as hack/cluster-up.sh
starts them."""

from __future__ import annotations

import base64
import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import requests

from tests.plugins.kube import HACK, built_binary
from tests.plugins.operator import free_port

SERVICE_CIDR = "10.97.0.0/16"
# Enough for the operator's Jobs and their pods, without the load of the rest: chaos runs make a
# few hundred Jobs at once.
JOB_CONTROLLERS = (
    "job-controller,garbage-collector-controller,serviceaccount-controller,"
    "serviceaccount-token-controller,namespace-controller"
)
# What a real cluster runs (Deployments and their ReplicaSets too).
DEFAULT_CONTROLLERS = "*"


class ControlPlane:
    def __init__(self, state: Path, controllers: str = JOB_CONTROLLERS) -> None:
        self.state, self.pki = state, state / "pki"
        self.controllers = controllers
        self.etcd_port, self.port = free_port(), free_port()
        self.kubeconfig = state / "kubeconfig"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> None:
        subprocess.run(
            [str(HACK / "pki.sh"), str(self.pki), "private-node", "127.0.0.1"],
            check=True,
            capture_output=True,
        )
        self._write_kubeconfig("admin", self.kubeconfig)
        self._write_kubeconfig("controller-manager", self.state / "controller-manager.kubeconfig")
        etcd_peer = free_port()
        self._daemon(
            "etcd",
            built_binary("etcd"),
            "--name=private",
            f"--data-dir={self.state / 'etcd'}",
            f"--listen-client-urls=http://127.0.0.1:{self.etcd_port}",
            f"--advertise-client-urls=http://127.0.0.1:{self.etcd_port}",
            f"--listen-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{etcd_peer}",
            f"--initial-cluster=private=http://127.0.0.1:{etcd_peer}",
            "--log-level=warn",
        )
        self.start_apiserver()
        self._daemon(
            "kube-controller-manager",
            built_binary("kube-controller-manager"),
            f"--kubeconfig={self.state / 'controller-manager.kubeconfig'}",
            "--secure-port=0",  # no serving port to clash with the shared cluster's
            "--leader-elect=false",
            f"--controllers={self.controllers}",
            f"--service-account-private-key-file={self.pki / 'sa.key'}",
            f"--root-ca-file={self.pki / 'ca.crt'}",
            "--use-service-account-credentials=true",
            # The default client rate (20 requests/s) paces a few hundred Jobs' pods at a few per
            # second: the chaos tests would measure the controller manager, not the operator.
            "--kube-api-qps=200",
            "--kube-api-burst=400",
        )

    def start_apiserver(self) -> None:
        self._daemon(
            "kube-apiserver",
            built_binary("kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.port}",
            f"--tls-cert-file={self.pki / 'apiserver.crt'}",
            f"--tls-private-key-file={self.pki / 'apiserver.key'}",
            f"--client-ca-file={self.pki / 'ca.crt'}",
            f"--service-account-key-file={self.pki / 'sa.pub'}",
            f"--service-account-signing-key-file={self.pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=RBAC",
            # As real clusters: privileged pods are the Pod Security admission's to refuse.
            "--allow-privileged=true",
            "--profiling=false",
        )
        self._wait_ready(120)

    def kill_apiserver(self) -> None:
        process = self.processes.pop("kube-apiserver")
        process.kill()
        process.wait()

    def stop(self) -> None:
        """SIGKILL: its state is thrown away, a graceful shutdown would only cost time."""
        for process in self.processes.values():
            process.kill()
        for process in self.processes.values():
            process.wait()
        self.processes.clear()

    def _daemon(self, name: str, *command: str) -> None:
        with (self.state / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                command, stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )

    def _wait_ready(self, timeout: float) -> None:
        session = requests.Session()
        session.trust_env = False  # loopback, never the environment's proxy
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = session.get(
                    f"{self.url}/readyz",
                    verify=str(self.pki / "ca.crt"),
                    cert=(str(self.pki / "admin.crt"), str(self.pki / "admin.key")),
                    timeout=2,
                )
                if answer.status_code == 200:
                    return
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"kube-apiserver not ready; see {self.state}/kube-apiserver.log")
            time.sleep(0.5)

    def _write_kubeconfig(self, user: str, path: Path) -> None:
        def data(name: str) -> str:
            return base64.b64encode((self.pki / name).read_bytes()).decode()

        path.write_text(
            f"""apiVersion: v1
kind: Config
clusters:
- name: private
  cluster:
    server: {self.url}
    certificate-authority-data: {data("ca.crt")}
users:
- name: {user}
  user:
    client-certificate-data: {data(f"{user}.crt")}
    client-key-data: {data(f"{user}.key")}
contexts:
- name: private
  context: {{cluster: private, user: {user}}}
current-context: private
"""
        )


@contextlib.contextmanager
def running(state: Path, controllers: str = JOB_CONTROLLERS) -> Iterator[ControlPlane]:
    """A started control plane in `state` (a new directory), stopped on exit."""
    state.mkdir(parents=True)
    plane = ControlPlane(state, controllers)
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
