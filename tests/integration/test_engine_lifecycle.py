"""A run on workers against a real API server with the dask-kubernetes CRDs installed from that
project's own chart: the operator creates the run's DaskCluster and TLS Secret before its Job,
deletes the cluster when the run ends, lets garbage collection take both with the TrainingJob,
cleans up after a restart, and fails the run at once on a cluster without the Dask operator.
The tests play the kubelet's part (and the dask operator's, for the worker pods it would make)."""

from __future__ import annotations

import base64
import copy
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask_kubernetes
import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from modelyard.api.trainingjob import WorkersSpec
from modelyard.config import OperatorConfig
from modelyard.engine import contract
from modelyard.exitcodes import EXIT_ENGINE_LOST
from modelyard.resources.common import storage_env
from modelyard.resources.dask import build_dask_cluster, tls_secret_name
from modelyard.resources.jobs import Owner
from tests.integration.test_operator import V1, Api, _quickstart, _ready_dataset
from tests.kubelet import (
    finish_job,
    make_ready,
    report_ended,
    running,
    train_summary,
    wait_for,
    wait_with,
)
from tests.plugins.kube import Cluster
from tests.plugins.operator import Operator, apply_crds

pytestmark = pytest.mark.integration

DASK = ("kubernetes.dask.org", "v1", "daskclusters")
CRD_DIR = (
    Path(dask_kubernetes.__file__).parent / "operator/deployment/helm/dask-kubernetes-operator/crds"
)
CRD_FILES = ("daskcluster.yaml", "daskworkergroup.yaml")
NAME = "iris-classifier"
MODEL = "sha256:" + "a" * 64
GC_TIMEOUT = 180  # the garbage collector notices a new CRD's kind on its next resync


def _workers_trainingjob(replicas: int = 2) -> dict[str, Any]:
    body = copy.deepcopy(_quickstart("TrainingJob"))
    body["spec"]["workers"] = {
        "replicas": replicas,
        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
    }
    return body


def _crds() -> list[dict[str, Any]]:
    return [yaml.safe_load((CRD_DIR / name).read_text()) for name in CRD_FILES]


@pytest.fixture
def api(crds: Cluster, namespace: str) -> Iterator[Api]:
    handle = Api(crds, namespace)
    yield handle
    handle.client.close()


@pytest.fixture
def dask_crds(crds: Cluster) -> Cluster:
    """The dask operator's own DaskCluster and DaskWorkerGroup CRDs, read from its chart."""
    apply_crds(crds.api_client(), _crds())
    return crds


@pytest.fixture
def no_dask_crds(crds: Cluster) -> Cluster:
    """A cluster without the Dask operator: its CRDs deleted if an earlier test installed them."""
    with crds.api_client() as api_client:
        extensions = client.ApiextensionsV1Api(api_client)
        names = [crd["metadata"]["name"] for crd in _crds()]
        for name in names:
            try:
                extensions.delete_custom_resource_definition(name)
            except ApiException as error:
                if error.status != 404:
                    raise

        def gone() -> bool:
            present = {c.metadata.name for c in extensions.list_custom_resource_definition().items}
            return not present & set(names)

        wait_for("the DaskCluster CRD deleted", gone, timeout=120)
    return crds


def _clusters(api: Api) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.custom.list_namespaced_custom_object(
        *DASK[:2], api.namespace, DASK[2]
    )["items"]
    return items


def _cluster(api: Api, name: str) -> dict[str, Any] | None:
    return next((c for c in _clusters(api) if c["metadata"]["name"] == name), None)


