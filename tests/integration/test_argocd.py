"""The Argo CD scenario of tests/e2e/test_argocd.py on the integration tier's private control plane,
without a node, root or the shared cluster's lock: Argo CD (built from Go modules) syncs the
quickstart from Git, the operator runs as its own process, the ingest and training pods run for
real as local processes against a real S3 server (tests/process_kubelet.py), and model server pods
are reported running and ready as a kubelet would once they pass their probe. What it shows of
Argo CD (health on the way, no perpetual diff, retrain, failure, deletion protection, pruning)
is what the e2e test shows on the node; only images, networks and the servers' answers are not
real here."""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelyard.storage.client import Storage
from modelyard.storage.config import StorageConfig
from tests.kubelet import _stamp
from tests.plugins import argocd as argo
from tests.plugins.kube import Cluster
from tests.plugins.operator import OperatorProcess
from tests.plugins.s3 import S3Server, running_versitygw
from tests.process_kubelet import run_pod

pytestmark = pytest.mark.integration

BUCKET = "modelyard"
SECRET = "modelyard-s3"


class ProcessNode:
    """A kubelet for one namespace, from a thread: a Job's pod runs its workload as a process,
    any other pod (a model server's) is reported running and ready, a deleted pod goes at once."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.namespace = namespace
        self.api = cluster.api_client()
        self.core = client.CoreV1Api(self.api)
        self.started: set[str] = set()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="process-node")

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._step()
            except ApiException as error:  # a pod gone between list and patch
                if error.status != 404:
                    self.failures.append(repr(error))
            self._stop.wait(0.5)

    def _step(self) -> None:
        for pod in self.core.list_namespaced_pod(self.namespace).items:
            meta, spec, status = pod.metadata, pod.spec, pod.status
            assert meta is not None and spec is not None and status is not None
            name, uid = str(meta.name), str(meta.uid)
            if meta.deletion_timestamp:
                self.core.delete_namespaced_pod(name, self.namespace, grace_period_seconds=0)
                continue
            if uid in self.started or status.phase != "Pending":
                continue
            self.started.add(uid)
            if any(owner.kind == "Job" for owner in meta.owner_references or []):
                threading.Thread(target=run_pod, args=(self.core, pod), daemon=True).start()
            else:
                self._ready(name, spec.containers[0])

    def _ready(self, name: str, container: client.V1Container) -> None:
        status = {
            "phase": "Running",
            "podIP": "10.97.0.99",
            "conditions": [
                {"type": kind, "status": "True", "lastTransitionTime": _stamp()}
                for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
            ],
            "containerStatuses": [
                {
                    "name": container.name,
                    "image": container.image,
                    "imageID": "",
                    "ready": True,
                    "restartCount": 0,
                    "started": True,
                    "state": {"running": {"startedAt": _stamp()}},
                }
            ],
        }
        self.core.patch_namespaced_pod_status(name, self.namespace, {"status": status})

    def __enter__(self) -> ProcessNode:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.api.close()  # type: ignore[no-untyped-call]


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    with (
        running_versitygw(tmp_path_factory.mktemp("s3") / "data") as server,
        pytest.MonkeyPatch.context() as patch,
    ):
        for key, value in server.env(BUCKET).items():
            patch.setenv(key, value)  # boto3 takes the credentials from the environment
        Storage(StorageConfig.from_env(server.env(BUCKET))).ensure_bucket(BUCKET)
        yield server


@pytest.fixture
def workload_namespace(crds: Cluster, namespace: str, s3: S3Server) -> str:
    """The test's namespace with the storage credentials a default install names."""
    with crds.api_client() as api:
        client.CoreV1Api(api).create_namespaced_secret(
            namespace,
            client.V1Secret(
                metadata=client.V1ObjectMeta(name=SECRET),
                data={
                    key: base64.b64encode(s3.env()[key].encode()).decode()
                    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
                },
            ),
        )
    return namespace


def test_argocd_syncs_the_quickstart_from_git(
    request: pytest.FixtureRequest,
    crds: Cluster,
    workload_namespace: str,
    s3: S3Server,
    tmp_path: Path,
) -> None:
    binaries = argo.build(request)
    operator = OperatorProcess(
        crds.kubeconfig,
        workload_namespace,
        tmp_path / "operator.log",
        env={
            "MODELYARD_S3_ENDPOINT": s3.endpoint,
            "MODELYARD_S3_BUCKET": BUCKET,
            "MODELYARD_S3_CREDENTIALS_SECRET": SECRET,
        },
    )
    operator.start()
    try:
        with (
            ProcessNode(crds, workload_namespace) as node,
            argo.running(crds, binaries, tmp_path / "argocd") as argocd,
        ):
            timings = argo.quickstart_scenario(argocd, crds, workload_namespace)
        assert not node.failures, node.failures
    finally:
        operator.stop()
    print(", ".join(f"{k}: {v:.0f}s" for k, v in timings.items()))
