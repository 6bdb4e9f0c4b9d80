"""Pytest fixtures that give tests a real Kubernetes API server.

``kube`` (session): a cluster to talk to. A reachable cluster named by ``KUBECONFIG``
(a user's kind, say) is used as it is. Otherwise the local cluster from ``hack/`` is
reused if it runs, or started: control plane only, or with a node when the session
includes ``e2e`` tests and we are root. A cluster this session started is stopped at
its end unless ``MODELYARD_KEEP_CLUSTER=1``. The integration and chaos tiers override
it with a control plane of their own (tests/plugins/controlplane.py).

``kube_node`` (session): the same, guaranteed to have a Ready node (e2e tests).

``namespace`` (function): a fresh namespace that enforces the ``restricted`` Pod
Security Standard, deleted after the test.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from unittest import mock

import kopf
import pytest
from kubernetes import client, config
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

REPO_ROOT = Path(__file__).resolve().parents[2]
HACK = REPO_ROOT / "hack"
# The same defaults as hack/lib.sh.
CACHE_DIR = Path(
    os.environ.get(
        "MODELYARD_CACHE_DIR",
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modelyard",
    )
)
STATE_DIR = Path(os.environ.get("MODELYARD_STATE_DIR", CACHE_DIR / "cluster"))
LOCAL_KUBECONFIG = STATE_DIR / "kubeconfig"
# Where pods reach the host: the gateway of the node's pod bridge (hack/lib.sh).
NODE_IP = os.environ.get("MODELYARD_NODE_IP", "10.244.0.1")
POD_CIDR = os.environ.get("MODELYARD_POD_CIDR", "10.244.0.0/24")


@cache
def built_binary(name: str) -> str:
    """The path of a binary hack/ builds and caches (kubectl, helm, versitygw...), building it
    on first use. Tests use these, never whatever the machine has on PATH: a kubectl of another
    version, or none, must not change what a test checks or make it skip."""
    return subprocess.run(
        [str(HACK / "bin-path.sh"), name], check=True, stdout=subprocess.PIPE, text=True
    ).stdout.strip()


def kubectl_binary() -> str:
    """The kubectl of the cluster's own Kubernetes version (hack/build-binaries.sh)."""
    return built_binary("kubectl")


@dataclass
class Cluster:
    """A Kubernetes cluster the tests may use."""

    kubeconfig: Path
    #: True when the cluster runs our binaries from ``hack/``: the shared local cluster (we can
    #: add a node, import images) or a private control plane (tests/plugins/controlplane.py).
    local: bool
    #: Address pods reach the host at (a server bound there is visible to pods);
    #: None when no local node runs.
    host_ip: str | None = None

    def api_client(self) -> ApiClient:
        """A new client. The kubeconfig is read on every call because adding the node
        moves a local control plane from loopback to the node address."""
        return _new_client(self.kubeconfig)

    def credentials(self) -> kopf.ConnectionInfo:
        return credentials(self.kubeconfig)


def credentials(kubeconfig: Path) -> kopf.ConnectionInfo:
    """What the operator logs in with outside a pod (its kopf login), from `kubeconfig`."""
    with mock.patch.dict(os.environ, {"KUBECONFIG": str(kubeconfig)}):
        info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings())
    assert info is not None
    return info


def _new_client(kubeconfig: Path) -> ApiClient:
    api: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(kubeconfig)
    )
    return api


def _reachable(kubeconfig: Path) -> bool:
    try:
        with _new_client(kubeconfig) as api:
            client.VersionApi(api).get_code(_request_timeout=5)
    except Exception:  # any failure (no file, refused, TLS) means "not usable"
        return False
    return True


def _local_node_running() -> bool:
    pid_file = STATE_DIR / "run" / "kubelet.pid"
    try:
        return Path(f"/proc/{pid_file.read_text().strip()}").exists()
    except OSError:
        return False