def _secret(api: Api, name: str) -> client.V1Secret | None:
    try:
        return api.core.read_namespaced_secret(name, api.namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise


def _run(api: Api, run: str) -> dict[str, Any] | None:
    runs = api.status("TrainingJob", NAME).get("runs") or []
    return next((r for r in runs if r["id"] == run), None)


def _started(api: Api) -> tuple[client.V1Job, str]:
    """The run-1 training Job and the name of its DaskCluster, once both exist."""
    job = api.wait_job("modelyard.dev/run=run-1")
    cluster = contract.cluster_name(job.metadata.name)
    wait_for(f"DaskCluster {cluster}", lambda: _cluster(api, cluster))
    return job, cluster


def test_without_the_dask_operator_a_run_on_workers_fails_at_once(
    no_dask_crds: Cluster, api: Api, operator: Operator
) -> None:
    _ready_dataset(api)
    api.create(_workers_trainingjob())
    ready = api.wait_condition("TrainingJob", NAME, "Ready", "False", "EngineUnavailable")
    assert "spec.workers" in ready["message"] and "DaskCluster" in ready["message"]
    assert api.status("TrainingJob", NAME)["phase"] == "Failed"
    assert not api.jobs(f"modelyard.dev/trainingjob={NAME}")  # no Job waits for an engine


def test_a_run_on_workers_gets_its_cluster_and_secret_then_loses_them_when_it_ends(
    dask_crds: Cluster, api: Api, operator: Operator
) -> None:
    _ready_dataset(api)
    api.create(_workers_trainingjob(replicas=2))
    job, cluster_name = _started(api)
    trainingjob = api.get("TrainingJob", NAME)
    assert trainingjob is not None
    cluster = _cluster(api, cluster_name)
    assert cluster is not None

    # The cluster: the TrainingJob's, with our labels, two hardened TLS workers on the run's image.
    (owner,) = cluster["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["uid"]) == ("TrainingJob", trainingjob["metadata"]["uid"])
    labels = cluster["metadata"]["labels"]
    assert labels["modelyard.dev/trainingjob"] == NAME and labels["modelyard.dev/run"] == "run-1"
    worker = cluster["spec"]["worker"]
    assert worker["replicas"] == 2
    (container,) = worker["spec"]["containers"]
    assert container["image"] == job.spec.template.spec.containers[0].image
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["limits"]["memory"] == "1Gi"
    address = contract.scheduler_address(cluster_name, api.namespace)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["DASK_SCHEDULER_ADDRESS"] == address
    assert worker["spec"]["automountServiceAccountToken"] is False

    # The Secret: the run's TLS material, owned by the cluster, so it goes with it.
    secret = wait_for("the TLS Secret", lambda: _secret(api, tls_secret_name(cluster_name)))
    (secret_owner,) = secret.metadata.owner_references
    assert (secret_owner.kind, secret_owner.uid) == ("DaskCluster", cluster["metadata"]["uid"])
    assert set(secret.data) == {contract.CA_FILE, contract.CERT_FILE, contract.KEY_FILE}
    key = base64.b64decode(secret.data[contract.KEY_FILE]).decode()
    assert "PRIVATE KEY" in key
    assert key.splitlines()[1] not in str(cluster) and key.splitlines()[1] not in str(job)

    # The run's Job is the cluster's client.
    job_env = {e.name: e.value for e in job.spec.template.spec.containers[0].env}
    assert job_env[contract.SCHEDULER_ENV] == address
    assert job_env[contract.WORKERS_ENV] == "2"
    mounts = {m.mount_path: m for m in job.spec.template.spec.containers[0].volume_mounts}
    assert mounts[contract.TLS_MOUNT].read_only is True

    # Progress: workers ready as their pods become ready (pods as the dask operator makes them).
    run = wait_for("run-1 in status", lambda: _run(api, "run-1"))
    assert run["progress"] == {"workers": 2, "workersReady": 0}
    for index in range(2):
        _worker_pod(api, cluster_name, index)
    make_ready(
        api.core,
        api.namespace,
        f"dask.org/cluster-name={cluster_name},dask.org/component=worker",
        2,
    )
    wait_for(
        "2 workers ready in status",
        lambda: ((_run(api, "run-1") or {}).get("progress") or {}).get("workersReady") == 2,
    )

    finish_job(api.core, api.namespace, job.metadata.name, train_summary("run-1", V1, MODEL, 0.95))
    wait_for("the DaskCluster deleted", lambda: _cluster(api, cluster_name) is None)
    run = _run(api, "run-1")
    assert run is not None and run["phase"] == "Succeeded"
    assert "progress" not in run
    wait_for(
        "the Secret collected with its cluster",
        lambda: _secret(api, tls_secret_name(cluster_name)) is None,
        timeout=GC_TIMEOUT,
    )


def _worker_pod(api: Api, cluster: str, index: int) -> client.V1Pod:
    """A worker pod with the labels the dask operator gives one (and ours, copied from the
    DaskCluster); a node selector no node has keeps the scheduler away from it."""
    found = _cluster(api, cluster)
    assert found is not None
    spec = copy.deepcopy(found["spec"]["worker"]["spec"])
    spec["nodeSelector"] = {"modelyard.dev/test-node": "none"}
    labels = {
        **found["metadata"]["labels"],
        "dask.org/cluster-name": cluster,
        "dask.org/component": "worker",
    }
    pod: client.V1Pod = api.core.create_namespaced_pod(
        api.namespace,
        {"metadata": {"name": f"{cluster}-worker-{index}", "labels": labels}, "spec": spec},
    )
    return pod


def test_a_worker_pod_that_cannot_start_stalls_the_run_in_the_kubelets_words(
    dask_crds: Cluster, api: Api, operator: Operator
) -> None:
    """Before, the training pod waited for the worker until it gave up (EngineLost, 600 s later),
    and the TrainingJob read 'Training' meanwhile."""
    _ready_dataset(api)
    api.create(_workers_trainingjob(replicas=1))
    job, cluster_name = _started(api)
    worker = _worker_pod(api, cluster_name, 0)
    pull = 'Back-off pulling image "registry.invalid/trainer:missing"'
    wait_with(api.core, worker, "ImagePullBackOff", pull)
    stalled = api.wait_condition("TrainingJob", NAME, "Stalled", "True", "ImagePullBackOff")
    assert stalled["message"] == f"run-1: pod {worker.metadata.name}: {pull}", stalled
    run = _run(api, "run-1")
    assert run is not None and run["phase"] == "Running", run
    # The image is there after all: the worker runs, and the run is training again.
    running(api.core, worker)
    api.wait_condition("TrainingJob", NAME, "Reconciling", "True", "Training")
    assert api.condition("TrainingJob", NAME, "Stalled") is None
    finish_job(api.core, api.namespace, job.metadata.name, train_summary("run-1", V1, MODEL, 0.95))
    api.wait_condition("TrainingJob", NAME, "Ready", "True")


def test_a_run_that_lost_its_engine_fails_with_engine_lost_and_frees_its_cluster(
    dask_crds: Cluster, api: Api, operator: Operator
) -> None:
    _ready_dataset(api)
    api.create(_workers_trainingjob())
    job, cluster_name = _started(api)
    pod = wait_for(
        "the training pod",
        lambda: next(
            iter(
                api.core.list_namespaced_pod(
                    api.namespace,
                    label_selector=f"batch.kubernetes.io/job-name={job.metadata.name}",
                ).items
            ),
            None,
        ),
    )
    # Gone without a report: only its exit code says what happened.
    report_ended(api.core, pod, EXIT_ENGINE_LOST, "")
    ready = api.wait_condition("TrainingJob", NAME, "Ready", "False", "EngineLost")
    assert "run-1" in ready["message"]
    wait_for("the DaskCluster deleted", lambda: _cluster(api, cluster_name) is None)
    # The pod failure policy failed the Job at once: no second pod started the run again.
    assert (
        len(
            api.core.list_namespaced_pod(
                api.namespace, label_selector=(f"batch.kubernetes.io/job-name={job.metadata.name}")
            ).items
        )
        == 1
    )


def test_deleting_the_trainingjob_collects_its_cluster_and_secret(
    dask_crds: Cluster, api: Api, operator: Operator
) -> None:
    _ready_dataset(api)
    api.create(_workers_trainingjob())
    _, cluster_name = _started(api)
    wait_for("the TLS Secret", lambda: _secret(api, tls_secret_name(cluster_name)))
    api.delete("TrainingJob", NAME)
    wait_for(
        "the DaskCluster and its Secret collected",
        lambda: (
            _cluster(api, cluster_name) is None
            and _secret(api, tls_secret_name(cluster_name)) is None
        ),
        timeout=GC_TIMEOUT,
    )


def test_a_restarted_operator_deletes_clusters_of_runs_that_ended_and_keeps_the_running_one(
    dask_crds: Cluster, api: Api, operator: Operator
) -> None:
    _ready_dataset(api)
    api.create(_workers_trainingjob())
    job, running = _started(api)
    trainingjob = api.get("TrainingJob", NAME)
    assert trainingjob is not None
    meta = trainingjob["metadata"]

    operator.stop()
    owner = Owner("TrainingJob", NAME, api.namespace, meta["uid"])
    config = OperatorConfig()

    def leave(run: str) -> str:
        cluster = f"{NAME}-{run}"
        manifest = build_dask_cluster(
            owner,
            cluster,
            run,
            WorkersSpec(replicas=1),
            config.trainer_image,
            storage_env(config),
            config,
        )
        api.custom.create_namespaced_custom_object(*DASK[:2], api.namespace, DASK[2], manifest)
        return cluster

    # Left by a run whose end was recorded just before the operator died (dropped from the
    # history since), and one of a newer run whose start had not been recorded yet.
    ended, starting = leave("run-0"), leave("run-2")
    operator.start()
    wait_for("the ended run's stray DaskCluster deleted", lambda: _cluster(api, ended) is None)
    assert _cluster(api, running) is not None  # its run is still in flight
    assert _cluster(api, starting) is not None

    # The run ends while the operator is down: its cluster goes when the operator is back.
    operator.stop()
    finish_job(api.core, api.namespace, job.metadata.name, train_summary("run-1", V1, MODEL, 0.95))
    wait_for(
        "the Job complete",
        lambda: any(
            c.type == "Complete" and c.status == "True"
            for c in api.batch.read_namespaced_job(
                job.metadata.name, api.namespace
            ).status.conditions
            or []
        ),
    )
    assert _cluster(api, running) is not None
    operator.start()
    wait_for("the ended run's DaskCluster deleted", lambda: _cluster(api, running) is None)
    assert (_run(api, "run-1") or {}).get("phase") == "Succeeded"


# --- with the real dask operator ---------------------------------------------------------------


@pytest.fixture
def dask_operator(dask_crds: Cluster, namespace: str, tmp_path: Path) -> Iterator[Path]:
    """The dask-kubernetes operator itself, as a local process watching the test's namespace.
    Yields its log file."""
    log = tmp_path / "dask-operator.log"
    kopf = Path(sys.executable).parent / "kopf"
    command = [
        str(kopf),
        "run",
        "--standalone",
        "--namespace",
        namespace,
        "-m",
        "dask_kubernetes.operator.controller",
    ]
    env = {**os.environ, "KUBECONFIG": str(dask_crds.kubeconfig)}
    with log.open("ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=out)
    try:
        yield log
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _deployments(api: Api, selector: str) -> list[client.V1Deployment]:
    return list(api.apps.list_namespaced_deployment(api.namespace, label_selector=selector).items)


def _pods(api: Api, selector: str) -> list[client.V1Pod]:
    return list(api.core.list_namespaced_pod(api.namespace, label_selector=selector).items)


def test_the_dask_operator_makes_hardened_tls_pods_of_our_cluster_and_they_go_with_the_run(
    dask_crds: Cluster, api: Api, operator: Operator, dask_operator: Path
) -> None:
    _ready_dataset(api)
    api.create(_workers_trainingjob(replicas=2))
    job, cluster = _started(api)
    address = contract.scheduler_address(cluster, api.namespace)
    of_cluster = f"dask.org/cluster-name={cluster}"
    timeout = 120  # the dask operator's kopf starts, scans, then handles the cluster

    def both_roles() -> list[client.V1Deployment] | None:
        found = _deployments(api, of_cluster)
        roles = [d.spec.template.metadata.labels.get("dask.org/component") for d in found]
        return found if sorted(roles) == ["scheduler", "worker", "worker"] else None

    try:
        deployments = wait_for("the scheduler and 2 worker Deployments", both_roles, timeout)
    except AssertionError:
        raise AssertionError(dask_operator.read_text()[-4000:]) from None
    service = api.core.read_namespaced_service(f"{cluster}-scheduler", api.namespace)
    assert [(p.port, p.name) for p in service.spec.ports] == [(contract.SCHEDULER_PORT, "tcp-comm")]
    for deployment in deployments:
        labels = deployment.spec.template.metadata.labels
        # Our labels reach the pods: the operator's selectors and `kubectl -l` find them.
        assert labels["app.kubernetes.io/managed-by"] == "modelyard"
        assert labels["modelyard.dev/trainingjob"] == NAME
        pod_spec = deployment.spec.template.spec
        assert pod_spec.automount_service_account_token is False
        assert pod_spec.enable_service_links is False
        assert pod_spec.security_context.run_as_non_root is True
        (container,) = pod_spec.containers
        assert container.security_context.read_only_root_filesystem is True
        assert container.security_context.capabilities.drop == ["ALL"]
        env = {e.name: e.value for e in container.env}
        assert env["DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION"] == "True"
        volumes = {v.name: v for v in pod_spec.volumes}
        assert volumes[contract.TLS_VOLUME].secret.secret_name == tls_secret_name(cluster)
        if labels["dask.org/component"] == "worker":
            # Ours, not the dask operator's tcp:// default; its worker name beside it.
            assert env["DASK_SCHEDULER_ADDRESS"] == address
            assert env["DASK_WORKER_NAME"] == deployment.metadata.name
    # Real pods, admitted in a namespace that enforces the restricted Pod Security Standard.
    wait_for("3 engine pods admitted", lambda: len(_pods(api, of_cluster)) == 3, timeout)

    finish_job(api.core, api.namespace, job.metadata.name, train_summary("run-1", V1, MODEL, 0.95))
    wait_for(
        "no engine Deployment or pod left",
        lambda: not _deployments(api, of_cluster) and not _pods(api, of_cluster),
        timeout=GC_TIMEOUT,
    )
    wait_for(
        "the Secret collected", lambda: _secret(api, tls_secret_name(cluster)) is None, GC_TIMEOUT
    )
