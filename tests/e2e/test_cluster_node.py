"""The full local node: it is Ready, pods from images built here run, Services
answer through the API server's proxy, through cluster IPs and by DNS name, and pods
reach a server on the host at the node's bridge address."""

from __future__ import annotations

import http.server
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kubernetes import client

from tests.plugins.kube import HACK, REPO_ROOT, Cluster

pytestmark = pytest.mark.e2e

RESTRICTED_POD = client.V1PodSecurityContext(
    run_as_non_root=True,
    run_as_user=65534,
    seccomp_profile=client.V1SeccompProfile(type="RuntimeDefault"),
)
RESTRICTED_CONTAINER = client.V1SecurityContext(
    allow_privilege_escalation=False,
    capabilities=client.V1Capabilities(drop=["ALL"]),
)


def _image_tag() -> str:
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    match = re.search(r'^version = "([^"]+)"', pyproject, re.MULTILINE)
    assert match, "no version in pyproject.toml"
    return os.environ.get("IMAGE_TAG", match.group(1))


@pytest.fixture(scope="session")
def http_image(kube_node: Cluster) -> str:
    """hack/testdata/http-server built on the local base and imported into the node."""
    name = f"docker.io/modelyard/http-server:{_image_tag()}"
    if not kube_node.local:
        pytest.skip(f"{name} is built locally; load it into this cluster (kind load docker-image)")
    subprocess.run([str(HACK / "images.sh"), "test", "http-server"], check=True)
    return name


def _wait(what: str, timeout: float, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(1)


def _run_pod(cluster: Cluster, namespace: str, image: str, script: str) -> tuple[str, str]:
    """Runs `python3 -c script` in a pod to completion; returns (phase, logs)."""
    pod = client.V1Pod(
        metadata=client.V1ObjectMeta(name="probe"),
        spec=client.V1PodSpec(
            restart_policy="Never",
            security_context=RESTRICTED_POD,
            containers=[
                client.V1Container(
                    name="probe",
                    image=image,
                    image_pull_policy="Never",
                    command=["python3", "-c", script],
                    security_context=RESTRICTED_CONTAINER,
                )
            ],
        ),
    )
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_namespaced_pod(namespace, pod)

        def phase() -> str:
            status = core.read_namespaced_pod("probe", namespace).status
            return (status and status.phase) or "Unknown"

        _wait("the probe pod to finish", 120, lambda: phase() in ("Succeeded", "Failed"))
        logs: str = core.read_namespaced_pod_log("probe", namespace)
        return phase(), logs


def _fetch(url: str) -> str:
    """A python3 script that prints the body at url. It retries for a while: kube-proxy
    programs a Service's rules a moment after its endpoints become ready, and until
    then the cluster IP refuses connections."""
    return f"""
import time, urllib.request
for attempt in range(30):
    try:
        print(urllib.request.urlopen({url!r}, timeout=10).read().decode())
        break
    except OSError:
        if attempt == 29:
            raise
        time.sleep(0.5)
"""


def test_node_is_ready(kube_node: Cluster) -> None:
    with kube_node.api_client() as api:
        nodes = client.CoreV1Api(api).list_node().items
    assert len(nodes) >= 1
    status = nodes[0].status
    ready = {c.type: c.status for c in (status and status.conditions) or []}
    assert ready["Ready"] == "True"


def test_pod_from_local_image_succeeds_and_logs_read_back(
    kube_node: Cluster, namespace: str, http_image: str
) -> None:
    phase, logs = _run_pod(kube_node, namespace, http_image, "print('hello from modelyard')")
    assert (phase, logs.strip()) == ("Succeeded", "hello from modelyard")


def _ready_replicas(deployment: client.V1Deployment) -> int:
    return (deployment.status and deployment.status.ready_replicas) or 0


@pytest.fixture
def web(kube_node: Cluster, namespace: str, http_image: str) -> Iterator[client.V1Service]:
    """A two-replica Deployment of the HTTP test image behind a Service, once Ready."""
    labels = {"app": "web"}
    deployment = client.V1Deployment(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1DeploymentSpec(
            replicas=2,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    security_context=RESTRICTED_POD,
                    containers=[
                        client.V1Container(
                            name="web",
                            image=http_image,
                            image_pull_policy="IfNotPresent",
                            ports=[client.V1ContainerPort(container_port=8080)],
                            readiness_probe=client.V1Probe(
                                http_get=client.V1HTTPGetAction(path="/", port=8080),
                                period_seconds=1,
                            ),
                            security_context=RESTRICTED_CONTAINER,
                        )
                    ],
                ),
            ),
        ),
    )
    service = client.V1Service(
        metadata=client.V1ObjectMeta(name="web"),
        spec=client.V1ServiceSpec(
            selector=labels, ports=[client.V1ServicePort(port=8080, target_port=8080)]
        ),
    )
    with kube_node.api_client() as api:
        apps = client.AppsV1Api(api)
        apps.create_namespaced_deployment(namespace, deployment)
        created = client.CoreV1Api(api).create_namespaced_service(namespace, service)
        _wait(
            "the web Deployment to be available",
            120,
            lambda: _ready_replicas(apps.read_namespaced_deployment("web", namespace)) == 2,
        )
    yield created