def _cluster_up(request: pytest.FixtureRequest, nodes: int) -> None:
    """Runs hack/cluster-up.sh with pytest's capture off, so the progress of a cold
    binary build (many minutes) shows on the terminal."""
    env = {**os.environ, "CLUSTER_NODES": str(nodes), "MODELYARD_STATE_DIR": str(STATE_DIR)}
    capture = request.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled():
        result = subprocess.run([str(HACK / "cluster-up.sh")], env=env, check=False)
    if result.returncode != 0:
        pytest.fail(f"hack/cluster-up.sh failed (logs under {STATE_DIR / 'logs'})", pytrace=False)


def foreign_kubeconfig() -> Path | None:
    """The cluster named by KUBECONFIG, if it answers and is not our own."""
    value = os.environ.get("KUBECONFIG")
    if not value:
        return None
    files = [Path(p) for p in value.split(os.pathsep) if p and Path(p).is_file()]
    if not files or files[0].resolve() == LOCAL_KUBECONFIG.resolve():
        return None
    if _reachable(files[0]):
        return files[0]
    warnings.warn(
        f"KUBECONFIG={value} does not answer; using the local cluster from hack/", stacklevel=2
    )
    return None


@pytest.fixture(scope="session")
def kube(request: pytest.FixtureRequest) -> Iterator[Cluster]:
    foreign = foreign_kubeconfig()
    if foreign is not None:
        yield Cluster(kubeconfig=foreign, local=False)
        return
    wants_node = os.geteuid() == 0 and any(
        item.get_closest_marker("e2e") for item in request.session.items
    )
    # Only a cluster this session brought up is torn down; adding a node to a control
    # plane someone else started leaves it (and the node) running for them.
    started = not _reachable(LOCAL_KUBECONFIG)
    if started or (wants_node and not _local_node_running()):
        _cluster_up(request, nodes=1 if wants_node else 0)
    cluster = Cluster(
        kubeconfig=LOCAL_KUBECONFIG,
        local=True,
        host_ip=NODE_IP if _local_node_running() else None,
    )
    yield cluster
    if started and os.environ.get("MODELYARD_KEEP_CLUSTER") != "1":
        subprocess.run(
            [str(HACK / "cluster-down.sh")],
            env={**os.environ, "MODELYARD_STATE_DIR": str(STATE_DIR)},
            check=False,
            capture_output=True,
        )


def _wait(what: str, timeout: float, ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}", pytrace=False)
        time.sleep(0.5)


def _has_ready_node(cluster: Cluster) -> bool:
    with cluster.api_client() as api:
        nodes = client.CoreV1Api(api).list_node().items
    return any(
        c.type == "Ready" and c.status == "True"
        for n in nodes
        for c in ((n.status and n.status.conditions) or [])
    )


@pytest.fixture(scope="session")
def kube_node(request: pytest.FixtureRequest, kube: Cluster) -> Cluster:
    if kube.local and not _local_node_running():
        if os.geteuid() != 0:
            pytest.skip("the local node needs root (containerd, mounts, pod network)")
        _cluster_up(request, nodes=1)
        kube.host_ip = NODE_IP
    _wait("a Ready node", 120, lambda: _has_ready_node(kube))
    return kube


def _namespace_name(request: pytest.FixtureRequest) -> str:
    """A DNS-1123 label that says which test made it, plus a unique suffix."""
    stem = re.sub(r"[^a-z0-9-]+", "-", request.node.name.lower()).strip("-")
    return f"{stem[:48].rstrip('-')}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def namespace(request: pytest.FixtureRequest, kube: Cluster) -> Iterator[str]:
    name = _namespace_name(request)
    with kube.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespace(
            client.V1Namespace(
                metadata=client.V1ObjectMeta(
                    name=name,
                    labels={
                        "pod-security.kubernetes.io/enforce": "restricted",
                        "modelyard.dev/test": "true",
                    },
                )
            )
        )

        # Pods are rejected until the controller manager has created the default
        # service account, so a test may create pods as soon as it gets the name.
        def has_default_sa() -> bool:
            try:
                core.read_namespaced_service_account("default", name)
            except ApiException as e:
                if e.status == 404:
                    return False
                raise
            return True

        _wait(f"the default service account in {name}", 60, has_default_sa)
    yield name
    with kube.api_client() as api:
        try:
            client.CoreV1Api(api).delete_namespace(name)
        except ApiException as e:
            if e.status != 404:
                raise