def test_deployment_answers_through_the_service_proxy(
    kube_node: Cluster, namespace: str, web: client.V1Service
) -> None:
    with kube_node.api_client() as api:
        body = client.CoreV1Api(api).connect_get_namespaced_service_proxy_with_path(
            "web:8080", namespace, "index.html"
        )
    assert "modelyard test server" in body


def test_pods_reach_services_by_cluster_ip(
    kube_node: Cluster, namespace: str, web: client.V1Service, http_image: str
) -> None:
    # Cluster IPs are kube-proxy's iptables rules; there is no cluster DNS.
    assert web.spec and web.spec.cluster_ip
    url = f"http://{web.spec.cluster_ip}:8080/index.html"
    phase, logs = _run_pod(kube_node, namespace, http_image, _fetch(url))
    assert phase == "Succeeded", logs
    assert "modelyard test server" in logs


def test_pods_resolve_services_by_name_and_nothing_else(
    kube_node: Cluster, namespace: str, web: client.V1Service, http_image: str
) -> None:
    if not kube_node.local:
        pytest.skip("the local cluster's DNS answers for cluster.local only; yours may not")
    # The cluster DNS answers for Services; it forwards nothing, so outside names fail.
    url = f"http://web.{namespace}.svc.cluster.local:8080/index.html"
    script = f"""
import socket
{_fetch(url)}
try:
    socket.getaddrinfo("pypi.org", 443)
except socket.gaierror:
    print("no outside names")
"""
    phase, logs = _run_pod(kube_node, namespace, http_image, script)
    assert phase == "Succeeded", logs
    assert "modelyard test server" in logs
    assert "no outside names" in logs


def test_pods_reach_the_in_cluster_api_server(
    kube_node: Cluster, namespace: str, http_image: str
) -> None:
    # What an operator running in a pod does: the kubernetes Service, the mounted CA
    # and service-account token.
    script = """
import os, ssl, urllib.request
sa = "/var/run/secrets/kubernetes.io/serviceaccount"
host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
ctx = ssl.create_default_context(cafile=f"{sa}/ca.crt")
req = urllib.request.Request(f"https://{host}:{port}/version")
req.add_header("Authorization", "Bearer " + open(f"{sa}/token").read())
print(urllib.request.urlopen(req, context=ctx, timeout=10).read().decode())
"""
    phase, logs = _run_pod(kube_node, namespace, http_image, script)
    assert phase == "Succeeded", logs
    assert '"gitVersion"' in logs


@pytest.fixture
def host_server(kube_node: Cluster, tmp_path: Path) -> Iterator[str]:
    """An HTTP server on the host, bound to the address pods reach the host at."""
    if kube_node.host_ip is None:
        pytest.skip("only the local node has a known host address")
    (tmp_path / "hello.txt").write_text("hello from the host\n")

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

    server = http.server.ThreadingHTTPServer((kube_node.host_ip, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://{kube_node.host_ip}:{server.server_address[1]}/hello.txt"
    server.shutdown()
    server.server_close()


def test_pods_reach_a_server_on_the_host(
    kube_node: Cluster, namespace: str, http_image: str, host_server: str
) -> None:
    phase, logs = _run_pod(kube_node, namespace, http_image, _fetch(host_server))
    assert phase == "Succeeded", logs
    assert "hello from the host" in logs
